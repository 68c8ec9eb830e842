"""The pose engine on real photos with the real MediaPipe models (annotator/blazepose.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from annotator.prefill import blazepose as bp
from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.media import load_image

from tests.conftest import GT_DEV, MEDIA

CLEAR_SINGLE = ["coco_mini/000000030752.jpg", "coco_mini/000000084533.jpg",
                "coco_mini/000000109313.jpg", "coco_mini/000000153797.jpg"]
# 070133: the detector fires (0.56) on something that is not a person; the landmark model must reject it.
NO_PERSON = ["coco_no_person/000000000802.jpg", "coco_no_person/000000070133.jpg"]
CROWD = MEDIA / "images" / "openpose_COCO_val2014_000000000241.jpg"     # three people, fully visible


@pytest.fixture(scope="module")
def multi():
    return bp.PoseEstimator("multi")


@pytest.fixture(scope="module")
def legacy():
    e = bp.PoseEstimator("legacy")
    yield e
    e.close()


def _gt_person(gt_dev, file_name):
    im = next(i for i in gt_dev["images"] if i["file_name"] == file_name)
    ann = next(a for a in gt_dev["annotations"] if a["image_id"] == im["id"] and a["num_keypoints"] > 0)
    return np.array(ann["keypoints"], float).reshape(17, 3), ann["bbox"]


def _err_over_bbox(pose, k17, bbox) -> float:
    lab = k17[:, 2] > 0
    d = np.linalg.norm(pose.xy[list(sk.COCO17_FROM_BP)][lab] - k17[lab, :2], axis=1)
    return float(np.median(d) / max(bbox[2], bbox[3]))


@pytest.mark.parametrize("file_name", CLEAR_SINGLE)
def test_points_land_on_the_person(multi, gt_dev, file_name):
    rgb = load_image(GT_DEV / "images" / file_name)
    poses = multi.predict(rgb)
    assert len(poses) == 1
    p = poses[0]
    k17, bbox = _gt_person(gt_dev, file_name)
    assert _err_over_bbox(p, k17, bbox) < 0.05
    assert p.xy.shape == (33, 2) and p.z.shape == p.visibility.shape == p.presence.shape == (33,)
    assert 0.5 <= p.score <= 1.0 and p.pose_flag >= 0.5
    assert ((0 <= p.visibility) & (p.visibility <= 1)).all() and ((0 <= p.presence) & (p.presence <= 1)).all()
    x, y, w, h = p.bbox()
    assert x <= bbox[0] + 0.2 * bbox[2] and x + w >= bbox[0] + 0.8 * bbox[2] and h > 0.6 * bbox[3]


def test_multi_reproduces_mediapipe_on_its_person(multi, legacy):
    """Same detection, same ROI, same landmarks as mp.solutions.pose for the person it picks."""
    rgb = load_image(GT_DEV / "images" / CLEAR_SINGLE[0])
    (L,) = legacy.predict(rgb)
    d = multi.detect(rgb)[0]
    assert d.score == pytest.approx(L.det_score, abs=1e-3)
    assert np.allclose(d.roi()[:4], L.roi[:4], atol=0.5) and abs(d.roi()[4] - L.roi[4]) < 1e-3
    (p,) = multi.predict(rgb)
    e = np.linalg.norm(p.xy - L.xy, axis=1)
    assert np.median(e) < 1.0 and np.percentile(e, 90) < 3.0
    assert np.abs(p.visibility - L.visibility).max() < 0.05


def test_crowd_gets_every_person(multi, legacy):
    rgb = load_image(CROWD)
    poses = multi.predict(rgb)
    assert len(poses) >= 3
    assert len(legacy.predict(rgb)) == 1
    hips = np.array([p.xy[[23, 24]].mean(0) for p in poses])
    d = np.linalg.norm(hips[:, None] - hips[None], axis=-1) + np.eye(len(hips)) * 1e9
    assert d.min() > 20          # distinct people, not one person found twice
    assert all(a.score >= b.score for a, b in zip(poses, poses[1:]))


@pytest.mark.parametrize("file_name", NO_PERSON)
def test_no_person_no_prediction(multi, file_name):
    assert multi.predict(load_image(GT_DEV / "images" / file_name)) == []


def test_predict_in_box(multi, gt_dev):
    rgb = load_image(CROWD)
    people = multi.predict(rgb)
    target = people[-1]
    x, y, w, h = target.bbox()
    p = multi.predict_in_box(rgb, (x - 0.1 * w, y - 0.1 * h, 1.2 * w, 1.2 * h))
    assert p is not None
    assert np.median(np.linalg.norm(p.xy - target.xy, axis=1)) < 0.05 * max(w, h)
    # nobody in an empty corner of a no-person photo
    empty = load_image(GT_DEV / "images" / NO_PERSON[0])
    assert multi.predict_in_box(empty, (0, 0, empty.shape[1] / 3, empty.shape[0] / 3)) is None
    with pytest.raises(ValueError, match="outside"):
        multi.predict_in_box(rgb, (rgb.shape[1] + 5, 0, 10, 10))


def test_predict_in_box_finds_a_person_the_whole_image_misses(multi, gt_dev):
    """A small person: the detector on the user's box sees what it cannot see in the whole photo."""
    file_name = "coco_mini/000000000139.jpg"
    rgb = load_image(GT_DEV / "images" / file_name)
    k17, bbox = _gt_person(gt_dev, file_name)
    assert multi.predict(rgb) == []
    p = multi.predict_in_box(rgb, bbox)
    assert p is not None and _err_over_bbox(p, k17, bbox) < 0.1


