"""Evaluation metrics: hand-computed cases, agreement with pycocotools, and the real pose-gt-dev GT."""
from __future__ import annotations

import contextlib
import copy
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from annotator.review import metrics as M
from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.model import Person

BP17 = list(sk.COCO17_FROM_BP)

# One upright person in a 100 x 200 box at (100, 50): 17 labelled points.
BASE17 = np.array([
    [150, 60], [145, 55], [155, 55], [140, 58], [160, 58],      # face
    [130, 90], [170, 90], [120, 120], [180, 120], [115, 150], [185, 150],
    [138, 150], [162, 150], [136, 195], [164, 195], [135, 240], [165, 240]], dtype=float)


def _ann(kps17: np.ndarray, v=2, bbox=(100.0, 50.0, 100.0, 200.0), area=10000.0, **extra) -> dict:
    v = np.broadcast_to(np.asarray(v), (17,))
    kp = np.column_stack([np.where(v[:, None] > 0, kps17, 0), v]).reshape(-1).tolist()
    a = {"category_id": 1, "iscrowd": 0, "keypoints": kp, "num_keypoints": int((v > 0).sum()),
         "bbox": list(bbox), "area": area}
    a.update(extra)
    return a


def _coco(images: list[tuple[str, list[dict], dict]]) -> dict:
    """[(file_name, annotations, extra image fields)] -> COCO dict (exhaustive unless said)."""
    ims, anns = [], []
    for i, (fn, people, extra) in enumerate(images, 1):
        ims.append({"id": i, "file_name": fn, "width": 640, "height": 480,
                    "exhaustive_person_annotation": True, "visibility_known": True, **extra})
        for a in people:
            anns.append(dict(a, id=len(anns) + 1, image_id=i))
    return {"images": ims, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(sk.COCO17_NAMES),
                            "skeleton": [list(e) for e in sk.COCO17_SKELETON]}]}


def _person(kps17: np.ndarray, vis=2, score=1.0, conf=0.9, suspicion=None, **kw) -> Person:
    xy = np.zeros((sk.N, 2))
    xy[BP17] = kps17
    v = np.zeros(sk.N, np.int8)
    v[BP17] = vis
    return Person(xy, v, conf=np.full(sk.N, conf), score=score, suspicion=suspicion, **kw)


def _row(rows, name):
    (r,) = [r for r in rows if r["name"] == name]
    return r


# -- hand-computed cases ---------------------------------------------------------------

def test_perfect_prediction_scores_perfectly():
    gt = _coco([("a.jpg", [_ann(BASE17)], {}), ("empty.jpg", [], {})])
    r = M.evaluate(gt, {"a.jpg": [_person(BASE17)], "empty.jpg": []})
    assert r["oks_ap"] == pytest.approx(1.0) and r["oks_ap50"] == pytest.approx(1.0)
    assert r["oks_ar"] == pytest.approx(1.0)
    assert r["pck_0_05"] == 1.0 and r["pck_0_1"] == 1.0
    assert r["median_error_px"] == 0.0 and r["per_joint_error_px"]["left_knee"] == 0.0
    assert r["person_recall"] == 1.0 and r["false_people"] == 0
    assert r["needs_fixing_share"] == 0.0
    assert (r["n_images"], r["n_gt_people"], r["n_pred_people"], r["n_empty_images"]) == (2, 1, 1, 1)
    assert "queue_recall_at_0_2" in r and "random_recall_at_0_2" in r and "oracle_recall_at_0_3" in r
    text = M.format_report(r)
    assert "AP 1.000" in text and "PCK@0.1 1.000" in text


