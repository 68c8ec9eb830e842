"""Project store and commands on a real SQLite file: history, undo, crash safety."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.model import NOT_LABELLED, OCCLUDED, VISIBLE, Person
from annotator.core.project import Project
from annotator.core.store import SCHEMA_VERSION, Store

from tests.conftest import MEDIA, REPO


def _person(seed=0) -> Person:
    r = np.random.default_rng(seed)
    return Person(r.uniform(50, 400, (33, 2)), [VISIBLE] * 33, r.uniform(0.2, 1.0, 33))


@pytest.fixture
def proj(tmp_path):
    p, summary = Project.create(tmp_path / "p", [MEDIA / "images" / "ultralytics_zidane.jpg",
                                                 MEDIA / "images" / "skimage_astronaut.png"])
    assert summary["added"] == 2
    yield p
    p.close()


def test_schema_and_pragmas(proj):
    db = proj.store.db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    rows = proj.store.images()
    assert sorted((r.width, r.height) for r in rows) == [(512, 512), (1280, 720)]
    assert all(not r.source_path.startswith("/") for r in rows)          # stored relative to the project
    assert [len(r[0]) for r in db.execute("SELECT sha1 FROM sources")] == [40, 40]


def test_commands_history_undo_redo(proj):
    img = proj.store.images()[0].id
    s = proj.session("alice")
    pid = s.set_predictions(img, [_person()], "testmodel")[0]
    before = proj.store.load_person(pid)
    assert before.source == ["testmodel"] * 33 and not before.verified.any()

    s.move_point(pid, 13, 111.0, 222.0)
    p = proj.store.load_person(pid)
    assert tuple(p.xy[13]) == (111.0, 222.0) and p.verified[13] and p.source[13] == "annotator:alice"
    assert np.allclose(np.delete(p.xy, 13, 0), np.delete(before.xy, 13, 0))    # exactly one point moved

    s.swap_left_right(pid)
    p2 = proj.store.load_person(pid)
    assert tuple(p2.xy[14]) == (111.0, 222.0)                     # left elbow is now the right elbow
    assert np.allclose(p2.xy[0], p.xy[0])                         # nose stays

    s.set_visibility(pid, 0, OCCLUDED)
    s.verify_person(pid)
    assert proj.store.load_person(pid).fully_verified
    assert proj.store.image(img).review_state == "verified"

    # undo everything back to the prediction, then redo one step
    for _ in range(4):
        assert s.undo() is not None
    assert s.undo() is None
    p3 = proj.store.load_person(pid)
    assert np.allclose(p3.xy, before.xy) and not p3.verified.any() and p3.vis[0] == VISIBLE
    assert proj.store.image(img).review_state in ("to_review", "in_progress")
    s.redo()
    assert tuple(proj.store.load_person(pid).xy[13]) == (111.0, 222.0)

    # append-only audit trail: every command and every undo is there, with the actor
    cmds = [h["command"] for h in proj.store.history(pid)]
    assert cmds[0] == "redo move_point" and cmds.count("undo verify_person") == 1 and cmds[-1] == "predict"
    assert all(h["actor"] == "annotator:alice" for h in proj.store.history(pid)[:-1])


def test_changes_attached_to_a_command_are_undone_in_the_same_transaction(proj):
    """Session.attach: another table's change rides with a command's undo/redo (the app's CVAT
    conflict rows); if it fails, the points are not undone either and the command stays undoable."""
    img = proj.store.images()[0].id
    s = proj.session("alice")
    pid = s.set_predictions(img, [_person()], "testmodel")[0]
    aid = s.move_point(pid, 5, 10.0, 20.0)
    s.attach(aid, undo=lambda: proj.store.set_kv("side", "undone"), redo=lambda: proj.store.set_kv("side", "redone"))
    assert s.undo() == aid
    assert tuple(proj.store.load_person(pid).xy[5]) != (10.0, 20.0) and proj.store.get_kv("side") == "undone"
    assert s.redo() == aid
    assert tuple(proj.store.load_person(pid).xy[5]) == (10.0, 20.0) and proj.store.get_kv("side") == "redone"

    def broken():
        proj.store.set_kv("side", "half")
        raise RuntimeError("disk full")
    aid2 = s.move_point(pid, 6, 30.0, 40.0)
    s.attach(aid2, undo=broken, redo=broken)
    n_actions = proj.store.db.execute("SELECT count(*) FROM actions").fetchone()[0]
    with pytest.raises(RuntimeError):
        s.undo()
    assert tuple(proj.store.load_person(pid).xy[6]) == (30.0, 40.0)      # not undone
    assert proj.store.get_kv("side") == "redone"                         # the half write rolled back
    assert proj.store.db.execute("SELECT count(*) FROM actions").fetchone()[0] == n_actions
    assert s.can_undo and s._undo[-1] == aid2 and not s.can_redo


def test_new_command_clears_redo_and_delete_is_undoable(proj):
    img = proj.store.images()[0].id
    s = proj.session("bob")
    pid = s.add_person(img, _person(1), source="template")
    s.move_point(pid, 0, 5, 5)
    s.undo()
    s.move_point(pid, 1, 6, 6)
    assert not s.can_redo
    s.delete_person(pid)
    assert proj.store.person_ids(img) == []
    s.undo()
    assert proj.store.person_ids(img) == [pid]


def test_predictions_never_replace_verified(proj):
    img = proj.store.images()[0].id
    s = proj.session("carol")
    pid = s.set_predictions(img, [_person()], "m")[0]
    s.move_point(pid, 5, 1.0, 2.0)
    with pytest.raises(UserError):
        s.set_predictions(img, [_person(3)], "m2")
    new = _person(4)
    s.repredict_person(pid, new, "round-1")
    p = proj.store.load_person(pid)
    assert tuple(p.xy[5]) == (1.0, 2.0) and p.source[5] == "annotator:carol"   # verified point untouched
    assert np.allclose(p.xy[6], new.xy[6]) and p.source[6] == "round-1"


def test_newer_schema_is_refused(tmp_path):
    db = tmp_path / "project.db"
    Store(db, create=True).close()
    c = sqlite3.connect(db)
    c.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    c.close()
    with pytest.raises(UserError, match="newer pose-annotator"):
        Store(db)


def test_migration_from_v1(tmp_path):
    """A v1 database (before pred_x/pred_y) is upgraded in place, data kept."""
    from annotator.core import store as st
    db = tmp_path / "project.db"
    c = sqlite3.connect(db)
    for stmt in st._SCHEMA_V1.split(";"):
        if stmt.strip():
            c.execute(stmt)
    c.execute("INSERT INTO sources(path, kind, added_at) VALUES('a.jpg', 'image', 0)")
    c.execute("INSERT INTO images(source_id, file_name) VALUES(1, 'a.jpg')")
    c.execute("PRAGMA user_version=1")
    c.commit()
    c.close()
    s = Store(db)
    assert s.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert s.image_by_name("a.jpg") is not None
    cols = {r[1] for r in s.db.execute("PRAGMA table_info(points)")}
    assert {"pred_x", "pred_y"} <= cols


def test_not_a_project_database(tmp_path):
    bad = tmp_path / "project.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserError, match="not a valid project database"):
        Store(bad)


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from annotator.core.project import Project
    from annotator.core.model import Person
    p = Project.open(sys.argv[1])
    s = p.session("writer")
    img = p.store.images()[0].id
    pid = s.set_predictions(img, [Person(np.full((33, 2), 10.0), [2] * 33, [0.5] * 33)], "m")[0]
    print(pid, flush=True)
    i = 0
    while True:
        i += 1
        s.move_point(pid, i % 33, float(i), float(i))
""")


def test_kill_mid_write_leaves_valid_database(proj):
    """SIGKILL during a stream of edits: the file is intact, the last committed edit is complete."""
    root = proj.root
    proj.close()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    w = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, env=env)
    pid = int(w.stdout.readline())
    time.sleep(1.5)
    w.send_signal(signal.SIGKILL)
    w.wait()
    p = Project.open(root)
    try:
        assert p.store.integrity_ok()
        last = p.store.history(pid, limit=1)[0]
        assert last["command"] == "move_point"
        n = last["args"]["x"]
        cur = p.store.load_person(pid)
        assert tuple(cur.xy[int(n) % 33]) == (n, n)        # the last logged edit is in the points
        assert n > 10                                       # and the writer really was writing
        assert p.store.db.execute("SELECT count(*) FROM actions WHERE command='move_point'").fetchone()[0] == n
    finally:
        p.close()
