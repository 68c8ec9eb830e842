"""CVAT push / pull / status end to end: real project (SQLite), real cvat-sdk client, CVAT API test server.

Edits "on the server" are made the way a CVAT user's client makes them: with
cvat-sdk's own Job proxy (PATCH annotations?action=update, job state).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from cvat_sdk import models
from cvat_sdk.core.client import Client, Config

from annotator.cli import base as cli

from exporters import cvat_label
from annotator.core import skeleton as sk
from annotator.cvat.client import connect
from annotator.cvat.sync import CvatSync, content, status
from annotator.core.errors import UserError
from annotator.core.importing import import_frames
from annotator.core.model import OCCLUDED, VISIBLE
from annotator.core.project import Project

from tests.cvat_server import CvatTestServer
from tests.test_cvat_xml import gt_frames

pytestmark = pytest.mark.needs_data


@pytest.fixture
def server():
    with CvatTestServer() as s:
        s.add_user("alice", "alice-pw")
        s.add_user("bob", "bob-pw")
        yield s


def make_project(tmp_path, gt_dev, n=4) -> Path:
    """A project of real photos whose people are real ground-truth points imported as predictions."""
    frames = gt_frames(gt_dev, n)
    root = tmp_path / "p"
    proj, _ = Project.create(root, [f.meta_path for f in frames])
    with proj:
        s = import_frames(proj, frames, "predicted", source="import:gt")
        assert s["images_matched"] == n and s["persons_added"] >= n
    return root


def cvat(*args, capsys=None):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr() if capsys else ("", "")
    return rc, out, err


def creds(server, user="alice", pw="alice-pw"):
    return ["--url", server.url, "--user", user, "--password", pw, "--quiet", "--timeout", "5"]


def one_line_error(rc, err, *needles):
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def sdk(server, tmp_path, user="bob", pw="bob-pw", job: int | None = None) -> Client:
    """A CVAT user's sdk client; with job: alice (the task owner) first assigns that job to the user."""
    if job is not None and user != "alice":
        with sdk(server, tmp_path, "alice", "alice-pw") as owner:
            uid = next(u.id for u in owner.users.list() if u.username == user)
            owner.jobs.retrieve(job).update(models.PatchedJobWriteRequest(assignee=uid))
    c = Client(server.url, config=Config(cache_dir=tmp_path / f"sdk-{user}", status_check_period=0.01),
               check_server_version=False)      # sdk 2.80 cannot parse an old server's /about
    c.login((user, pw))
    return c


def people(root) -> dict:
    """{file base name: [Person]} from the project's SQLite store."""
    with Project.open(root) as proj:
        return {Path(f.file_name).name: f.persons for f in proj.store.iter_frames()}


def task_posts(server) -> int:
    return sum(1 for m, p, _ in server.log if m == "POST" and p.rstrip("/") == "/api/tasks")


def server_shapes(server) -> list[dict]:
    return [s for j in server.jobs.values() for s in j["ann"]["shapes"]]


def edit_on_server(client: Client, job_id: int, fn) -> dict:
    """Let a CVAT user change a skeleton of a job through cvat-sdk; fn(shape dict) edits in place.

    The skeleton is the oldest (lowest id) with at least two placed points: a real CVAT
    lists a frame's shapes in no particular order, and a person with no labelled point
    (all elements outside) gives an edit nothing to work with."""
    job = client.jobs.retrieve(job_id)
    shapes = sorted((s.to_dict() for s in job.get_annotations().shapes), key=lambda s: s["id"])
    shape = next((s for s in shapes if sum(not e["outside"] for e in s["elements"]) >= 2), shapes[0])
    fn(shape)
    req = models.LabeledShapeRequest(
        type=shape["type"], frame=shape["frame"], label_id=shape["label_id"], id=shape["id"], group=shape["group"],
        source=shape["source"], occluded=shape["occluded"], outside=shape["outside"], z_order=shape["z_order"],
        rotation=shape["rotation"], points=shape["points"], attributes=[
            models.AttributeValRequest(spec_id=a["spec_id"], value=a["value"]) for a in shape["attributes"]],
        elements=[models.SubLabeledShapeRequest(
            type=e["type"], frame=e["frame"], label_id=e["label_id"], id=e["id"], group=e["group"],
            source=e["source"], occluded=e["occluded"], outside=e["outside"], z_order=e["z_order"],
            rotation=e["rotation"], points=e["points"],
            attributes=[models.AttributeValRequest(spec_id=a["spec_id"], value=a["value"]) for a in e["attributes"]])
            for e in shape["elements"]])
    job.update_annotations(models.PatchedLabeledDataRequest(shapes=[req]))
    return shape


def element(shape: dict, lmap, name: str) -> dict:
    return next(e for e in shape["elements"] if e["label_id"] == lmap.sub_id[name])


def lmap_of(server) -> cvat_label.LabelMap:
    labels = [server._label_json(lid) for lid in server.labels]
    return cvat_label.LabelMap.from_labels(labels)