def test_shifted_points_give_hand_computed_pck_oks_and_needs_fix():
    pred = BASE17.copy()
    pred[9] += (9.0, 12.0)     # left_wrist moved 15 px
    pred[0] += (3.0, 4.0)      # nose moved 5 px
    gt = _coco([("a.jpg", [_ann(BASE17)], {})])
    rows = M.point_table(gt, {"a.jpg": [_person(pred)]})
    assert len(rows) == 17
    wrist, nose, knee = _row(rows, "left_wrist"), _row(rows, "nose"), _row(rows, "left_knee")
    assert wrist["err_px"] == pytest.approx(15.0) and nose["err_px"] == pytest.approx(5.0)
    # OKS term exp(-d^2 / (2 * area * (2 sigma)^2)), area 10000
    t_wrist = math.exp(-225.0 / (2 * 10000 * (2 * 0.062) ** 2))     # 0.481
    t_nose = math.exp(-25.0 / (2 * 10000 * (2 * 0.026) ** 2))       # 0.630
    assert wrist["oks_term"] == pytest.approx(t_wrist) and wrist["needs_fix"]
    assert nose["oks_term"] == pytest.approx(t_nose) and not nose["needs_fix"]
    assert knee["oks_term"] == pytest.approx(1.0) and not knee["needs_fix"]
    assert wrist["person_oks"] == pytest.approx((15 + t_wrist + t_nose) / 17)
    r = M.evaluate(gt, {"a.jpg": [_person(pred)]})
    # PCK: long side 200 -> 10 px at 0.05 (the wrist misses), 20 px at 0.1 (all hit)
    assert r["pck_0_05"] == pytest.approx(16 / 17) and r["pck_0_1"] == 1.0
    assert r["median_error_px"] == 0.0
    assert r["per_joint_error_px"]["left_wrist"] == pytest.approx(15.0)
    assert r["needs_fixing_share"] == pytest.approx(1 / 17)
    # the person OKS 0.945 passes every COCO threshold up to 0.90, not 0.95
    assert r["oks_ap50"] == pytest.approx(1.0) and r["oks_ap"] == pytest.approx(0.9, abs=1e-6)


def test_missing_person_lowers_recall_and_pck():
    other = BASE17 + (300.0, 0.0)
    gt = _coco([("a.jpg", [_ann(BASE17), _ann(other, bbox=(400.0, 50.0, 100.0, 200.0))], {})])
    r = M.evaluate(gt, {"a.jpg": [_person(BASE17)]})
    assert r["person_recall"] == 0.5
    assert r["pck_0_1"] == 0.5 and r["n_gt_points"] == 34
    assert r["oks_ar"] == pytest.approx(0.5) and r["oks_ap"] < 1.0
    assert r["n_matched_people"] == 1 and r["false_people"] == 0


def test_false_person_on_empty_image_counts_only_where_annotation_is_exhaustive():
    fake = _person(BASE17, score=0.3)
    both = {"a.jpg": [_person(BASE17, score=0.9)], "empty.jpg": [fake]}
    r = M.evaluate(_coco([("a.jpg", [_ann(BASE17)], {}), ("empty.jpg", [], {})]), both)
    assert r["false_people"] == 1 and r["false_people_images"] == 1
    assert r["oks_ap"] == pytest.approx(1.0)        # the fake scores lower than the true person
    fake.score = 1.0
    r = M.evaluate(_coco([("a.jpg", [_ann(BASE17)], {}), ("empty.jpg", [], {})]), both)
    assert r["oks_ap"] == pytest.approx(0.5)         # now the false positive ranks first: precision 1/2
    # not exhaustive: an unannotated bystander is no false positive
    gt = _coco([("a.jpg", [_ann(BASE17)], {}),
                ("empty.jpg", [], {"exhaustive_person_annotation": "unknown"})])
    r = M.evaluate(gt, both)
    assert r["false_people"] == 0 and r["n_pred_dropped_not_exhaustive"] == 1
    assert r["oks_ap"] == pytest.approx(1.0)
    # an unmatched extra person next to an annotated one on a non-exhaustive image is dropped
    gt = _coco([("a.jpg", [_ann(BASE17)], {"exhaustive_person_annotation": False})])
    r = M.evaluate(gt, {"a.jpg": [_person(BASE17 + (300.0, 0.0), score=1.0), _person(BASE17, score=0.5)]})
    assert r["oks_ap"] == pytest.approx(1.0) and r["n_pred_dropped_not_exhaustive"] == 1