def test_track_keeps_people_across_frames():
    frames = sorted((MEDIA / "video_frames").rglob("*.jpg"))
    assert len(frames) >= 10
    est = bp.PoseEstimator(tiles=0.5)
    prev = est.predict(load_image(frames[0]))
    assert len(prev) >= 2
    prev = est.track(load_image(frames[0]), prev)        # ids are given on the first track call
    assert [p.track_id for p in prev] == list(range(len(prev)))
    calls = []
    detect = est.detect
    est.detect = lambda *a, **k: calls.append(1) or detect(*a, **k)
    for f in frames[1:]:
        cur = est.track(load_image(f), prev, detect=False)
        assert [p.track_id for p in cur[:len(prev)]] == [p.track_id for p in prev]
        for a, b in zip(prev, cur):
            size = max(a.bbox()[2], a.bbox()[3])
            assert np.linalg.norm(a.xy[[23, 24]].mean(0) - b.xy[[23, 24]].mean(0)) < 0.25 * size
        prev = cur
    assert not calls            # nobody lost: no detector run in detect=False mode
    # MediaPipe's own tracking agrees on the first person
    leg = bp.PoseEstimator("legacy")
    lp = []
    for f in frames:
        lp = leg.track(load_image(f), lp)
    leg.close()
    assert len(lp) == 1
    d = min(np.median(np.linalg.norm(p.xy - lp[0].xy, axis=1)) for p in prev)
    assert d < 0.05 * max(lp[0].bbox()[2:])


def test_track_adds_new_people_and_drops_lost_ones(multi):
    rgb = load_image(CROWD)
    first = multi.predict(rgb)
    out = multi.track(rgb, first[:1])               # one followed; the detector adds the others after it
    assert out[0].track_id == 0 and len(out) == len(first)
    assert sorted(p.track_id for p in out) == list(range(len(first)))
    empty = load_image(GT_DEV / "images" / NO_PERSON[0])
    assert multi.track(empty, first) == []


@pytest.mark.parametrize("complexity,name", [(2, "heavy"), (0, "lite")])
def test_lite_and_heavy_on_mediapipes_own_api_give_a_clear_error(complexity, name):
    """mp.solutions.pose would download them at run time; our LiteRT engines run installed copies."""
    with pytest.raises(UserError, match=rf"model_complexity={complexity} \({name}\) is not available.*download"):
        bp.PoseEstimator("legacy", model_complexity=complexity)


