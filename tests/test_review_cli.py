"""`evaluate`, `suspicion` and `queue` end to end on a tiny real project with real ground truth."""
from __future__ import annotations

import json
import re

import pytest

from tests.conftest import GT_DEV
from tests.test_cli import assert_one_line_error, run

KEYS = ("oks_ap", "oks_ap50", "oks_ar", "pck_0_05", "pck_0_1", "median_error_px", "person_recall", "false_people",
        "needs_fixing_share", "queue_recall_at_0_1", "queue_recall_at_0_2", "queue_recall_at_0_3",
        "random_recall_at_0_2")


TINY = ["coco_mini/000000030752.jpg", "coco_mini/000000211325.jpg", "mmpose_coco/000000197388.jpg",
        "sg_pose_minicoco/000000093620.jpg"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, gt_dev):
    """A clear photo, two the model gets partly wrong, a three-person photo and one with nobody, pre-filled."""
    d = tmp_path_factory.mktemp("review")
    names = TINY + [next(i["file_name"] for i in gt_dev["images"] if i["source"] == "coco_no_person")]
    ims = [next(i for i in gt_dev["images"] if i["file_name"] == n) for n in names]
    ids = {i["id"] for i in ims}
    sub = {"images": ims, "annotations": [a for a in gt_dev["annotations"] if a["image_id"] in ids],
           "categories": gt_dev["categories"]}
    (d / "gt.json").write_text(json.dumps(sub))
    rc, _, err = run("init", d / "p", "--images", *[GT_DEV / "images" / i["file_name"] for i in ims])
    assert rc == 0, err
    rc, out, err = run("prefill", d / "p", "--workers", "1", "--quiet")
    assert rc == 0, err
    return d, sub


def test_suspicion_then_evaluate_writes_every_figure(tiny):
    d, sub = tiny
    rc, out, err = run("suspicion", d / "p", "--tta", "--quiet")
    assert rc == 0, err
    # pre-fill already stored every person's review signals (the free ones): --tta has nothing left to run
    assert "TTA: 0 people" in out, out
    m = re.search(r"suspicion: (\d+) people .* \((\d+) with engine or re-run signals\)", out)
    assert m and int(m[1]) >= 5 and m[1] == m[2], out
    rc, out, err = run("evaluate", d / "p", "--gt", d / "gt.json", "--json", d / "e.json")
    assert rc == 0, err
    for text in ("COCO OKS", "PCK@0.05", "person recall", "recall after 20%", "MediaPipe visibility",
                 "calibrated combination", "swap", "oracle"):
        assert text in out, text
    r = json.loads((d / "e.json").read_text())
    for k in KEYS:
        assert k in r, k
    assert r["n_images"] == 5 and r["n_empty_images"] == 1
    assert r["random_recall_at_0_2"] == pytest.approx(0.2)
    assert 0.0 <= r["oks_ap"] <= 1.0 and 0.0 <= r["pck_0_05"] <= r["pck_0_1"] <= 1.0
    assert r["n_gt_people"] == sum(1 for a in sub["annotations"] if a["num_keypoints"] > 0)
    assert r["n_matched_people"] >= 5 and 0.2 <= r["person_recall"] <= 1.0
    for k in ("conf_queue_recall_at_0_2", "tta_queue_recall_at_0_2", "swap_queue_recall_at_0_2"):
        assert 0.0 <= r[k] <= 1.0, k
    # the model gets some points wrong here, and the queue finds them sooner than chance
    assert r["n_needs_fixing"] >= 5
    assert r["queue_recall_at_0_3"] > r["random_recall_at_0_3"] + 0.2
    assert all(not isinstance(v, dict) for v in r.values()), "the JSON file is flat"
    # the queue lists images by expected fixes, the empty one last: not at 0 (the person boxes
    # pre-fill rejected there may be people it missed) but below every image with people
    rc, out, err = run("queue", d / "p", "--limit", "10")
    assert rc == 0, err
    lines = [l for l in out.splitlines()[1:] if l.strip()]
    assert len(lines) == 5
    scores = [float(l.split()[1]) for l in lines]
    assert scores == sorted(scores, reverse=True) and 0.0 <= scores[-1] < 1.0 and scores[-2] > 1.0
    assert "no_person" in lines[-1], lines
    rc, out, err = run("queue", d / "p", "--points", "--limit", "5", "--diverse")
    assert rc == 0 and len(out.splitlines()) == 6, out


def test_evaluate_scores_the_current_points(tiny, tmp_path):
    """Import the GT as verified: the project's current points are then the GT itself."""
    d, sub = tiny
    import shutil
    shutil.copytree(d / "p", tmp_path / "p")
    rc, out, err = run("import", tmp_path / "p", d / "gt.json")
    assert rc == 0, err
    rc, out, err = run("evaluate", tmp_path / "p", "--gt", d / "gt.json", "--json", tmp_path / "e.json")
    assert rc == 0, err
    r = json.loads((tmp_path / "e.json").read_text())
    assert r["pck_0_05"] == 1.0 and r["median_error_px"] == 0.0 and r["person_recall"] == 1.0
    assert r["oks_ar"] > 0.99      # (AP can be lower: pre-filled people the GT did not match remain)
    assert r["n_queue_points"] == 0 and r["needs_fixing_share"] is None     # nothing left to review
    # the verified points (with what the model had predicted there) calibrate the project's own model
    rc, out, err = run("suspicion", tmp_path / "p", "--calibrate", "--quiet")
    assert rc == 0, err
    n = int(out.split("calibrated on ")[1].split()[0])
    assert n >= 50 and "from the project's verified points" in out
    rc, out, err = run("suspicion", tmp_path / "p", "--export-model", tmp_path / "m.json", "--quiet")
    assert json.loads((tmp_path / "m.json").read_text())["meta"]["trained_on"]["gt"] == "verified points"


