"""COCO export/import on real ground truth: pycocotools-valid, AP 1.0 against itself, lossless."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.importing import import_frames
from annotator.core.project import Project
from exporters.coco import read_coco, to_coco, write_json
from exporters.yolo import write_yolo

from tests.conftest import GT_DEV


@pytest.fixture
def gt_project(tmp_path, gt_dev):
    """A project of 8 pose-gt-dev photos (multi-person too) with their GT imported as verified."""
    ims = [im for im in gt_dev["images"] if im["source"] == "coco_mini"][:8]
    ids = {im["id"] for im in ims}
    sub = {"images": ims, "annotations": [a for a in gt_dev["annotations"] if a["image_id"] in ids],
           "categories": gt_dev["categories"]}
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps(sub))
    proj, _ = Project.create(tmp_path / "p", [GT_DEV / "images" / im["file_name"] for im in ims])
    kind, frames = read_coco(gt_file)
    assert kind == "17"
    s = import_frames(proj, frames, "verified")
    assert s["images_matched"] == 8 and s["unknown_images"] == []
    yield proj, sub
    proj.close()


def _ap(data: dict, tmp_path) -> float:
    path = tmp_path / "x.json"
    write_json(data, path)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        dets = [dict(a, score=1.0) for a in data["annotations"]]
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "keypoints")
        k = len(data["categories"][0]["keypoints"])
        ev.params.kpt_oks_sigmas = sk.SIGMAS if k == 33 else sk.COCO17_SIGMAS   # COCOeval defaults to 17
        ev.evaluate(); ev.accumulate(); ev.summarize()
    return ev.stats[0]


@pytest.mark.parametrize("kind", ["17", "33"])
def test_export_scores_ap_1_against_itself(gt_project, tmp_path, kind):
    proj, sub = gt_project
    data = to_coco(proj.store.iter_frames(), kind)
    assert len(data["categories"][0]["keypoints"]) == int(kind)
    n_people = sum(1 for a in sub["annotations"] if a["num_keypoints"] > 0)
    assert len(data["annotations"]) >= n_people
    assert _ap(data, tmp_path) == pytest.approx(1.0)


def test_coco17_export_matches_ground_truth_points(gt_project):
    proj, sub = gt_project
    data = to_coco(proj.store.iter_frames(), "17")
    ours = {(a["image_id"], tuple(a["keypoints"])) for a in data["annotations"]}
    name_to_id = {im["bp_file_name"].split("/")[-1]: im["id"] for im in data["images"]}
    for a in sub["annotations"]:
        if a["num_keypoints"] == 0:
            continue
        im = next(i for i in sub["images"] if i["id"] == a["image_id"])
        kp = [0.0 if (k % 3 != 2 and a["keypoints"][k - k % 3 + 2] == 0) else a["keypoints"][k]
              for k in range(51)]
        kp = [round(float(v), 2) if k % 3 != 2 else int(v) for k, v in enumerate(kp)]
        assert (name_to_id[im["file_name"].split("/")[-1]], tuple(kp)) in ours


def test_round_trip_is_lossless(gt_project, tmp_path):
    proj, _ = gt_project
    # make it interesting: predicted points with confidences beside verified ones
    s = proj.session("rt")
    pid = proj.store.person_ids(proj.store.images()[0].id)[0]
    p = proj.store.load_person(pid)
    p.vis[29] = 1
    p.xy[29] = (100.5, 200.25)
    p.conf[29] = 0.42
    p.verified[29] = False
    p.source[29] = "model-x"
    s.replace_person(pid, p)
    first = to_coco(proj.store.iter_frames(), "33")
    f1 = tmp_path / "a.json"
    write_json(first, f1)
    proj2, _ = Project.create(tmp_path / "p2", [proj.source_path(r) for r in proj.store.images()])
    with proj2:
        kind, frames = read_coco(f1)
        import_frames(proj2, frames, "verified")
        second = to_coco(proj2.store.iter_frames(), "33")
    strip = lambda d: [{k: v for k, v in a.items() if k != "bp_source"} for a in d["annotations"]]
    for a, b in zip(strip(first), strip(second)):
        assert a == b, {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)}
    assert len(first["annotations"]) == len(second["annotations"])
    assert [i["file_name"] for i in first["images"]] == [i["file_name"] for i in second["images"]]
    a = next(x for x in second["annotations"] if x["keypoints"][29 * 3:29 * 3 + 3] == [100.5, 200.25, 1])
    assert a["bp_conf"][29] == 0.42 and a["bp_verified"][29] is False and a["bp_source"][29] == "model-x"


def test_verified_only_drops_predicted_points(gt_project):
    proj, _ = gt_project
    data = to_coco(proj.store.iter_frames(), "33", verified_only=True)
    for a in data["annotations"]:
        kp = np.array(a["keypoints"]).reshape(33, 3)
        # COCO-17 import verifies exactly the 17 COCO points; the other 16 are never exported
        others = [i for i in range(33) if i not in sk.COCO17_FROM_BP]
        assert (kp[others, 2] == 0).all()


def test_yolo_export(gt_project, tmp_path):
    proj, _ = gt_project
    s = write_yolo(proj.store.iter_frames(), tmp_path / "y",
                   lambda f: proj.source_path(proj.store.image(f.id)), "17")
    assert s["images"] == 8
    yaml = (tmp_path / "y" / "data.yaml").read_text()
    assert "kpt_shape: [17, 3]" in yaml and "flip_idx: [0, 2, 1, 4, 3, 6, 5" in yaml
    lines = [l for f in (tmp_path / "y" / "labels").glob("*.txt") for l in f.read_text().splitlines()]
    assert len(lines) == s["people"] > 0
    vals = np.array([list(map(float, l.split())) for l in lines])
    assert vals.shape[1] == 5 + 17 * 3 and (vals[:, 1:5] >= 0).all() and (vals[:, 1:5] <= 1).all()


def test_bad_coco_files(tmp_path, gt_project):
    proj, sub = gt_project
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(UserError, match="broken.json: not valid JSON"):
        read_coco(broken)
    wrong = tmp_path / "wrong.json"
    bad = json.loads(json.dumps(sub))
    bad["annotations"][0]["keypoints"] = bad["annotations"][0]["keypoints"][:-3]
    wrong.write_text(json.dumps(bad))
    with pytest.raises(UserError, match=r"wrong.json: annotation \d+ has 48 keypoint values; expected 51"):
        read_coco(wrong)
    unknown = tmp_path / "unknown.json"
    other = json.loads(json.dumps(sub))
    for im in other["images"]:
        im["file_name"] = "elsewhere/" + im["file_name"].replace(".jpg", "_x.jpg")
    unknown.write_text(json.dumps(other))
    before = proj.store.counts()
    _, frames = read_coco(unknown)
    with pytest.raises(UserError, match="none of its 8 images is in the project"):
        import_frames(proj, frames, "verified", source="unknown.json")
    assert proj.store.counts() == before


def test_crowd_regions_import_export_and_cocoeval_ignores_people_there(tmp_path, gt_dev):
    # a real COCO photo with an iscrowd region (the crowd behind the labelled people)
    name = "coco_mini/000000174375.jpg"
    (im,) = [im for im in gt_dev["images"] if im["file_name"] == name]
    anns = [a for a in gt_dev["annotations"] if a["image_id"] == im["id"]]
    crowd = [a for a in anns if a["iscrowd"]]
    assert len(crowd) == 1
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps({"images": [im], "annotations": anns, "categories": gt_dev["categories"]}))
    with Project.create(tmp_path / "p", [GT_DEV / "images" / name])[0] as proj:
        s = import_frames(proj, read_coco(gt_file)[1], "verified")
        assert s["crowd_regions_added"] == 1
        (row,) = proj.store.images()
        assert proj.store.crowd_regions(row.id) == [[round(v, 2) for v in crowd[0]["bbox"]]]
        assert import_frames(proj, read_coco(gt_file)[1], "verified")["crowd_regions_added"] == 0   # once
        data = to_coco(proj.store.iter_frames(), "17")
    # a file with only the crowd region: imported, and logged as an action like any import
    (tmp_path / "crowd.json").write_text(json.dumps({"images": [im], "annotations": crowd,
                                                      "categories": gt_dev["categories"]}))
    with Project.create(tmp_path / "p2", [GT_DEV / "images" / name])[0] as proj2:
        assert import_frames(proj2, read_coco(tmp_path / "crowd.json")[1])["crowd_regions_added"] == 1
        assert proj2.store.db.execute("SELECT command FROM actions").fetchall() == [("import",)]
        assert proj2.store.crowd_regions(proj2.store.images()[0].id) == [[round(v, 2) for v in crowd[0]["bbox"]]]
    out = [a for a in data["annotations"] if a["iscrowd"]]
    assert len(out) == 1 and out[0]["num_keypoints"] == 0 and out[0]["bbox"] == [round(v, 2) for v in crowd[0]["bbox"]]
    path = tmp_path / "x.json"
    write_json(data, path)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        people = [dict(a, score=0.5) for a in data["annotations"] if not a["iscrowd"]]   # the fake ranks first
        x, y, w, h = out[0]["bbox"]
        kp = np.zeros((17, 3))
        kp[:, 0] = np.linspace(x + 0.4 * w, x + 0.45 * w, 17)
        kp[:, 1] = np.linspace(y + 0.2 * h, y + 0.8 * h, 17)
        kp[:, 2] = 2
        fake = {"image_id": people[0]["image_id"], "category_id": 1, "keypoints": kp.ravel().tolist(), "score": 1.0,
                "bbox": [float(kp[:, 0].min()), float(kp[:, 1].min()), float(np.ptp(kp[:, 0])), float(np.ptp(kp[:, 1]))]}

        def ap(dets):
            ev = COCOeval(gt, gt.loadRes(dets), "keypoints")
            ev.evaluate(); ev.accumulate(); ev.summarize()
            return ev.stats[0]
        # a person predicted inside the crowd region is ignored; without the region it is a false person
        assert ap(people + [fake]) == pytest.approx(1.0)
    no_crowd = dict(data, annotations=[a for a in data["annotations"] if not a["iscrowd"]])
    write_json(no_crowd, path)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        assert ap(people + [fake]) < 0.9
