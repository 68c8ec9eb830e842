"""The rule that decides which of a found person's points are shown (prefill/point_model.py)."""
import numpy as np
import pytest

from annotator.core.errors import UserError
from annotator.prefill import point_model


def _person(width=640, height=480):
    # a standing person 300 px tall in the middle of the image, COCO-17 order
    xy = np.array([[320, 100], [326, 94], [314, 94], [334, 98], [306, 98], [350, 140], [290, 140],
                   [360, 190], [280, 190], [365, 240], [275, 240], [340, 250], [300, 250],
                   [342, 320], [298, 320], [344, 390], [296, 390]], float)
    box = (260, 80, 380, 400, 0.9)
    return xy, box, width, height


def test_confident_points_inside_are_shown_and_points_off_the_image_hidden():
    xy, box, w, h = _person()
    s = np.full(17, 0.8)
    vis = np.full(17, 0.95)
    assert point_model.show(point_model.features(xy, s, vis, np.zeros(17), box, w, h)).all()
    xy_off = xy.copy()
    xy_off[13:, 1] += 200                      # knees and ankles below the bottom edge, unseen by both models
    s_off, vis_off = s.copy(), vis.copy()
    s_off[13:], vis_off[13:] = 0.05, 0.1
    shown = point_model.show(point_model.features(xy_off, s_off, vis_off, np.zeros(17), box, w, h))
    assert shown[:13].all() and not shown[13:].any()


def test_a_doubtful_point_is_hidden_where_a_sure_one_is_shown():
    xy, box, w, h = _person()
    s = np.full(17, 0.8)
    vis = np.full(17, 0.95)
    s[9], vis[9] = 0.03, 0.05                  # MoveNet and BlazePose both doubt the left wrist
    pl, pr = point_model.probabilities(point_model.features(xy, s, vis, np.zeros(17), box, w, h))
    assert pl[9] < pl[10] and pr[9] < pr[10]
    assert not point_model.show(point_model.features(xy, s, vis, np.zeros(17), box, w, h))[9]


def test_unknown_hide_rule_is_a_clear_error():
    from annotator.prefill.blazepose import PoseEstimator
    with pytest.raises(UserError, match="hide_points"):
        PoseEstimator("detector", 1, hide_points="sometimes")


def test_the_far_ear_of_a_head_in_profile_is_hidden_and_the_near_one_shown():
    # MoveNet half-sure of both ears (0.5); BlazePose's depth puts the left ear 48 px (0.15 of the
    # box) behind the right one: annotators leave the far ear of a turned head unlabelled
    xy, box, w, h = _person()
    s = np.full(17, 0.8)
    vis = np.full(17, 0.95)
    s[3] = s[4] = 0.5
    flat = point_model.features(xy, s, vis, np.zeros(17), box, w, h)
    z = np.zeros(17)
    z[3], z[4] = 24.0, -24.0
    turned = point_model.features(xy, s, vis, z, box, w, h)
    assert point_model.show(flat)[[3, 4]].all()
    assert list(point_model.show(turned)[[3, 4]]) == [False, True]
    pl_flat, _ = point_model.probabilities(flat)
    pl, _ = point_model.probabilities(turned)
    assert pl[3] < pl_flat[3] < pl[4]


def test_a_point_the_models_place_apart_is_less_likely_right_and_hidden():
    # MoveNet half-sure of the left ear (0.5); where BlazePose's ear is 40 px (0.125 of the box) from
    # MoveNet's, and MoveNet on the mirror image 40 px from the stored one, one of them is wrong
    xy, box, w, h = _person()
    s, vis = np.full(17, 0.8), np.full(17, 0.95)
    s[3], vis[3] = 0.5, 0.8
    gap = np.full(17, 2.0)
    mirror = xy + 2.0
    agree = point_model.features(xy, s, vis, np.zeros(17), box, w, h, gap, mirror)
    gap[3] = 40.0
    mirror[3] = xy[3] + [0.0, 40.0]
    apart = point_model.features(xy, s, vis, np.zeros(17), box, w, h, gap, mirror)
    pl_agree, pr_agree = point_model.probabilities(agree)
    pl, pr = point_model.probabilities(apart)
    assert pr[3] < pr_agree[3] - 0.15 and pl[3] < pl_agree[3]
    assert np.allclose(np.delete(pr, 3), np.delete(pr_agree, 3))
    assert point_model.show(agree).all()
    assert list(np.flatnonzero(~point_model.show(apart))) == [3]


def test_a_gap_not_measured_reads_as_the_fits_mean():
    # without the mirrored look (mirror_scores = false) the mirror gap is unknown: NaN, the mean
    xy, box, w, h = _person()
    s, vis = np.full(17, 0.6), np.full(17, 0.9)
    gap = np.full(17, 5.0)
    unknown = point_model.features(xy, s, vis, np.zeros(17), box, w, h, gap)
    assert np.isnan(unknown[:, -1]).all() and not np.isnan(unknown[:, :-1]).any()
    scale = max(box[2] - box[0], box[3] - box[1])
    at_mean = xy + [np.exp(point_model.MODEL["mean"][-1]) * scale, 0.0]
    known = point_model.features(xy, s, vis, np.zeros(17), box, w, h, gap, at_mean)
    for a, b in zip(point_model.probabilities(unknown), point_model.probabilities(known)):
        assert np.allclose(a, b)