def test_partial_annotation_drops_only_people_inside_ignore_regions():
    box = {"exhaustive_person_annotation": "partial (see ignore regions)",
           "ignore_regions_x": [[390, 520, 520, 390]], "ignore_regions_y": [[40, 40, 260, 260]]}
    gt = _coco([("a.jpg", [_ann(BASE17)], box)])
    inside = _person(BASE17 + (300.0, 0.0), score=0.9)     # x 415..485: inside the region
    outside = _person(BASE17 + (300.0, 200.0), score=0.9)  # below it
    r = M.evaluate(gt, {"a.jpg": [_person(BASE17), inside]})
    assert r["n_pred_dropped_not_exhaustive"] == 1 and r["oks_ap"] == pytest.approx(1.0)
    r = M.evaluate(gt, {"a.jpg": [_person(BASE17), outside]})
    assert r["n_pred_dropped_not_exhaustive"] == 0 and r["n_pred_unmatched_counted"] == 1


def test_unlabelled_people_in_a_crowd_region_cost_one_delete_box():
    # one labelled person plus a COCO crowd box to its right; the pre-fill finds the person and
    # three people in the crowd and one far outside it
    crowd = {"category_id": 1, "iscrowd": 1, "keypoints": [0] * 51, "num_keypoints": 0,
             "bbox": [250.0, 40.0, 300.0, 230.0], "area": 69000.0}
    gt = _coco([("a.jpg", [_ann(BASE17), crowd], {})])
    in_crowd = [_person(BASE17 + (dx, 0.0), score=0.5) for dx in (160.0, 230.0, 300.0)]
    outside = _person(BASE17 + (0.0, 230.0), score=0.5)       # below everyone: an ordinary false person
    r = M.evaluate(gt, {"a.jpg": [_person(BASE17), *in_crowd, outside]})
    assert r["n_pred_unmatched_counted"] == 4 and r["n_pred_in_crowd"] == 3 and r["n_crowd_boxes"] == 1
    assert r["clicks_deletes_per_person"] == pytest.approx(2.0)     # one box + one delete, for 1 person
    assert r["clicks_per_person_no_crowd_box"] == pytest.approx(4.0)
    assert "3 unlabelled people in 1 GT crowd regions" in M.format_report(r)
    # without the crowd box each of them is a delete
    r = M.evaluate(_coco([("a.jpg", [_ann(BASE17)], {})]), {"a.jpg": [_person(BASE17), *in_crowd, outside]})
    assert r["clicks_deletes_per_person"] == pytest.approx(4.0) and r["n_crowd_boxes"] == 0


def test_queue_recall_on_a_constructed_ordering():
    scores = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    fix = [1, 0, 1, 0, 0, 0, 0, 1, 0, 0]
    q = M.queue_recall(scores, fix, (0.1, 0.2, 0.25, 0.3, 1.0))
    assert q[0.1] == pytest.approx(1 / 3) and q[0.2] == pytest.approx(1 / 3)
    assert q[0.25] == pytest.approx(1.5 / 3)          # half of the 3rd point
    assert q[0.3] == pytest.approx(2 / 3) and q[1.0] == pytest.approx(1.0)
    # ties are taken at their expected value: a constant score is random order, exactly f
    assert M.queue_recall(np.ones(10), fix, (0.2,))[0.2] == pytest.approx(0.2)
    assert M.queue_recall([1, 1, 0, 0], [1, 0, 0, 0], (0.25,))[0.25] == pytest.approx(0.5)
    # NaN scores go last
    assert M.queue_recall([np.nan, 0.0], [1, 0], (0.5,))[0.5] == 0.0
    assert math.isnan(M.queue_recall([1, 2], [0, 0], (0.5,))[0.5])