def open_sync(root, server, user="alice", pw="alice-pw"):
    proj = Project.open(root)
    conn = connect(server.url, user, pw, env={}, retries=1, backoff=0.01, timeout=5)
    return proj, conn, CvatSync(proj, conn)


# -- push ------------------------------------------------------------------------------------------
def test_push_uploads_images_and_people_once(server, tmp_path, gt_dev, capsys):
    root = make_project(tmp_path, gt_dev)
    rc, out, err = cvat("cvat", "push", root, *creds(server), "--cvat-project", "poses", "--segment-size", "2",
                        capsys=capsys)
    assert rc == 0, err
    assert "connected to CVAT 2.80.0" in out
    assert len(server.tasks) == 1 and len(server.jobs) == 2           # 4 images, 2 per job
    local = people(root)
    n_people = sum(len(v) for v in local.values())
    shapes = server_shapes(server)
    assert len(shapes) == n_people
    # the server holds exactly our points, flags and attributes
    lmap = lmap_of(server)
    t = next(iter(server.tasks.values()))
    names = [f["name"] for f in t["frames"]]
    for s in shapes:
        q = cvat_label.shape_to_person(server._with_defaults(s, t), lmap)
        mine = local[names[s["frame"]]]
        assert any(np.array_equal(q.vis, p.vis) and np.abs(q.xy - p.xy)[p.labelled].max(initial=0) < 0.01
                   and q.source == p.source for p in mine)
    # URL and user are kept, the password is not
    toml = (root / "project.toml").read_text()
    assert server.url in toml and 'user = "alice"' in toml and "alice-pw" not in toml

    # pushing again creates nothing: no task, no shape, no annotation write
    writes = len(server.requests_to("/annotations", "PATCH"))
    rc, out, err = cvat("cvat", "push", root, *creds(server), capsys=capsys)
    assert rc == 0, err
    assert len(server.tasks) == 1 and len(server_shapes(server)) == n_people
    assert len(server.requests_to("/annotations", "PATCH")) == writes
    assert task_posts(server) == 1

    # a local edit is sent as an update of the same shape
    with Project.open(root) as proj:
        pid = proj.store.person_ids(proj.store.images()[0].id)[0]
        proj.session("me").move_point(pid, sk.INDEX["left_wrist"], 33.25, 44.5)
    rc, out, err = cvat("cvat", "push", root, *creds(server), capsys=capsys)
    assert rc == 0, err
    assert "people updated on cvat 1" in out
    assert len(server_shapes(server)) == n_people
    with Project.open(root) as proj:
        sid = proj.store.db.execute("SELECT shape_id FROM cvat_shapes WHERE person_id=?", (pid,)).fetchone()[0]
    s = next(s for s in server_shapes(server) if s["id"] == sid)
    assert element(s, lmap, "left_wrist")["points"] == [33.25, 44.5]


def test_push_queue_selects_the_first_images_of_the_review_queue(server, tmp_path, gt_dev, capsys):
    root = make_project(tmp_path, gt_dev)
    with Project.open(root) as proj:
        from annotator.review.queue import image_queue
        first = [it.file_name for it in image_queue(proj.store, limit=2)]
    rc, out, err = cvat("cvat", "push", root, *creds(server), "--queue", "2", capsys=capsys)
    assert rc == 0, err
    t = next(iter(server.tasks.values()))
    assert [f["name"] for f in t["frames"]] == [Path(n).name for n in first]
    rc, out, err = cvat("cvat", "status", root, capsys=capsys)
    assert "2 images not on CVAT" in out


