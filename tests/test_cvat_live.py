"""The CVAT sync scenarios against a real CVAT server (skipped unless one is given).

    CVAT_URL=http://localhost:8080 CVAT_USER=admin CVAT_PASSWORD=... \\
        .venv/bin/pytest -m live_cvat tests/test_cvat_live.py -v

Each test works in a new CVAT project named `pose-annotator-live-<random>`,
deleted at the end (set CVAT_KEEP=1 to keep it for a look in the browser).
The user needs the right to create projects and tasks. Edits "by a CVAT user"
are made with cvat-sdk as that same user.
"""
from __future__ import annotations

import json
import os
import secrets
import zipfile
from pathlib import Path

import numpy as np
import pytest

from annotator.cli import base as cli
from annotator.core import skeleton as sk
from annotator.cvat.client import connect
from exporters.cvat_label import LabelMap, shape_to_person
from annotator.core.model import OCCLUDED, VISIBLE
from annotator.core.project import Project

from tests.test_cvat_sync import edit_on_server, element, make_project, one_line_error

LIVE = all(os.environ.get(k) for k in ("CVAT_URL", "CVAT_USER", "CVAT_PASSWORD"))
pytestmark = [pytest.mark.live_cvat, pytest.mark.needs_data,
              pytest.mark.skipif(not LIVE, reason="set CVAT_URL, CVAT_USER, CVAT_PASSWORD to run against a real CVAT")]


@pytest.fixture
def live(tmp_path):
    """(connection, CVAT project name, sdk client); the CVAT project is deleted afterwards."""
    from cvat_sdk.core.client import Client, Config
    conn = connect(env=os.environ, interactive=False)
    name = f"pose-annotator-live-{secrets.token_hex(4)}"
    client = Client(conn.url, config=Config(cache_dir=tmp_path / "sdk-cache"), check_server_version=False)
    client.login((os.environ["CVAT_USER"], os.environ["CVAT_PASSWORD"]))
    yield conn, name, client
    try:
        p = conn.find_project(name)
        if p and not os.environ.get("CVAT_KEEP"):
            conn.call("DELETE", f"/api/projects/{p['id']}", what=f"deleting project '{name}'")
    finally:
        client.close()
        conn.close()


def cvat(capsys, *args):
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def lmap_of(conn, name) -> LabelMap:
    return LabelMap.from_labels(conn.project_labels(conn.find_project(name)["id"]))


def jobs_of(conn, name) -> list[int]:
    p = conn.find_project(name)
    return [j["id"] for t in conn.list_tasks(p["id"]) for j in conn.list_jobs(t["id"])]


def test_live_push_edit_pull(live, tmp_path, gt_dev, capsys):
    conn, name, client = live
    root = make_project(tmp_path, gt_dev, 4)
    rc, out, err = cvat(capsys, "cvat", "push", root, "--cvat-project", name, "--segment-size", "2", "--quiet")
    assert rc == 0, err
    n_people = sum(len(f.persons) for f in Project.open(root).store.iter_frames())
    jobs = jobs_of(conn, name)
    assert len(jobs) == 2
    assert sum(len(conn.get_job_annotations(j)["shapes"]) for j in jobs) == n_people
    # pushing again creates nothing
    rc, out, err = cvat(capsys, "cvat", "push", root, "--quiet")
    assert rc == 0, err
    assert len(conn.list_tasks(conn.find_project(name)["id"])) == 1
    assert sum(len(conn.get_job_annotations(j)["shapes"]) for j in jobs) == n_people
    # a CVAT user moves a point and flags another as occluded
    lmap = lmap_of(conn, name)
    flagged = []

    def change(shape):
        element(shape, lmap, "left_knee").update(points=[101.5, 202.25], outside=False, occluded=False)
        e = next(e for e in shape["elements"] if not e["outside"] and not e["occluded"]
                 and e["label_id"] != lmap.sub_id["left_knee"])
        e["occluded"] = True
        flagged.append(lmap.name_of[e["label_id"]])
    shape = edit_on_server(client, jobs[0], change)
    rc, out, err = cvat(capsys, "cvat", "pull", root, "--quiet")
    assert rc == 0, err
    with Project.open(root) as proj:
        pid = proj.store.db.execute("SELECT person_id FROM cvat_shapes WHERE shape_id=?", (shape["id"],)).fetchone()[0]
        p = proj.store.load_person(pid)
        k = sk.INDEX["left_knee"]
        assert np.allclose(p.xy[k], (101.5, 202.25), atol=0.01) and p.vis[k] == VISIBLE
        assert p.vis[sk.INDEX[flagged[0]]] == OCCLUDED
        assert proj.store.history(pid, limit=1)[0]["command"] == "cvat_pull"


