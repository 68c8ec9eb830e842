"""Verification that cannot lie: people added in the app are scored, Enter on a suspect person asks
first, and an image is complete only once a human confirmed that nobody is missing (real model, real
SQLite file, a database reopened where it matters)."""
from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest

from annotator.core import skeleton as sk
from annotator.core.commands import complete_images, is_complete, people_confirmed
from annotator.core.model import VISIBLE, Person
from annotator.core.project import Project
from annotator.gui.state import AppState, clip_segment
from tests.gui_project import DEMO_IMAGES

RIDERS = "coco_000000214753.jpg"          # two riders on horseback on a beach (COCO 214753)
RIDER_BOX = (350, 105, 75, 160)          # the right-hand rider, as an annotator drags it with `a`
READER = "coco_000000536038.jpg"          # a woman reading, lying on her side on a bed (COCO 536038)
READER_BOX = (8, 301, 350, 337)           # her ground-truth box, as an annotator drags it with `a`


def _app(tmp_path, image):
    """A project of one demo photo, open in the app; closed after the test."""
    (tmp_path / "media").mkdir()
    shutil.copy(DEMO_IMAGES / image, tmp_path / "media")
    proj, _ = Project.create(tmp_path / "proj", [tmp_path / "media"])
    st = AppState(proj, annotator="tester", prefetch=0, user_config=tmp_path / "none.toml", background_queue=False)
    st.set_canvas(800, 600)
    assert st.open_first()
    yield proj, st
    st.close()
    proj.close()


@pytest.fixture
def riders(tmp_path):
    yield from _app(tmp_path, RIDERS)


@pytest.fixture
def reader(tmp_path):
    yield from _app(tmp_path, READER)


def test_person_added_in_a_box_is_scored_and_its_wrong_shoulder_is_suspect(reader):
    proj, st = reader
    pid = st.add_person_in_box(READER_BOX)
    db = sqlite3.connect(proj.store.path)
    sus = db.execute("SELECT idx, suspicion FROM points WHERE person_id=? AND vis > 0", (pid,)).fetchall()
    db.close()
    assert sus and all(s is not None for _, s in sus)       # scored like a pre-filled person, not NULL
    named = {i for p, i, _ in st.suspects() if p == pid}
    # the right shoulder of the foreshortened body is placed 0.38 of her box from the demo ground
    # truth's (projects/demo/ground_truth.json): the app names it
    assert sk.INDEX["right_shoulder"] in named, [sk.NAMES[i] for i in named]
    # a template person is scored too
    tid = st.add_template()
    assert np.isfinite(st.person(tid).suspicion[st.person(tid).labelled]).all()


def test_a_person_added_in_a_box_whose_points_are_right_names_no_suspect(riders):
    """The right-hand rider: his hips, near knee and ankle are within 4 px of the demo ground truth
    and the far leg, hidden by the horse, is stored as not labelled: nothing to name."""
    proj, st = riders
    pid = st.add_person_in_box(RIDER_BOX)
    p = st.person(pid)
    assert not [i for q, i, _ in st.suspects() if q == pid]
    assert not p.labelled[[sk.INDEX["right_knee"], sk.INDEX["right_ankle"]]].any()
    assert p.labelled[[sk.INDEX["left_knee"], sk.INDEX["left_ankle"]]].all()


def test_enter_on_a_suspect_person_asks_once_then_verifies(reader):
    proj, st = reader
    pid = st.add_person_in_box(READER_BOX)
    sus = [i for p, i, _ in st.suspects() if p == pid]
    assert sus
    st.select(pid)
    st.on_key("enter")
    assert not proj.store.load_person(pid).verified.any()          # nothing verified by the first Enter
    assert st.sel_point == sus[0] and sk.NAMES[sus[0]] in st.status and "again" in st.status
    st.on_key("enter")
    assert proj.store.load_person(pid).fully_verified


def test_image_is_complete_only_after_the_nobody_missing_check(riders, tmp_path):
    proj, st = riders
    iid = st.image_id
    pid = st.add_person_in_box(RIDER_BOX)
    st.on_key("enter", {"shift"})                     # verify every person on the image
    assert proj.store.load_person(pid).fully_verified
    assert proj.store.image(iid).review_state == "verified"
    assert not is_complete(proj.store, iid) and iid not in complete_images(proj.store)
    assert "confirms that nobody is missing" in st.status
    assert st.on_key("c") == "confirm_people"
    assert is_complete(proj.store, iid) and complete_images(proj.store) == {iid}
    assert people_confirmed(proj.store, iid)["by"] == "annotator:tester"
    assert proj.store.history(limit=1)[0]["command"] == "confirm_people"      # logged like any command
    st.undo()
    assert not is_complete(proj.store, iid)
    st.redo()
    assert is_complete(proj.store, iid)
    # a person added afterwards is not verified: the image is not complete any more
    st.add_template()
    assert not is_complete(proj.store, iid)
    # the check survives a restart
    path = proj.store.path
    st.close()
    proj.close()
    with Project.open(path.parent) as again:
        assert people_confirmed(again.store, iid)["by"] == "annotator:tester"