def test_queue_figures_from_evaluate_are_exact():
    pred = BASE17.copy()
    bad = {"left_wrist": 9, "right_knee": 14, "nose": 0}
    for c in bad.values():
        pred[c] += (40.0, 0.0)                    # far beyond OKS 0.5 for any sigma at area 10000
    sus = np.full(sk.N, 0.1)
    sus[sk.INDEX["left_wrist"]] = 0.9             # A
    sus[sk.INDEX["left_shoulder"]] = 0.8          # a good point ranked second
    sus[sk.INDEX["right_knee"]] = 0.7             # B
    sus[sk.INDEX["nose"]] = 0.05                  # C, last
    gt = _coco([("a.jpg", [_ann(BASE17)], {})])
    r = M.evaluate(gt, {"a.jpg": [_person(pred, suspicion=sus)]})
    assert r["needs_fixing_share"] == pytest.approx(3 / 17) and r["n_queue_points"] == 17
    # 17 points: 1.7 reviewed at 10% (A, 0.7 of a good one), 3.4 at 20% (A, good, B, 0.4 of the ties)
    assert r["queue_recall_at_0_1"] == pytest.approx(1 / 3)
    assert r["queue_recall_at_0_2"] == pytest.approx(2 / 3)
    assert r["queue_recall_at_0_3"] == pytest.approx(2 / 3)
    assert r["random_recall_at_0_2"] == pytest.approx(0.2)
    assert r["oracle_recall_at_0_1"] == pytest.approx(1.7 / 3) and r["oracle_recall_at_0_2"] == 1.0
    # the confidence fallback: NaN suspicion -> 1 - conf
    conf = np.full(sk.N, 0.95)
    conf[[sk.INDEX[n] for n in bad]] = 0.2
    p = _person(pred)
    p.conf = conf
    r2 = M.evaluate(gt, {"a.jpg": [p]})
    assert r2["queue_recall_at_0_2"] == pytest.approx(1.0)
    assert M.evaluate(gt, {"a.jpg": [p]}, queue_key="conf")["queue_recall_at_0_2"] == pytest.approx(1.0)
    # verified points are not in the queue
    p.verified[sk.INDEX["nose"]] = True
    r3 = M.evaluate(gt, {"a.jpg": [p]})
    assert r3["n_queue_points"] == 16 and r3["needs_fixing_share"] == pytest.approx(2 / 16)
    # another signal riding in person.meta, and scores passed directly
    p.meta["noise"] = np.linspace(0, 1, sk.N)
    rows = M.point_table(gt, {"a.jpg": [p]})
    assert "sig_noise" in rows[0]
    q = M.queue_figures(rows, scores=[1.0 if r["needs_fix"] else 0.0 for r in M.queue_rows(rows)])
    assert q["queue_recall_at_0_2"] == pytest.approx(1.0)