# -- pull ------------------------------------------------------------------------------------------
def test_server_edit_is_pulled_into_the_store_with_history(server, tmp_path, gt_dev, capsys):
    root = make_project(tmp_path, gt_dev)
    assert cvat("cvat", "push", root, *creds(server), capsys=capsys)[0] == 0
    with Project.open(root) as proj:        # forget every score: only a re-scoring writes them again
        with proj.store.tx():
            proj.store.db.execute("UPDATE points SET suspicion=NULL")
    lmap = lmap_of(server)
    jid = next(iter(server.jobs))
    with sdk(server, tmp_path, job=jid) as c:
        def change(shape):
            element(shape, lmap, "left_knee")["points"] = [101.5, 202.25]
            element(shape, lmap, "left_knee")["outside"] = False
            element(shape, lmap, "left_knee")["occluded"] = False
            e = next(e for e in shape["elements"] if not e["outside"] and not e["occluded"]
                     and e["label_id"] != lmap.sub_id["left_knee"])
            e["occluded"] = True                                      # a visibility flag
            flagged.append(lmap.name_of[e["label_id"]])
        flagged = []
        shape = edit_on_server(c, jid, change)
    rc, out, err = cvat("cvat", "pull", root, *creds(server), capsys=capsys)
    assert rc == 0, err
    assert "people updated from cvat 1" in out
    with Project.open(root) as proj:
        pid = proj.store.db.execute("SELECT person_id FROM cvat_shapes WHERE shape_id=?", (shape["id"],)).fetchone()[0]
        p = proj.store.load_person(pid)
        k, n = sk.INDEX["left_knee"], sk.INDEX[flagged[0]]
        assert tuple(p.xy[k]) == (101.5, 202.25) and p.vis[k] == VISIBLE and p.vis[n] == OCCLUDED
        assert p.source[k] == "cvat:bob" and p.source[n] == "cvat:bob"
        assert not p.verified[k]                          # the job is not completed: an edit, not verified
        other = [i for i in range(sk.N) if i not in (k, n)]
        assert all(p.source[i] != "cvat:bob" for i in other)
        h = proj.store.history(pid, limit=1)[0]
        assert h["command"] == "cvat_pull" and h["actor"] == "annotator:cvat:bob"
        # the pulled image is scored again for the review queue (what a recompute gives); images the
        # pull did not change are left alone
        pulled = p.suspicion.copy()
        assert np.isfinite(pulled).all()
        img = proj.store.person_image(pid)
        untouched = proj.store.db.execute(
            "SELECT count(*), count(p.suspicion) FROM points p JOIN persons q ON q.id=p.person_id"
            " WHERE q.image_id != ? AND q.deleted=0", (img,)).fetchone()
        assert untouched[0] > 0 and untouched[1] == 0
        from annotator.review.suspicion import update_suspicion
        update_suspicion(proj, [proj.store.person_image(pid)])
        np.testing.assert_allclose(proj.store.load_person(pid).suspicion, pulled)
    # nothing pending afterwards, and a second pull downloads nothing
    s = status(Project.open(root))
    assert s["pending"] == {"create": 0, "update": 0, "delete": 0} and not s["conflicts"]
    rc, out, err = cvat("cvat", "pull", root, *creds(server), capsys=capsys)
    assert "jobs unchanged" in out and "jobs downloaded" not in out


def test_pull_is_undoable(server, tmp_path, gt_dev):
    root = make_project(tmp_path, gt_dev, 2)
    proj, conn, sync = open_sync(root, server)
    with proj, conn:
        sync.push("undo")
        lmap = lmap_of(server)
        jid = next(iter(server.jobs))
        with sdk(server, tmp_path, job=jid) as c:
            shape = edit_on_server(c, jid, lambda s: element(s, lmap, "right_hip").update(points=[5.0, 6.0],
                                                                                         outside=False))
        pid = proj.store.db.execute("SELECT person_id FROM cvat_shapes WHERE shape_id=?", (shape["id"],)).fetchone()[0]
        before = proj.store.load_person(pid)
        session = proj.session("cvat:alice")
        sync.project.session = lambda annotator=None: session       # keep the session to undo with it
        sync.pull()
        assert tuple(proj.store.load_person(pid).xy[sk.INDEX["right_hip"]]) == (5.0, 6.0)
        assert session.undo() is not None
        assert np.abs(proj.store.load_person(pid).xy - before.xy).max() < 1e-3     # history keeps 3 decimals


def test_completed_job_verifies_by_that_cvat_user(server, tmp_path, gt_dev, capsys):
    root = make_project(tmp_path, gt_dev, 2)
    assert cvat("cvat", "push", root, *creds(server), capsys=capsys)[0] == 0
    lmap = lmap_of(server)
    jid = next(iter(server.jobs))
    with sdk(server, tmp_path, job=jid) as c:
        edit_on_server(c, jid, lambda s: element(s, lmap, "left_ankle").update(points=[70.0, 80.0], outside=False))
        c.jobs.retrieve(jid).update(models.PatchedJobWriteRequest(state="completed"))
    rc, out, err = cvat("cvat", "pull", root, *creds(server), capsys=capsys)
    assert rc == 0, err
    with Project.open(root) as proj:
        for f in proj.store.iter_frames():
            for p in f.persons:
                assert p.fully_verified
                assert all(s == "cvat:bob" or v for s, v in zip(p.source, p.verified))
        assert {f.review_state for f in proj.store.iter_frames()} == {"verified"}