def test_undoing_the_only_edit_returns_the_image_to_review(riders):
    proj, st = riders
    iid = st.image_id
    pid, = proj.session().set_predictions(iid, [Person(np.full((33, 2), 100.0), [VISIBLE] * 33)], "test-model")
    assert proj.store.image(iid).review_state == "to_review"
    st.show(iid)
    st.session.move_point(pid, 0, 120.0, 130.0)
    assert proj.store.image(iid).review_state == "in_progress"
    st.undo()
    assert proj.store.image(iid).review_state == "to_review"
    st.redo()
    assert proj.store.image(iid).review_state == "in_progress"


def test_clip_segment():
    r = (0, 0, 100, 50)
    assert clip_segment((10, 10), (20, 20), r) == ((10, 10), (20, 20))
    assert clip_segment((-50, 25), (50, 25), r) == ((0, 25), (50, 25))
    assert clip_segment((-10, -10), (-5, 80), r) is None
    (a, b) = clip_segment((50, -50), (50, 150), r)
    assert a == (50, 0) and b == (50, 50)


def test_cli_export_complete_only_and_status(tmp_path):
    import json
    import subprocess
    import sys
    from annotator.gui.state import template_person
    (tmp_path / "media").mkdir()
    for f in (RIDERS, "skimage_astronaut.png"):
        shutil.copy(DEMO_IMAGES / f, tmp_path / "media")
    proj, _ = Project.create(tmp_path / "proj", [tmp_path / "media"])
    s = proj.session("lead")
    ids = [r.id for r in proj.store.images()]
    for iid in ids:
        s.add_person(iid, template_person((50, 50, 100, 200)))
        s.verify_image(iid)
    s.confirm_people(ids[0])
    proj.close()

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "annotator", *args], capture_output=True, text=True, timeout=120)
    r = cli("export", str(tmp_path / "proj"), "--format", "coco", "--out", str(tmp_path / "c.json"), "--complete-only")
    assert r.returncode == 0, r.stderr
    names = [im["file_name"] for im in json.loads((tmp_path / "c.json").read_text())["images"]]
    assert len(names) == 1 and RIDERS in names[0]
    r = cli("status", str(tmp_path / "proj"), "--json")
    assert json.loads(r.stdout)["images_complete"] == 1
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("pose-annotator ")


def test_prefill_keeps_rejected_boxes_and_the_queue_counts_missed_people(tmp_path):
    from annotator.prefill.run import prefill
    from annotator.review.missing import KV_CANDIDATES, KV_EXPECTED, MISSING_WEIGHT, expected_missing
    from annotator.review.queue import image_queue
    (tmp_path / "media").mkdir()
    shutil.copy(DEMO_IMAGES / "coco_000000536038.jpg", tmp_path / "media")    # a GT person pre-fill misses
    proj, _ = Project.create(tmp_path / "proj", [tmp_path / "media"])
    with proj:
        prefill(proj, workers=1, progress=False, tta=False)
        st = proj.store
        iid = st.images()[0].id
        cands = st.get_kv(f"{KV_CANDIDATES}{iid}")
        assert cands and all(len(c) == 5 and c[4] < 1 for c in cands)
        m = expected_missing(st, iid)
        assert m > 0 and st.get_kv(f"{KV_EXPECTED}{iid}") == pytest.approx(m, abs=1e-4)
        pts = st.db.execute("SELECT SUM(COALESCE(p.suspicion, 1 - COALESCE(p.conf, 0))) FROM points p JOIN persons q"
                            " ON q.id=p.person_id WHERE q.image_id=? AND p.verified=0", (iid,)).fetchone()[0] or 0
        assert image_queue(st)[0].score == pytest.approx(pts + MISSING_WEIGHT * m, abs=5e-3)
        proj.session("lead").confirm_people(iid)       # a human looked: nobody is missing after all
        assert image_queue(st)[0].score == pytest.approx(pts, abs=1e-3)