def test_crop_affine_matches_decode_and_pixels(multi):
    rgb = load_image(CROWD)
    roi = multi.detect(rgb)[0].roi()
    crop, A = multi.crop(rgb, roi)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.float32 and 0 <= crop.min() and crop.max() <= 1
    raw, flag, hm = multi.run_landmark_model(crop)
    p = bp.decode_landmarks(raw, flag, roi)                 # no heatmap: plain projection
    r = np.asarray(raw).reshape(39, 5)
    assert np.allclose(p.xy, r[:33, :2] @ A[:, :2].T + A[:, 2], atol=1e-6)
    assert np.allclose(p.z, r[:33, 2] / 256 * roi[2], atol=1e-6)
    # the crop really shows the image where the affine says (pixel centres well inside the photo)
    for u, v in [(128, 128), (40, 200), (220, 30)]:
        x, y = A @ (u, v, 1.0)
        if 1 <= x < rgb.shape[1] - 2 and 1 <= y < rgb.shape[0] - 2:
            x0, y0 = int(x), int(y)
            fx, fy = x - x0, y - y0
            q = rgb[y0:y0 + 2, x0:x0 + 2].astype(float)
            want = (q[0, 0] * (1 - fx) * (1 - fy) + q[0, 1] * fx * (1 - fy) + q[1, 0] * (1 - fx) * fy
                    + q[1, 1] * fx * fy) / 255
            assert np.allclose(crop[v, u], want, atol=2 / 255)
    # a crop of another size is the same region
    small, A64 = multi.crop(rgb, roi, size=64)
    assert small.shape == (64, 64, 3) and np.allclose(A64 @ (64, 64, 1), A @ (256, 256, 1))
    # predict_roi = crop + model + decode (with heatmap refinement)
    q = multi.predict_roi(rgb, roi)
    assert np.allclose(q.xy, bp.decode_landmarks(raw, flag, roi, hm).xy)


def test_rois_follow_mediapipe_rules():
    # hip centre at (100, 200), scale point straight above at distance 50: upright, side 2*50*1.25
    cx, cy, w, h, r = bp.alignment_roi((100, 200), (100, 150))
    assert (cx, cy, w, h) == (100, 200, 125, 125) and r == pytest.approx(0.0)
    # scale point to the right (the person lies with the head right): the crop turns 90 degrees so
    # that its "up" points to the image's right
    r = bp.alignment_roi((100, 200), (150, 200))[4]
    assert r == pytest.approx(math.pi / 2)
    A = bp.crop_affine((100, 200, 125, 125, r))
    assert np.allclose(A @ (128, 0, 1), (100 + 62.5, 200))
    # the affine maps the crop centre to the ROI centre and a crop corner to a rotated corner
    assert np.allclose(A @ (128, 128, 1), (100, 200))
    assert np.allclose(A @ (0, 0, 1), (100 + 62.5, 200 - 62.5))
    assert len(bp.ssd_anchors()) == 2254


def test_bad_input_is_rejected(multi):
    with pytest.raises(ValueError, match="RGB uint8"):
        multi.predict(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="K >= 33"):
        bp.decode_landmarks(np.zeros(20), 1.0, (0, 0, 10, 10, 0))
    with pytest.raises(UserError, match="engine="):
        bp.PoseEstimator("fast")
    with pytest.raises(UserError, match="min_detection_confidence"):
        bp.PoseEstimator(min_detection_confidence=2)