def test_live_conflict_and_prefer(live, tmp_path, gt_dev, capsys):
    conn, name, client = live
    root = make_project(tmp_path, gt_dev, 2)
    assert cvat(capsys, "cvat", "push", root, "--cvat-project", name, "--quiet")[0] == 0
    lmap = lmap_of(conn, name)
    jid = jobs_of(conn, name)[0]
    shape = edit_on_server(client, jid, lambda s: element(s, lmap, "left_elbow").update(points=[1.0, 2.0],
                                                                                      outside=False))
    with Project.open(root) as proj:
        pid = proj.store.db.execute("SELECT person_id FROM cvat_shapes WHERE shape_id=?", (shape["id"],)).fetchone()[0]
        proj.session("me").move_point(pid, sk.INDEX["left_elbow"], 3.0, 4.0)
    rc, out, err = cvat(capsys, "cvat", "pull", root, "--quiet")
    assert rc == 0 and "1 conflicts" in out, out + err
    rc, out, err = cvat(capsys, "cvat", "status", root)
    assert "changed on both sides" in out
    rc, out, err = cvat(capsys, "cvat", "push", root, "--quiet")      # the conflicted person is not sent
    assert rc == 0 and "1 conflicts" in out, out + err
    s = next(s for s in conn.get_job_annotations(jid)["shapes"] if s["id"] == shape["id"])
    assert np.allclose(element(s, lmap, "left_elbow")["points"], [1.0, 2.0])
    rc, out, err = cvat(capsys, "cvat", "pull", root, "--prefer", "local", "--quiet")
    assert rc == 0, err
    rc, out, err = cvat(capsys, "cvat", "push", root, "--quiet")
    assert rc == 0, err
    s = next(s for s in conn.get_job_annotations(jid)["shapes"] if s["id"] == shape["id"])
    assert np.allclose(element(s, lmap, "left_elbow")["points"], [3.0, 4.0])


def test_live_round_trip_coco_keypoints_and_cvat_xml(live, tmp_path, gt_dev, capsys):
    """The server's own exporters read back here, and our files import into a CVAT task."""
    from exporters.coco import read_coco, to_coco, write_json
    from exporters.cvat_xml import read_cvat_xml, write_cvat_xml
    conn, name, client = live
    root = make_project(tmp_path, gt_dev, 3)
    assert cvat(capsys, "cvat", "push", root, "--cvat-project", name, "--quiet")[0] == 0
    with Project.open(root) as proj:
        ours = {Path(f.file_name).name: f for f in proj.store.iter_frames()}
        task_id = proj.store.db.execute("SELECT task_id FROM cvat_tasks").fetchone()[0]
    task = client.tasks.retrieve(task_id)

    def same_people(frames):
        got = {Path(f.file_name).name: f.persons for f in frames}
        for fname, f in ours.items():
            assert len(got.get(fname, [])) == len(f.persons), fname
            for p in f.persons:
                assert any(np.array_equal(p.vis, q.vis) and np.abs(p.xy - q.xy)[p.labelled].max(initial=0) < 0.02
                           for q in got[fname]), fname

    for fmt, member, reader in (("COCO Keypoints 1.0", ".json", lambda f: read_coco(f)[1]),
                                ("CVAT for images 1.1", ".xml", read_cvat_xml)):
        z = tmp_path / f"export{member}.zip"
        task.export_dataset(fmt, z, include_images=False)
        with zipfile.ZipFile(z) as zf:
            inner = next(n for n in zf.namelist() if n.endswith(member))
            out = tmp_path / Path(inner).name
            out.write_bytes(zf.read(inner))
        same_people(reader(out))

    # our files, with CVAT's frame names, imported into a second task with the same images
    frames = list(ours.values())
    for f in frames:
        f.file_name = Path(f.file_name).name
    lmap = lmap_of(conn, name)
    with Project.open(root) as proj:
        files = [proj.source_path(proj.store.image(f.id)) for f in frames]
    for fmt, path, writer in (("COCO Keypoints 1.0", tmp_path / "ours.json",
                               lambda p: write_json(to_coco(frames), p)),
                              ("CVAT 1.1", tmp_path / "ours.xml", lambda p: write_cvat_xml(frames, p))):
        writer(path)
        t2 = conn.create_task(f"{name}-{path.suffix[1:]}", files, project_id=conn.find_project(name)["id"])
        client.tasks.retrieve(t2["id"]).import_annotations(fmt, path)
        meta = [Path(m["name"]).name for m in conn.task_frames(t2["id"])]
        ann = conn.get_task_annotations(t2["id"])
        from annotator.core.model import Frame
        back = {n: Frame(n, 0, 0) for n in meta}
        for s in ann["shapes"]:
            if s["type"] == "skeleton":
                back[meta[s["frame"]]].persons.append(shape_to_person(s, lmap))
        same_people(list(back.values()))
    json.dumps(ann)      # the server's answer is plain JSON