def test_bad_input_is_one_line(tiny, tmp_path):
    d, _ = tiny
    rc, _, err = run("evaluate", d / "p", "--gt", tmp_path / "nope.json")
    assert_one_line_error(rc, err, "nope.json", "no such file")
    rc, _, err = run("suspicion", d / "p", "--calibrate", "--gt", tmp_path / "gone.json")
    assert_one_line_error(rc, err, "gone.json", "no such file")
    (tmp_path / "m.json").write_text("{\"format\": 1}")
    rc, _, err = run("suspicion", d / "p", "--import-model", tmp_path / "m.json")
    assert_one_line_error(rc, err, "m.json", "not a suspicion model")
    rc, _, err = run("evaluate", tmp_path, "--gt", d / "gt.json")
    assert_one_line_error(rc, err, "not a project")


def test_status_says_which_people_have_re_run_features_from_an_older_version(tiny, tmp_path):
    """A project pre-filled before the re-run crops changed is scored without them until
    `suspicion --tta`: status counts those people and names the command; after it, none are left."""
    import shutil
    import sqlite3
    d, _ = tiny
    shutil.copytree(d / "p", tmp_path / "p")
    rc, out, err = run("status", tmp_path / "p", "--json")
    assert rc == 0, err
    before = json.loads(out)
    assert before["tta_current"] == before["persons"] >= 3 and before["tta_older"] == 0
    rc, out, _ = run("status", tmp_path / "p")
    assert "older version" not in out
    con = sqlite3.connect(tmp_path / "p" / "project.db")
    with con:
        n = con.execute("UPDATE kv SET value = json_set(value, '$.v', 1) WHERE key IN (SELECT key FROM kv"
                        " WHERE key LIKE 'suspicion.signals:%' LIMIT 2)").rowcount
    con.close()
    assert n == 2
    rc, out, err = run("status", tmp_path / "p")
    assert rc == 0, err
    assert "review signals: 2 people have re-run features from an older version" in out
    assert f"pose-annotator suspicion {tmp_path / 'p'} --tta" in out
    rc, _, err = run("suspicion", tmp_path / "p", "--tta", "--quiet")
    assert rc == 0, err
    after = json.loads(run("status", tmp_path / "p", "--json")[1])
    assert after["tta_older"] == 0 and after["tta_current"] == before["tta_current"]


def test_tta_on_two_processes_stores_what_one_process_does(tmp_path, monkeypatch):
    """`suspicion --tta` runs the re-runs in worker processes (after a change of the crops every
    person needs them again): photos and video frames get the same features, person by person,
    as the one-process path, and an image that no longer reads is skipped, not fatal."""
    import sqlite3

    from annotator.prefill import run as prefill

    from annotator.prefill import estimator, rerun
    from annotator.review import suspicion  # noqa: F401
    from annotator.core.project import Project

    from tests.conftest import MEDIA
    src = tmp_path / "in"
    src.mkdir()
    for n in TINY[:3]:
        (src / n.replace("/", "_")).write_bytes((GT_DEV / "images" / n).read_bytes())
    (src / "gone.jpg").write_bytes((GT_DEV / "images" / TINY[0]).read_bytes())
    Project.create(tmp_path / "p", [src, MEDIA / "videos" / "mmpose_demo.mp4"], stride=60)[0].close()
    rc, _, err = run("prefill", tmp_path / "p", "--no-tta", "--quiet")
    assert rc == 0, err
    (src / "gone.jpg").write_bytes(b"\xff\xd8\xff not any more")

    def stored():
        con = sqlite3.connect(tmp_path / "p" / "project.db")
        try:
            return dict(con.execute("SELECT key, value FROM kv WHERE key LIKE 'suspicion.signals:%'").fetchall())
        finally:
            con.close()
    # pre-fill kept the free signals, without the re-runs; people with no record at all (imported,
    # or made by an older version) are what `suspicion --tta` fills in
    assert stored() and not any('"tta"' in v for v in stored().values())
    con = sqlite3.connect(tmp_path / "p" / "project.db")
    with con:
        con.execute("DELETE FROM kv WHERE key LIKE 'suspicion.signals:%'")
    con.close()
    assert stored() == {}

    def not_here(*a):
        raise AssertionError("a re-run in the main process")
    with monkeypatch.context() as m:    # spawned workers import their own, unpatched run_tta_job
        m.setattr(estimator, "_start_method", lambda: "spawn")
        m.setattr(rerun, "run_tta_job", not_here)
        with Project.open(tmp_path / "p") as proj:
            rerun.compute_tta(proj, workers=2)
    two = stored()
    with Project.open(tmp_path / "p") as proj:
        people = {pid: img for pid, img in proj.store.db.execute(
            "SELECT q.id, CASE WHEN i.frame_index IS NULL THEN 'image' ELSE 'video' END FROM persons q"
            " JOIN images i ON i.id = q.image_id WHERE q.deleted = 0")}
        gone = {q for (q,) in proj.store.db.execute(
            "SELECT q.id FROM persons q JOIN images i ON i.id = q.image_id WHERE i.file_name LIKE '%gone.jpg'")}
        assert gone and "video" in people.values() and "image" in people.values()
        assert {int(k.split(":")[1]) for k in two} == set(people) - gone
        s = rerun.compute_tta(proj, force=True, workers=1)
    assert s["people"] == len(two)
    assert stored() == two