def test_new_and_deleted_people_on_the_server(server, tmp_path, gt_dev, capsys):
    root = make_project(tmp_path, gt_dev, 2)
    assert cvat("cvat", "push", root, *creds(server), capsys=capsys)[0] == 0
    lmap = lmap_of(server)
    jid = next(iter(server.jobs))
    ann = server._job_ann(server.jobs[jid])
    gone = ann["shapes"][0]
    with sdk(server, tmp_path, job=jid) as c:
        job = c.jobs.retrieve(jid)
        # bob deletes one person and draws a new one
        shapes = job.get_annotations().shapes
        job.update_annotations(models.PatchedLabeledDataRequest(shapes=[
            models.LabeledShapeRequest(type="skeleton", frame=gone["frame"], label_id=gone["label_id"], id=gone["id"],
                                       elements=[models.SubLabeledShapeRequest(
                                           type="points", frame=gone["frame"], label_id=e["label_id"],
                                           points=e["points"], id=e["id"]) for e in gone["elements"]])]),
            action=__import__("cvat_sdk").core.proxies.annotations.AnnotationUpdateAction.DELETE)
        new_el = [models.SubLabeledShapeRequest(type="points", frame=0, label_id=lmap.sub_id[n],
                                                points=[10.0 + i, 20.0 + i], outside=i % 3 == 0)
                  for i, n in enumerate(sk.NAMES)]
        job.update_annotations(models.PatchedLabeledDataRequest(shapes=[models.LabeledShapeRequest(
            type="skeleton", frame=0, label_id=lmap.label_id, elements=new_el)]),
            action=__import__("cvat_sdk").core.proxies.annotations.AnnotationUpdateAction.CREATE)
        assert len(shapes) >= 1
    with Project.open(root) as proj:
        gone_pid = proj.store.db.execute("SELECT person_id FROM cvat_shapes WHERE shape_id=?",
                                         (gone["id"],)).fetchone()[0]
        n_before = proj.store.counts()["persons"]
    rc, out, err = cvat("cvat", "pull", root, *creds(server), capsys=capsys)
    assert rc == 0, err
    assert "people added from cvat 1" in out and "people deleted from cvat 1" in out
    with Project.open(root) as proj:
        assert proj.store.load_person(gone_pid) is None
        assert proj.store.counts()["persons"] == n_before
        new = [p for f in proj.store.iter_frames() for p in f.persons if p.source[1] == "cvat:bob"]
        assert len(new) == 1 and tuple(new[0].xy[1]) == (11.0, 21.0) and new[0].vis[0] == 0
    # and the next push sends nothing back
    writes = len(server.requests_to("/annotations", "PATCH"))
    assert cvat("cvat", "push", root, *creds(server), capsys=capsys)[0] == 0
    assert len(server.requests_to("/annotations", "PATCH")) == writes


# -- conflicts -------------------------------------------------------------------------------------
def _move_elbow_here(session, pid):
    session.move_point(pid, sk.INDEX["left_elbow"], 3.0, 4.0)


def _conflict_setup(server, tmp_path, gt_dev, capsys, local_edit=_move_elbow_here):
    """Pushed; bob moves a person's left elbow on CVAT to (1, 2); `local_edit(session, pid)` here."""
    root = make_project(tmp_path, gt_dev, 2)
    assert cvat("cvat", "push", root, *creds(server), capsys=capsys)[0] == 0
    lmap = lmap_of(server)
    jid = next(iter(server.jobs))
    with sdk(server, tmp_path, job=jid) as c:
        shape = edit_on_server(c, jid, lambda s: element(s, lmap, "left_elbow").update(points=[1.0, 2.0],
                                                                                      outside=False))
    with Project.open(root) as proj:
        pid = proj.store.db.execute("SELECT person_id FROM cvat_shapes WHERE shape_id=?", (shape["id"],)).fetchone()[0]
        local_edit(proj.session("me"), pid)
    return root, pid, shape, lmap


def test_change_on_both_sides_is_a_conflict_resolved_by_prefer_server(server, tmp_path, gt_dev, capsys):
    root, pid, shape, lmap = _conflict_setup(server, tmp_path, gt_dev, capsys)
    rc, out, err = cvat("cvat", "pull", root, *creds(server), capsys=capsys)
    assert rc == 0, err
    assert "1 conflicts" in out
    with Project.open(root) as proj:                         # not applied
        assert tuple(proj.store.load_person(pid).xy[sk.INDEX["left_elbow"]]) == (3.0, 4.0)
    rc, out, err = cvat("cvat", "status", root, capsys=capsys)
    assert f"person {pid} (CVAT shape {shape['id']}" in out and "changed on both sides" in out
    # push leaves the conflicted person alone and says so
    rc, out, err = cvat("cvat", "push", root, *creds(server), capsys=capsys)
    assert rc == 0 and "1 conflicts" in out, out + err
    s = next(s for s in server_shapes(server) if s["id"] == shape["id"])
    assert element(s, lmap, "left_elbow")["points"] == [1.0, 2.0]
    rc, out, err = cvat("cvat", "pull", root, *creds(server), "--prefer", "server", capsys=capsys)
    assert rc == 0, err
    with Project.open(root) as proj:
        assert tuple(proj.store.load_person(pid).xy[sk.INDEX["left_elbow"]]) == (1.0, 2.0)
        assert not status(proj)["conflicts"]