def test_the_all_points_queue_counts_shown_unlabelled_joints_and_not_hidden_guesses():
    """evaluate's second queue figure covers every point the review queue shows: a point shown where
    the human labelled nothing needs fixing (an unlabel click), a hidden guess there needs nothing,
    and a joint the source never labels is not in it."""
    la, ra, le = (sk.INDEX[n] for n in ("left_ankle", "right_ankle", "left_eye"))
    c = {n: list(sk.COCO17_FROM_BP).index(sk.INDEX[n]) for n in ("left_ankle", "right_ankle", "left_eye")}
    v1 = np.full(17, 2)
    v1[[c["left_ankle"], c["right_ankle"], c["left_eye"]]] = 0
    v2 = np.full(17, 2)
    v2[c["left_eye"]] = 0                                  # nobody in this source labels a left eye
    gt = _coco([("a.jpg", [_ann(BASE17, v=v1)], {}), ("b.jpg", [_ann(BASE17, v=v2)], {})])
    pred = BASE17.copy()
    pred[9] += (40.0, 0.0)                                 # the left wrist is wrong
    p = _person(pred)
    p.vis[ra] = 0                                          # a hidden guess (conf kept)
    sus = np.full(sk.N, 0.1)
    sus[ra], sus[la], sus[sk.INDEX["left_wrist"]] = 0.95, 0.9, 0.8
    p.suspicion = sus
    q = _person(BASE17)
    q.vis[le] = 0
    rows = M.point_table(gt, {"a.jpg": [p], "b.jpg": [q]}, unlabelled=True)
    extra = {r["name"]: r for r in rows if not r["gt_labelled"]}
    assert set(extra) == {"left_ankle", "right_ankle"}
    assert extra["left_ankle"]["needs_fix"] and not extra["right_ankle"]["needs_fix"]
    assert extra["right_ankle"]["missing"]
    r = M.evaluate(gt, {"a.jpg": [p], "b.jpg": [q]})
    assert (r["n_queue_points"], r["n_needs_fixing"]) == (14 + 16, 1)
    assert (r["all_n_queue_points"], r["all_n_needs_fixing"]) == (32, 2)
    # 3.2 of 32 points reviewed at 10%: the hidden guess (nothing to fix), the shown ankle, the wrist
    assert r["all_queue_recall_at_0_1"] == pytest.approx(1.0)
    assert r["queue_recall_at_0_1"] == pytest.approx(1.0)
    assert r["clicks_unlabel_per_person"] == pytest.approx(1 / 2)


def test_missing_predicted_point_is_a_miss_everywhere():
    p = _person(BASE17)
    p.vis[sk.INDEX["left_ankle"]] = 0
    gt = _coco([("a.jpg", [_ann(BASE17)], {})])
    rows = M.point_table(gt, {"a.jpg": [p]})
    ank = _row(rows, "left_ankle")
    assert ank["missing"] and ank["needs_fix"] and ank["oks_term"] == 0.0 and math.isnan(ank["err_px"])
    r = M.evaluate(gt, {"a.jpg": [p]})
    assert r["pck_0_1"] == pytest.approx(16 / 17) and r["n_missing_pred_points"] == 1
    # pycocotools agrees: person OKS 16/17 = 0.941 passes 0.90, not 0.95
    assert r["oks_ap"] == pytest.approx(0.9, abs=1e-6)


def test_visibility_unknown_images_are_left_out_of_occlusion_figures():
    v = np.full(17, 2)
    v[[7, 8]] = 1                                   # elbows labelled occluded
    p = _person(BASE17, vis=np.where(v == 1, 1, 2))
    known = M.evaluate(_coco([("a.jpg", [_ann(BASE17, v=v)], {})]), {"a.jpg": [p]})
    assert known["n_points_occluded"] == 2 and known["occlusion_accuracy"] == 1.0
    unknown = M.evaluate(_coco([("a.jpg", [_ann(BASE17, v=v)], {"visibility_known": False})]), {"a.jpg": [p]})
    assert unknown["n_points_occluded"] == 0 and unknown["n_points_visible"] == 0
    assert math.isnan(unknown["occlusion_accuracy"]) and unknown["pck_0_1"] == 1.0