def test_live_wrong_password_is_one_line(live, tmp_path, gt_dev, capsys):
    conn, name, client = live
    root = make_project(tmp_path, gt_dev, 1)
    rc, out, err = cvat(capsys, "cvat", "push", root, "--url", conn.url, "--user", os.environ["CVAT_USER"],
                        "--password", "definitely-wrong-" + secrets.token_hex(3), "--quiet")
    one_line_error(rc, err, "rejected")


def test_live_guard_deletions_and_completed_job(live, tmp_path, gt_dev, capsys):
    """Against the real server's updated_date, delete and job-state semantics: a job a CVAT
    user edited after our pull is not overwritten; deletions go both ways; completing the job
    on CVAT verifies the people in it."""
    from cvat_sdk import models
    from cvat_sdk.core.proxies.annotations import AnnotationUpdateAction
    conn, name, client = live
    root = make_project(tmp_path, gt_dev, 3)
    assert cvat(capsys, "cvat", "push", root, "--cvat-project", name, "--quiet")[0] == 0
    assert cvat(capsys, "cvat", "pull", root, "--quiet")[0] == 0
    lmap = lmap_of(conn, name)
    jid = jobs_of(conn, name)[0]

    def shapes():
        return {s["id"]: s for s in conn.get_job_annotations(jid)["shapes"]}

    shape = edit_on_server(client, jid, lambda s: element(s, lmap, "nose").update(points=[7.0, 8.0], outside=False))
    with Project.open(root) as proj:          # we edit another person of the same job meanwhile
        other, other_sid = proj.store.db.execute(
            "SELECT person_id, shape_id FROM cvat_shapes WHERE shape_id!=? AND job_id=?", (shape["id"], jid)).fetchone()
        proj.session("me").move_point(other, sk.INDEX["right_knee"], 9.0, 9.5)
    rc, out, err = cvat(capsys, "cvat", "push", root, "--quiet")
    one_line_error(rc, err, f"job(s) {jid}", "changed on the server since the last pull")
    assert np.allclose(element(shapes()[shape["id"]], lmap, "nose")["points"], [7.0, 8.0])
    assert cvat(capsys, "cvat", "pull", root, "--quiet")[0] == 0
    rc, out, err = cvat(capsys, "cvat", "push", root, "--quiet")
    assert rc == 0 and "people updated on cvat 1" in out, out + err
    now = shapes()
    assert np.allclose(element(now[other_sid], lmap, "right_knee")["points"], [9.0, 9.5])
    assert np.allclose(element(now[shape["id"]], lmap, "nose")["points"], [7.0, 8.0])

    # a local deletion is deleted on CVAT by the next push
    with Project.open(root) as proj:
        proj.session("me").delete_person(other)
    rc, out, err = cvat(capsys, "cvat", "push", root, "--quiet")
    assert rc == 0 and "people deleted on cvat 1" in out, out + err
    now = shapes()
    assert other_sid not in now and shape["id"] in now

    # a CVAT user deletes a person and completes the job
    gone = next(s for sid, s in sorted(now.items()) if sid != shape["id"])
    job = client.jobs.retrieve(jid)
    job.update_annotations(models.PatchedLabeledDataRequest(shapes=[models.LabeledShapeRequest(
        type="skeleton", frame=gone["frame"], label_id=gone["label_id"], id=gone["id"],
        elements=[models.SubLabeledShapeRequest(type="points", frame=gone["frame"], label_id=e["label_id"],
                                                points=e["points"], id=e["id"]) for e in gone["elements"]])]),
        action=AnnotationUpdateAction.DELETE)
    job.update(models.PatchedJobWriteRequest(state="completed"))
    with Project.open(root) as proj:
        gone_pid = proj.store.db.execute("SELECT person_id FROM cvat_shapes WHERE shape_id=?",
                                         (gone["id"],)).fetchone()[0]
    rc, out, err = cvat(capsys, "cvat", "pull", root, "--quiet")
    assert rc == 0 and "people deleted from cvat 1" in out, out + err
    with Project.open(root) as proj:
        assert proj.store.load_person(gone_pid) is None
        in_job = [r[0] for r in proj.store.db.execute("SELECT person_id FROM cvat_shapes WHERE job_id=?", (jid,))]
        assert in_job and all(proj.store.load_person(pid).fully_verified for pid in in_job)
    # and nothing goes back on the next push
    n = len(shapes())
    assert cvat(capsys, "cvat", "push", root, "--quiet")[0] == 0
    assert len(shapes()) == n