def test_person_deleted_here_and_changed_on_cvat_comes_back_with_prefer_server(server, tmp_path, gt_dev, capsys):
    root, pid, shape, _ = _conflict_setup(server, tmp_path, gt_dev, capsys,
                                          local_edit=lambda session, pid: session.delete_person(pid))
    with Project.open(root) as proj:
        image_id = proj.store.person_image(pid)          # the deleted person's row stays
    rc, out, err = cvat("cvat", "pull", root, *creds(server), "--prefer", "server", capsys=capsys)
    assert rc == 0, err
    with Project.open(root) as proj:
        assert proj.store.load_person(pid) is None
        (new_pid,) = proj.store.db.execute("SELECT person_id FROM cvat_shapes WHERE shape_id=?",
                                           (shape["id"],)).fetchone()
        assert new_pid != pid and proj.store.person_image(new_pid) == image_id
        p = proj.store.load_person(new_pid)
        assert tuple(p.xy[sk.INDEX["left_elbow"]]) == (1.0, 2.0) and p.source[sk.INDEX["left_elbow"]] == "cvat:bob"
        assert not status(proj)["conflicts"] and status(proj)["pending"] == {"create": 0, "update": 0, "delete": 0}


def test_conflict_resolved_by_prefer_local_then_pushed(server, tmp_path, gt_dev, capsys):
    root, pid, shape, lmap = _conflict_setup(server, tmp_path, gt_dev, capsys)
    assert cvat("cvat", "pull", root, *creds(server), capsys=capsys)[0] == 0
    rc, out, err = cvat("cvat", "pull", root, *creds(server), "--prefer", "local", capsys=capsys)
    assert rc == 0, err
    with Project.open(root) as proj:
        assert tuple(proj.store.load_person(pid).xy[sk.INDEX["left_elbow"]]) == (3.0, 4.0)
        assert not status(proj)["conflicts"] and status(proj)["pending"]["update"] == 1
    rc, out, err = cvat("cvat", "push", root, *creds(server), capsys=capsys)
    assert rc == 0, err
    s = next(s for s in server_shapes(server) if s["id"] == shape["id"])
    assert element(s, lmap, "left_elbow")["points"] == [3.0, 4.0]


def test_job_edited_between_pull_and_push_is_not_overwritten(server, tmp_path, gt_dev, capsys):
    root = make_project(tmp_path, gt_dev, 2)
    assert cvat("cvat", "push", root, *creds(server), capsys=capsys)[0] == 0
    assert cvat("cvat", "pull", root, *creds(server), capsys=capsys)[0] == 0
    lmap = lmap_of(server)
    jid = next(iter(server.jobs))
    with sdk(server, tmp_path, job=jid) as c:        # bob edits one person...
        shape = edit_on_server(c, jid, lambda s: element(s, lmap, "nose").update(points=[7.0, 8.0], outside=False))
    with Project.open(root) as proj:        # ...while we edit another person of the same job
        other = proj.store.db.execute("SELECT person_id FROM cvat_shapes WHERE shape_id!=? AND job_id=?",
                                      (shape["id"], jid)).fetchone()
        assert other is not None
        proj.session("me").move_point(other[0], sk.INDEX["right_knee"], 9.0, 9.5)
    rc, out, err = cvat("cvat", "push", root, *creds(server), capsys=capsys)
    line = one_line_error(rc, err, f"job(s) {jid}", "pull")
    assert "changed on the server since the last pull" in line
    s = next(s for s in server_shapes(server) if s["id"] == shape["id"])
    assert element(s, lmap, "nose")["points"] == [7.0, 8.0]          # bob's work is intact
    # after a pull, the push goes through (different people: no conflict), and bob's edit is in the store
    assert cvat("cvat", "pull", root, *creds(server), capsys=capsys)[0] == 0
    rc, out, err = cvat("cvat", "push", root, *creds(server), capsys=capsys)
    assert rc == 0, err
    assert "people updated on cvat 1" in out
    s = next(s for s in server_shapes(server) if s["id"] == shape["id"])
    assert element(s, lmap, "nose")["points"] == [7.0, 8.0]
    with Project.open(root) as proj:
        pid = proj.store.db.execute("SELECT person_id FROM cvat_shapes WHERE shape_id=?", (shape["id"],)).fetchone()[0]
        assert tuple(proj.store.load_person(pid).xy[sk.INDEX["nose"]]) == (7.0, 8.0)