def test_33_point_ground_truth_and_bad_input():
    g17 = _coco([("a.jpg", [_ann(BASE17)], {})])
    g33 = copy.deepcopy(g17)
    g33["categories"][0]["keypoints"] = list(sk.NAMES)
    for a in g33["annotations"]:
        k = np.zeros((sk.N, 3))
        k[BP17] = np.array(a["keypoints"]).reshape(17, 3)
        k[sk.INDEX["left_heel"]] = (135, 245, 2)      # a point COCO-17 does not have
        a["keypoints"] = k.reshape(-1).tolist()
    pred = _person(BASE17)
    pred.xy[sk.INDEX["left_heel"]] = (135, 265)       # 20 px off
    pred.vis[sk.INDEX["left_heel"]] = 2
    r17 = M.evaluate(g17, {"a.jpg": [pred]})
    r33 = M.evaluate(g33, {"a.jpg": [pred]})
    for k in ("oks_ap", "pck_0_05", "pck_0_1", "person_recall", "needs_fixing_share"):
        assert r17[k] == r33[k], k
    assert r33["gt_keypoints"] == 33 and r33["n_gt_points"] == 17
    rall = M.evaluate(g33, {"a.jpg": [pred]}, keypoints="all")
    assert rall["n_gt_points"] == 18 and rall["per_joint_error_px"]["left_heel"] == pytest.approx(20.0)
    assert rall["pck_0_05"] == pytest.approx(17 / 18)
    # another keypoint order (and spelling) is read by name
    order = np.random.default_rng(1).permutation(17)
    shuf = copy.deepcopy(g17)
    shuf["categories"][0]["keypoints"] = [sk.COCO17_NAMES[i].replace("_", " ").title() for i in order]
    kp = np.array(g17["annotations"][0]["keypoints"]).reshape(17, 3)[order]
    shuf["annotations"][0]["keypoints"] = kp.reshape(-1).tolist()
    rs = M.evaluate(shuf, {"a.jpg": [pred]})
    assert rs.keys() == r17.keys()
    for k, v in r17.items():
        assert rs[k] == v or (isinstance(v, float) and math.isnan(v) and math.isnan(rs[k])), k
    bad = copy.deepcopy(g17)
    bad["categories"][0]["keypoints"][3] = "left_antenna"
    with pytest.raises(UserError, match="left_antenna"):
        M.evaluate(bad, {"a.jpg": []})
    bad = copy.deepcopy(g17)
    bad["categories"][0]["keypoints"] = bad["categories"][0]["keypoints"][:14]
    with pytest.raises(UserError, match="14"):
        M.evaluate(bad, {"a.jpg": []})
    bad = copy.deepcopy(g17)
    bad["annotations"][0]["keypoints"] = bad["annotations"][0]["keypoints"][:-3]
    with pytest.raises(UserError, match="48 keypoint values"):
        M.evaluate(bad, {"a.jpg": []})
    with pytest.raises(UserError, match="match"):
        M.evaluate(g17, {"nothing.jpg": []})
    with pytest.raises(UserError, match="no such file"):
        M.evaluate("/nonexistent/gt.json", {"a.jpg": []})


def test_file_names_match_by_path_suffix_and_base_name_with_ambiguities_reported():
    gt = _coco([("coco/a.jpg", [_ann(BASE17)], {}), ("x/b.jpg", [], {}), ("y/b.jpg", [], {})])
    r = M.evaluate(gt, {"images/coco/a.jpg": [_person(BASE17)], "b.jpg": [_person(BASE17)]})
    assert r["n_images"] == 1 and r["pck_0_1"] == 1.0
    assert "ambiguous" in r["messages"] and "b.jpg" in r["messages"]
    r = M.evaluate(gt, {"elsewhere/a.jpg": [_person(BASE17)]})
    assert r["n_images"] == 1 and r["person_recall"] == 1.0


# -- real ground truth -------------------------------------------------------------------

def _gt_people(gt: dict) -> dict[str, list[tuple[int, np.ndarray, dict]]]:
    ims = {im["id"]: im["file_name"] for im in gt["images"]}
    out: dict[str, list] = {fn: [] for fn in ims.values()}
    for a in gt["annotations"]:
        k = np.array(a["keypoints"], float).reshape(17, 3)
        if a["iscrowd"] or not (k[:, 2] > 0).any():
            continue
        out[ims[a["image_id"]]].append((a["id"], k, a))
    return out