def test_landmark_model_without_the_mask_head_gives_the_same_outputs(tmp_path, monkeypatch):
    """The pipeline runs the landmark network cut down to the outputs it reads (no 256x256
    segmentation mask): fewer operators, and on a real person's crop the same numbers, bit for bit.
    The lean file is cached; a damaged cache entry is dropped and the model made in memory, not fatal."""
    from annotator.prefill import models as mp_models
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = mp_models.landmark_path(1)
    whole = bp._Model(path, lean=False)
    lean = bp._Model(path, outputs=bp.LM_OUTPUTS)
    assert sorted(lean.out) == sorted(bp.LM_OUTPUTS) and "Identity_2" in whole.out
    assert len(lean.it._get_ops_details()) < len(whole.it._get_ops_details()) - 30
    rgb = load_image(GT_DEV / "images" / CLEAR_SINGLE[0])
    est = bp.PoseEstimator()
    roi = est.predict(rgb)[0].roi
    crop, _ = est.crop(rgb, roi)
    for a, b in zip(whole(crop, bp.LM_OUTPUTS), lean(crop, bp.LM_OUTPUTS)):
        np.testing.assert_array_equal(a, b)
    assert est._lm().it.get_output_details()[0]["name"] in bp.LM_OUTPUTS and len(est._lm().out) == 3
    with pytest.raises(UserError, match="no output named Identity_9"):
        bp._Model(path, outputs=("Identity", "Identity_9"))
    cached = list((tmp_path / "pose-annotator").glob("pose_landmark_full.*.tflite"))
    assert len(cached) == 1 and cached[0].stat().st_size > 1_000_000
    cached[0].write_bytes(b"TFL3 but truncated")
    again = bp._Model(path, outputs=bp.LM_OUTPUTS)
    np.testing.assert_array_equal(again(crop, bp.LM_OUTPUTS)[0], lean(crop, bp.LM_OUTPUTS)[0])
    assert not cached[0].exists() or cached[0].stat().st_size > 1_000_000


def test_detector_with_its_sparse_weights_stored_dense_gives_the_same_outputs(tmp_path, monkeypatch):
    """The detector's 38 DENSIFY operators (sparse weights LiteRT expands at every load) are run
    once and replaced by their result: none left, and on a real photo the same numbers, bit for bit."""
    from annotator.prefill import models as mp_models
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    shipped = bp._Model(mp_models.detector_path(), lean=False)
    lean = bp._Model(mp_models.detector_path())
    ops = [o["op_name"] for o in shipped.it._get_ops_details()]
    assert ops.count("DENSIFY") == 38
    assert "DENSIFY" not in [o["op_name"] for o in lean.it._get_ops_details()]
    assert len(lean.it._get_ops_details()) == len(ops) - 38
    x, _ = bp.detector_input(load_image(GT_DEV / "images" / CLEAR_SINGLE[0]))
    names = tuple(shipped.out)
    assert sorted(lean.out) == sorted(names)
    for a, b in zip(shipped(x, names), lean(x, names)):
        assert a.size > 1000
        np.testing.assert_array_equal(a, b)
    assert len(list((tmp_path / "pose-annotator").glob("pose_detection.*.tflite"))) == 1


def test_a_reinstalled_model_replaces_its_old_lean_copy_in_the_cache(tmp_path, monkeypatch):
    """The cache key holds the model file's size and mtime: a new venv or a model upgrade makes a
    new lean copy, and the old one (3-8 MB) goes, while a lean copy of other outputs stays."""
    import os
    import shutil
    from annotator.prefill import models as mp_models
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = tmp_path / "pose_landmark_full.tflite"
    shutil.copy(mp_models.landmark_path(1), model)
    cache = tmp_path / "cache" / "pose-annotator"
    first = mp_models.lean_model_file(model, bp.LM_OUTPUTS)
    other = mp_models.lean_model_file(model, ("Identity",))
    assert first.is_file() and other.is_file() and first != other
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))   # "reinstalled"
    second = mp_models.lean_model_file(model, bp.LM_OUTPUTS)
    assert second != first and second.is_file() and not first.exists() and other.is_file()
    assert sorted(cache.glob("*.tflite")) == sorted([second, other])
    assert mp_models.lean_model_file(model, bp.LM_OUTPUTS) == second