# -- interruptions and failures ---------------------------------------------------------------------
def test_interrupted_push_resumes_without_duplicates(server, tmp_path, gt_dev, capsys):
    root = make_project(tmp_path, gt_dev, 4)
    n_people = sum(len(v) for v in people(root).values())
    # 0. the process dies right after CVAT created the task, before its id was recorded
    proj, conn, sync = open_sync(root, server)
    real_create = conn.create_task_record

    def dies_after_create(*a, **kw):
        real_create(*a, **kw)
        raise KeyboardInterrupt
    conn.create_task_record = dies_after_create
    with proj, conn, pytest.raises(KeyboardInterrupt):
        sync.push("p")
    assert len(server.tasks) == 1
    # 1. the upload fails: the task is found again by its name (not created twice); its data is missing
    server.fail_next(1, 503, path="/data")
    rc, out, err = cvat("cvat", "push", root, *creds(server), capsys=capsys)
    one_line_error(rc, err, "503")
    assert not server._failures
    assert len(server.tasks) == 1 and not server_shapes(server) and task_posts(server) == 1
    # 2. the annotation write is applied but the answer is lost (the process dies right after it)
    proj, conn, sync = open_sync(root, server)
    real = conn.patch_job_annotations

    def dies_after(jid, action, data):
        real(jid, action, data)
        raise KeyboardInterrupt
    conn.patch_job_annotations = dies_after
    with proj, conn, pytest.raises(KeyboardInterrupt):
        sync.push("p")
    assert len(server.tasks) == 1 and len(server_shapes(server)) == n_people
    # 3. the next push finishes: same task, no duplicate people
    rc, out, err = cvat("cvat", "push", root, *creds(server), capsys=capsys)
    assert rc == 0, err
    assert len(server.tasks) == 1 and len(server_shapes(server)) == n_people
    assert task_posts(server) == 1
    with Project.open(root) as proj:
        st = status(proj)
        assert st["pending"] == {"create": 0, "update": 0, "delete": 0}
        assert proj.store.db.execute("SELECT count(*) FROM cvat_shapes").fetchone()[0] == n_people


@pytest.mark.parametrize("failure", ["down", "401", "403", "500", "timeout", "wrong_url"])
def test_failures_are_one_line_errors_and_lose_nothing(server, tmp_path, gt_dev, capsys, failure):
    root = make_project(tmp_path, gt_dev, 2)
    assert cvat("cvat", "push", root, *creds(server), capsys=capsys)[0] == 0
    with Project.open(root) as proj:
        pid = proj.store.person_ids(proj.store.images()[0].id)[0]
        proj.session("me").move_point(pid, 0, 12.0, 13.0)
        db_before = proj.store.db.execute("SELECT count(*) FROM actions").fetchone()[0]
    args = creds(server)
    needle = {"down": "connection refused", "401": "rejected user", "403": "403", "500": "HTTP 500", "timeout": "timeout",
              "wrong_url": "does not look like a CVAT server"}[failure]
    if failure == "down":
        server.stop()
    elif failure == "401":
        server.set_user_status("alice", "unauthorized")
    elif failure == "403":
        server.set_user_status("alice", "forbidden")
    elif failure == "500":
        server.fail_next(8, 500, path="/api/jobs")
    elif failure == "timeout":
        server.delay, server.delay_path = 2.0, "/api/jobs"
        args = args[:-1] + ["1"]
    elif failure == "wrong_url":
        args = ["--url", server.url + "/nothing-here"] + args[2:]
    for cmd in ("push", "pull"):
        rc, out, err = cvat("cvat", cmd, root, *args, capsys=capsys)
        if failure == "wrong_url" and rc == 0:
            continue
        one_line_error(rc, err, needle)
    server.delay = 0.0
    server._failures.clear()
    with Project.open(root) as proj:              # the local edit is still there and still pending
        assert tuple(proj.store.load_person(pid).xy[0]) == (12.0, 13.0)
        assert proj.store.db.execute("SELECT count(*) FROM actions").fetchone()[0] == db_before
        assert status(proj)["pending"]["update"] == 1
    if failure in ("500", "timeout", "403", "401"):
        server.set_user_status("alice", "ok")
        rc, out, err = cvat("cvat", "push", root, *creds(server), capsys=capsys)
        assert rc == 0, err
        with Project.open(root) as proj:
            assert status(proj)["pending"]["update"] == 0


def test_cli_subprocess_prints_one_line_without_traceback(server, tmp_path, gt_dev):
    from tests.test_cli import run
    root = make_project(tmp_path, gt_dev, 1)
    rc, out, err = run("cvat", "push", root, "--url", server.url, "--user", "alice", "--password", "wrong",
                       "--quiet")
    one_line_error(rc, err, "rejected user 'alice'")
    rc, out, err = run("cvat", "status", root)
    assert rc == 0 and "nothing pushed yet" in out


def test_old_server_round_trip(tmp_path, gt_dev, capsys):
    with CvatTestServer(version="2.23.0", requests_api=False) as server:
        server.add_user("alice", "alice-pw")
        server.add_user("bob", "bob-pw")
        root = make_project(tmp_path, gt_dev, 2)
        rc, out, err = cvat("cvat", "push", root, *creds(server), capsys=capsys)
        assert rc == 0, err
        assert "connected to CVAT 2.23.0" in out
        lmap = lmap_of(server)
        jid = next(iter(server.jobs))
        with sdk(server, tmp_path, job=jid) as c:
            shape = edit_on_server(c, jid, lambda s: element(s, lmap, "left_hip").update(points=[55.5, 66.5],
                                                                                        outside=False, occluded=True))
        rc, out, err = cvat("cvat", "pull", root, *creds(server), capsys=capsys)
        assert rc == 0, err
        with Project.open(root) as proj:
            pid = proj.store.db.execute("SELECT person_id FROM cvat_shapes WHERE shape_id=?",
                                        (shape["id"],)).fetchone()[0]
            p = proj.store.load_person(pid)
            assert tuple(p.xy[sk.INDEX["left_hip"]]) == (55.5, 66.5) and p.vis[sk.INDEX["left_hip"]] == OCCLUDED