def _from_gt(k: np.ndarray, **kw) -> Person:
    p = _person(k[:, :2], vis=np.where(k[:, 2] > 0, 2, 0), **kw)
    return p


def test_oks_agrees_with_pycocotools_on_a_real_crowd_image(gt_dev, rng):
    im = next(i for i in gt_dev["images"] if i["file_name"] == "coco_mini/000000217285.jpg")
    people = _gt_people(gt_dev)[im["file_name"]]
    assert len(people) >= 10
    preds = []
    for n, (_, k, a) in enumerate(people):
        s = math.sqrt(a["area"])
        xy = k[:, :2] + rng.normal(0, 0.05 * s, (17, 2))
        preds.append(_person(xy, score=1.0 - n / 100))
    preds.append(_person(people[0][1][:, :2] + 8.0, score=0.05))    # a duplicate near person 0
    sub = {"images": [im], "annotations": [a for a in gt_dev["annotations"] if a["image_id"] == im["id"]],
           "categories": gt_dev["categories"]}
    gt = M.load_gt(sub)
    mine = M.oks_matrix(gt.images[0].people, preds)                 # (G, D)
    dets = [{"image_id": im["id"], "category_id": 1, "score": p.score,
             "keypoints": np.column_stack([p.xy[BP17], p.vis[BP17]]).reshape(-1).tolist()} for p in preds]
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = copy.deepcopy(sub)
        cg.createIndex()
        ev = COCOeval(cg, cg.loadRes(dets), "keypoints")
        ev.params.imgIds = [im["id"]]
        ev.evaluate()
    theirs = np.asarray(ev.ious[(im["id"], 1)])                    # (D sorted by score, all G incl. crowd)
    gt_ids = [g["id"] for g in ev._gts[im["id"], 1]]
    cols = [gt_ids.index(p.ann_id) for p in gt.images[0].people]
    assert np.allclose(mine.T, theirs[:, cols], rtol=1e-9, atol=1e-12)
    assert mine.diagonal()[:len(people)].min() > 0.3                  # sanity: each matches itself


def _perturbed(gt_dev, seed=0):
    """Predictions made from the GT itself: some people dropped, every point moved by a known offset."""
    rng = np.random.default_rng(seed)
    preds, truth = {}, {}
    for fn, people in _gt_people(gt_dev).items():
        preds[fn] = []
        for ann_id, k, a in people:
            lab = k[:, 2] > 0
            if rng.random() < 0.1:
                truth[ann_id] = None                                   # missed person
                continue
            long_side = max(a["bbox"][2], a["bbox"][3])
            gross = rng.random(17) < 0.12
            r = np.where(gross, rng.uniform(0.15, 0.4, 17), np.abs(rng.normal(0, 0.02, 17))) * long_side
            ang = rng.uniform(0, 2 * np.pi, 17)
            off = np.column_stack([r * np.cos(ang), r * np.sin(ang)])
            xy = k[:, :2] + off
            err = np.hypot(off[:, 0], off[:, 1])
            sus = np.full(sk.N, 0.5)
            sus[BP17] = np.clip(err / long_side * 3 + rng.normal(0, 0.05, 17), 0, 1)
            p = _person(xy, vis=np.where(lab, 2, 1), score=float(rng.uniform(0.5, 1)), suspicion=sus)
            p.meta = {"gt_ann_id": ann_id, "noise": rng.random(sk.N)}
            preds[fn].append(p)
            truth[ann_id] = (err, lab, long_side)
    return preds, truth