def test_content_ignores_coordinates_of_unlabelled_points(gt_dev):
    p = gt_frames(gt_dev, 1)[0].persons[0]
    q = p.copy()
    i = int(np.flatnonzero(p.vis == 0)[0]) if (p.vis == 0).any() else 0
    q.vis[i] = 0
    q.xy[i] = (999.0, 999.0)
    p.vis[i] = 0
    assert content(p) == content(q)
    json.dumps(content(p))
    with pytest.raises(UserError):
        CvatSync.pull(type("S", (), {"_q": None})(), prefer="nobody")


def test_video_frames_and_clashing_file_names_get_unique_frame_names(server, tmp_path, gt_dev, capsys):
    import shutil
    from tests.conftest import MEDIA
    frames = gt_frames(gt_dev, 1)
    for d in ("a", "b"):                                  # two photos called the same in different folders
        (tmp_path / d).mkdir()
        shutil.copy(frames[0].meta_path, tmp_path / d / "same.jpg")
    proj, _ = Project.create(tmp_path / "p", [tmp_path / "a" / "same.jpg", tmp_path / "b" / "same.jpg",
                                              MEDIA / "videos" / "mmpose_demo.mp4"], stride=40)
    with proj:
        session = proj.session("me")
        rng = np.random.default_rng(1)
        for im in proj.store.images():
            from annotator.core.model import Person
            session.add_person(im.id, Person(rng.uniform(5, 100, (sk.N, 2)), np.full(sk.N, VISIBLE)))
        n = proj.store.count_images()
        assert n >= 3
    rc, out, err = cvat("cvat", "push", tmp_path / "p", *creds(server), capsys=capsys)
    assert rc == 0, err
    t = next(iter(server.tasks.values()))
    names = [f["name"] for f in t["frames"]]
    assert len(names) == n == len(set(names))
    assert "same.jpg" in names and any(x.endswith("_same.jpg") for x in names)
    assert any(x.startswith("mmpose_demo_") for x in names)
    assert len(server_shapes(server)) == n


def test_token_from_env_is_used_and_never_stored(server, tmp_path, gt_dev, capsys, monkeypatch):
    root = make_project(tmp_path, gt_dev, 1)
    token = server.issue_token("alice")
    monkeypatch.setenv("CVAT_URL", server.url)
    monkeypatch.setenv("CVAT_ACCESS_TOKEN", token)
    for k in ("CVAT_USER", "CVAT_PASSWORD"):
        monkeypatch.delenv(k, raising=False)
    rc, out, err = cvat("cvat", "push", root, "--quiet", capsys=capsys)
    assert rc == 0, err
    assert "as alice" in out
    toml = (root / "project.toml").read_text()
    assert token not in toml and server.url in toml
    monkeypatch.delenv("CVAT_ACCESS_TOKEN")
    monkeypatch.setattr("sys.stdin", None)                  # no terminal: no prompt, a clear error
    rc, out, err = cvat("cvat", "pull", root, "--quiet", capsys=capsys)
    one_line_error(rc, err, "no CVAT password", "CVAT_PASSWORD")


@pytest.mark.parametrize("prefer", ["server", "local"])
def test_conflict_resolved_offline_then_pushed(server, tmp_path, gt_dev, capsys, prefer):
    """The desktop app settles a conflict without the server; the next push agrees with the choice."""
    root, pid, shape, lmap = _conflict_setup(server, tmp_path, gt_dev, capsys)
    assert cvat("cvat", "pull", root, *creds(server), capsys=capsys)[0] == 0
    with Project.open(root) as proj:
        sync = CvatSync(proj, None)
        with pytest.raises(UserError):
            sync.resolve(pid + 1000, prefer)
        sync.resolve(pid, prefer)
        want = (1.0, 2.0) if prefer == "server" else (3.0, 4.0)
        assert tuple(proj.store.load_person(pid).xy[sk.INDEX["left_elbow"]]) == want
        st = status(proj)
        assert not st["conflicts"] and st["pending"]["update"] == (prefer == "local")
    rc, out, err = cvat("cvat", "push", root, *creds(server), capsys=capsys)
    assert rc == 0, err
    s = next(s for s in server_shapes(server) if s["id"] == shape["id"])
    assert element(s, lmap, "left_elbow")["points"] == list(want)
    with Project.open(root) as proj:
        assert status(proj)["pending"] == {"create": 0, "update": 0, "delete": 0}


def test_coco_export_has_the_fields_cvats_importer_requires(gt_dev):
    """CVAT's "COCO Keypoints 1.0" importer (datumaro) insists on every field of a COCO person
    annotation; a real CVAT 2.23.1 refused our file with "Missing annotation field 'segmentation'"."""
    from exporters.coco import to_coco
    data = json.loads(json.dumps(to_coco(gt_frames(gt_dev, 3))))
    assert data["annotations"]
    for img in data["images"]:
        assert isinstance(img["id"], int) and isinstance(img["file_name"], str)
        assert isinstance(img["width"], int) and isinstance(img["height"], int)
    for a in data["annotations"]:
        for key, kind in (("id", int), ("image_id", int), ("category_id", int), ("iscrowd", int),
                          ("keypoints", list), ("segmentation", (list, dict)), ("bbox", list)):
            assert isinstance(a.get(key), kind), (key, a.get(key))
        assert len(a["keypoints"]) == 3 * sk.N and len(a["bbox"]) == 4


def test_update_that_lands_after_the_timeout_is_settled_without_loss(server, tmp_path, gt_dev, capsys):
    """Seen on a real CVAT 2.23.1: a big `update` PATCH ran 100+ s in the database, past our timeout, and then
    landed. The push reports the timeout; the job now differs from what we last saw, so the next push
    refuses it until a pull, which finds both sides changed the same way; nothing is lost or sent twice."""
    root = make_project(tmp_path, gt_dev, 2)
    assert cvat("cvat", "push", root, *creds(server), capsys=capsys)[0] == 0
    with Project.open(root) as proj:
        pid = proj.store.person_ids(proj.store.images()[0].id)[0]
        proj.session("me").move_point(pid, 0, 12.0, 13.0)
    with Project.open(root) as proj:
        sid = proj.store.db.execute("SELECT shape_id FROM cvat_shapes WHERE person_id=?", (pid,)).fetchone()[0]
    server.delay, server.delay_path = 2.0, "/annotations"
    rc, out, err = cvat("cvat", "push", root, *creds(server)[:-1], "1", capsys=capsys)
    one_line_error(rc, err, "timeout")
    time.sleep(2.5)                                                   # the server finishes the update
    server.delay = 0.0
    lmap = lmap_of(server)
    s = next(s for s in server_shapes(server) if s["id"] == sid)
    assert np.allclose(element(server._with_defaults(s, next(iter(server.tasks.values()))), lmap, "nose")["points"],
                       [12.0, 13.0])
    rc, out, err = cvat("cvat", "push", root, *creds(server), capsys=capsys)
    one_line_error(rc, err, "changed on the server since the last pull")
    rc, out, err = cvat("cvat", "pull", root, *creds(server), capsys=capsys)
    assert rc == 0, err
    writes = len(server.requests_to("/annotations", "PATCH"))
    rc, out, err = cvat("cvat", "push", root, *creds(server), capsys=capsys)
    assert rc == 0, err
    assert len(server.requests_to("/annotations", "PATCH")) == writes
    with Project.open(root) as proj:
        assert tuple(proj.store.load_person(pid).xy[0]) == (12.0, 13.0)
        assert status(proj)["pending"]["update"] == 0 and not status(proj)["conflicts"]


def test_people_drawn_as_tracks_are_reported_not_dropped_silently(server, tmp_path, gt_dev, capsys):
    """CVAT's track mode (a person interpolated across frames) is not read by pull; the pull says
    so, counts them, and changes nothing else."""
    root = make_project(tmp_path, gt_dev, 2)
    assert cvat("cvat", "push", root, *creds(server), capsys=capsys)[0] == 0
    lmap = lmap_of(server)
    jid = next(iter(server.jobs))
    with Project.open(root) as proj:
        before = {pid: proj.store.load_person(pid).xy.copy() for (pid,) in
                  proj.store.db.execute("SELECT id FROM persons WHERE deleted=0")}
    with sdk(server, tmp_path, job=jid) as c:
        els = [models.SubLabeledTrackRequest(frame=0, label_id=lmap.sub_id[n], shapes=[models.TrackedShapeRequest(
            type="points", frame=0, points=[30.0 + i, 40.0 + i], outside=False)]) for i, n in enumerate(sk.NAMES)]
        track = models.LabeledTrackRequest(frame=0, label_id=lmap.label_id, shapes=[models.TrackedShapeRequest(
            type="skeleton", frame=0, points=[], outside=False)], elements=els)
        c.jobs.retrieve(jid).update_annotations(models.PatchedLabeledDataRequest(tracks=[track]),
                                                action=__import__("cvat_sdk").core.proxies.annotations
                                                .AnnotationUpdateAction.CREATE)
    rc, out, err = cvat("cvat", "pull", root, *creds(server), capsys=capsys)
    assert rc == 0, err
    assert "tracks not pulled 1" in out and f"job {jid}: 1 track(s) not pulled" in out
    with Project.open(root) as proj:
        after = {pid: proj.store.load_person(pid).xy for (pid,) in
                 proj.store.db.execute("SELECT id FROM persons WHERE deleted=0")}
    assert after.keys() == before.keys()
    for pid in before:
        np.testing.assert_array_equal(after[pid], before[pid])