def test_real_gt_with_perturbed_predictions(gt_dev):
    preds, truth = _perturbed(gt_dev)
    empty = [im["file_name"] for im in gt_dev["images"] if im["source"] == "coco_no_person"]
    person = next(iter(v for v in preds.values() if v))[0]
    preds[empty[0]] = [person.copy()]
    preds[empty[1]] = [person.copy()]
    mpii = next(im["file_name"] for im in gt_dev["images"] if im["source"] == "mmpose_mpii")
    stranger = preds[mpii][0].copy()
    stranger.xy = stranger.xy + (400.0, 0.0)                        # an unannotated bystander
    preds[mpii] = preds[mpii] + [stranger]

    rows = M.point_table(gt_dev, preds)
    r = M.evaluate(gt_dev, preds)
    print(M.format_report(r))
    assert r["n_images"] == 136 and r["n_gt_people"] == 178 and r["n_gt_points"] == 1838
    assert r["false_people"] == 2 and r["false_people_images"] == 2 and r["n_empty_images"] == 63
    assert r["n_pred_dropped_not_exhaustive"] == 1

    # every matched prediction is the copy of its own GT person, with the injected error
    by_key = {}
    for row in rows:
        if row["matched"]:
            p = preds[row["pred_key"]][row["person"]]
            assert p.meta["gt_ann_id"] == row["gt_ann_id"]
            err, _, _ = truth[row["gt_ann_id"]]
            assert row["err_px"] == pytest.approx(err[row["coco"]], abs=1e-9)
        by_key[(row["gt_ann_id"], row["coco"])] = row
    kept = [a for a, t in truth.items() if t is not None]
    assert r["n_matched_people"] == len(kept)
    # PCK and the median error follow from the offsets alone
    hits, errs, n = {0.05: 0, 0.1: 0}, [], 0
    for a, t in truth.items():
        if t is None:
            continue
        err, lab, long_side = t
        errs += list(err[lab])
        for th in hits:
            hits[th] += int((err[lab] < th * long_side).sum())
    assert r["pck_0_05"] == pytest.approx(hits[0.05] / 1838)
    assert r["pck_0_1"] == pytest.approx(hits[0.1] / 1838)
    assert r["median_error_px"] == pytest.approx(float(np.median(errs)))
    assert r["pck_0_1_lo"] <= r["pck_0_1"] <= r["pck_0_1_hi"]

    # sensible values: about 90% of people kept, AP well below 1 but far from 0
    assert 0.8 < r["person_recall"] < 0.97
    assert 0.3 < r["oks_ap"] < 0.9 and r["oks_ap50"] > r["oks_ap"] and 0.3 < r["oks_ar"] < 0.95
    assert 0.1 < r["needs_fixing_share"] < 0.5
    # a suspicion that tracks the error finds most wrong points; a random one does not
    assert r["queue_recall_at_0_2"] > 0.75
    assert r["random_recall_at_0_2"] == pytest.approx(0.2)
    assert r["oracle_recall_at_0_2"] >= r["queue_recall_at_0_2"]
    assert r["queue_recall_at_0_1"] < r["queue_recall_at_0_2"] < r["queue_recall_at_0_3"]
    noise = M.evaluate(gt_dev, preds, queue_key="noise", bootstrap=0)
    assert abs(noise["queue_recall_at_0_2"] - 0.2) < 0.06
    assert noise["pck_0_1"] == r["pck_0_1"]
    assert set(r["per_joint_error_px"]) == set(sk.COCO17_NAMES)
    for t in ("small_person", "crowd", "non_upright"):
        assert 0 < r[f"person_recall_{t}"] <= 1 and r[f"n_gt_people_{t}"] > 0


def test_real_gt_against_itself_is_perfect(gt_dev):
    preds = {fn: [_from_gt(k) for _, k, _ in people] for fn, people in _gt_people(gt_dev).items()}
    r = M.evaluate(gt_dev, preds, bootstrap=0)
    assert r["oks_ap"] == pytest.approx(1.0) and r["oks_ar"] == pytest.approx(1.0)
    assert r["pck_0_05"] == 1.0 and r["person_recall"] == 1.0 and r["median_error_px"] == 0.0
    assert r["n_matched_people"] == 178 and r["false_people"] == 0
