"""Engine "detector" (NanoDet boxes -> MoveNet Thunder -> BlazePose Heavy) on real photos, with the
real models: it finds the people of a crowd that MediaPipe's own detector misses, and it does not
invent points that are off the image or that nobody can see."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.media import load_image
from annotator.core.model import NOT_LABELLED, share_inside
from annotator.prefill import blazepose as bp
from annotator.prefill import point_model
from annotator.prefill.estimator import to_person
from annotator.review import metrics as M

from tests.conftest import GT_DEV

pytestmark = pytest.mark.needs_data

CROWD = "coco_mini/000000211325.jpg"            # five labelled people, crowd, non-upright, occluded
FULL_BODY = "coco_mini/000000030752.jpg"        # one person, head to feet
NO_PERSON = ["coco_no_person/000000000802.jpg", "coco_no_person/000000070133.jpg"]


@pytest.fixture(scope="module")
def engine():
    return bp.PoseEstimator("detector", model_complexity=2)


@pytest.fixture(scope="module")
def gt():
    return M.load_gt(GT_DEV / "annotations.json")


def found(gt, file_name, people) -> tuple[int, int]:
    """(GT people with >= 5 points found with OKS > 0.1, GT people with >= 5 points)."""
    (im,) = [im for im in gt.images if im.file_name == file_name]
    persons = [to_person(p, im.width, im.height) for p in people]
    oks = M.oks_matrix(im.people, persons)
    m = M.match_people(oks)
    n = [g for g, p in enumerate(im.people) if p.n_labelled17 >= 5]
    return sum(1 for g in n if g in m and oks[g, m[g]] > M.RECALL_OKS), len(n)


def test_finds_the_people_of_a_crowd_that_mediapipes_detector_misses(engine, gt):
    rgb = load_image(GT_DEV / "images" / CROWD)
    ours, n = found(gt, CROWD, engine.predict(rgb))
    multi, _ = found(gt, CROWD, bp.PoseEstimator("multi", **bp.TUNED).predict(rgb))
    assert n == 5 and multi <= 1
    assert ours >= 4


@pytest.fixture(scope="module")
def one_look():
    return bp.PoseEstimator("detector", model_complexity=2, second_look=False)


@pytest.mark.parametrize("name, g", [
    # a crowd photo: GT person 2 stands behind person 1, whose body fills most of person 2's crop;
    # MoveNet's pose there is person 1's and is skipped as a duplicate
    ("sg_pose_minicoco/000000189475.jpg", 2),
    # a crowd photo: MoveNet's pose is the person's own, BlazePose's ROI refinement walks to the
    # neighbour and the result is merged into them
    ("coco_mini/000000217285.jpg", 1),
    # a crowd photo: MoveNet scores the box of a person among others as nobody (person score under
    # min_person_score); on the box's pixels alone it is that person
    ("coco_mini/000000370162.jpg", 5)])
def test_a_second_look_at_the_box_alone_finds_the_person_whose_pose_walked_to_a_neighbour(engine, one_look, gt,
                                                                                         name, g):
    rgb = load_image(GT_DEV / "images" / name)
    (im,) = [im for im in gt.images if im.file_name == name]
    h, w = rgb.shape[:2]

    def best_oks(people, g):
        persons = [to_person(p, w, h) for p in people]
        return float(M.oks_matrix([im.people[g]], persons).max()) if persons else 0.0

    without, with_ = one_look.predict(rgb), engine.predict(rgb)
    assert engine.second_look and len(with_) >= len(without) + 1
    assert best_oks(without, g) < 0.1 and best_oks(with_, g) > 0.6


def test_every_person_has_33_points_a_box_and_a_score_ranked(engine):
    rgb = load_image(GT_DEV / "images" / CROWD)
    people = engine.predict(rgb)
    assert len(people) >= 4
    scores = [p.score for p in people]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    for p in people:
        assert p.xy.shape == (sk.N, 2) and np.isfinite(p.xy).all() and p.box is not None
        assert p.unseen.shape == (sk.N,) and engine.heatmap_of(p) is not None


def test_no_people_on_photos_with_nobody(engine):
    assert sum(len(engine.predict(load_image(GT_DEV / "images" / f))) for f in NO_PERSON) == 0


def test_points_off_the_image_are_not_invented(engine):
    """The same photo with its lower half cut away: the ankles and knees are gone from the image,
    and the pre-fill stores them as not labelled (with its guess kept) instead of drawing them."""
    rgb = load_image(GT_DEV / "images" / FULL_BODY)
    (whole,) = [to_person(p, rgb.shape[1], rgb.shape[0]) for p in engine.predict(rgb)][:1]
    legs = [sk.INDEX[n] for n in ("left_knee", "right_knee", "left_ankle", "right_ankle")]
    assert (whole.vis[legs] > 0).all()                         # the whole photo shows the legs
    hip_y = float(whole.xy[[sk.INDEX["left_hip"], sk.INDEX["right_hip"]], 1].mean())
    top = np.ascontiguousarray(rgb[: int(hip_y + 0.05 * rgb.shape[0])])
    people = engine.predict(top)
    assert people, "the upper body alone is still a person"
    cut = to_person(people[0], top.shape[1], top.shape[0])
    assert (cut.vis[legs] == NOT_LABELLED).all()
    assert cut.hidden_guess[legs].all()                        # kept as guesses the app can bring back
    arms = [sk.INDEX[n] for n in ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow")]
    assert (cut.vis[arms] > 0).all()


def test_a_user_box_around_one_person_gives_that_person(engine, one_look):
    rgb = load_image(GT_DEV / "images" / FULL_BODY)
    p = max(engine.predict(rgb), key=lambda q: q.score)
    x0, y0, x1, y1 = p.box[:4]
    q = engine.predict_in_box(rgb, (x0, y0, x1 - x0, y1 - y0))
    assert q is not None and bp.pose_similarity(p, q) > 0.8
    blank = np.zeros_like(rgb)
    assert engine.predict_in_box(blank, (x0, y0, x1 - x0, y1 - y0)) is None
    # a box drawn half over them, beside their head (for someone else): the box-pose walks back to the
    # person already found, most of whose points lie outside the box. Without the second look the
    # user's box holds nobody; with it, the pose on the box's own pixels lies inside the box
    beside = (274, 64, 118, 220)
    drifted, _ = engine.person_in_box(rgb, (274, 64, 392, 284, 1.0))
    assert drifted is not None and bp.pose_similarity(drifted, p) > 0.8
    assert share_inside(drifted.xy, beside, 0.1) < bp.MIN_SHARE_IN_USER_BOX
    assert one_look.predict_in_box(rgb, beside) is None
    inside = engine.predict_in_box(rgb, beside)
    assert inside is not None and share_inside(inside.xy, beside, 0.1) > 0.9
    assert bp.pose_similarity(inside, drifted) < 0.8


def test_video_frames_keep_their_track_ids(engine):
    """Shifted copies of a photo stand in for frames: each person keeps the id it got first."""
    rgb = load_image(GT_DEV / "images" / CROWD)
    first = engine.track(rgb, [])
    assert len(first) >= 4 and sorted(p.track_id for p in first) == list(range(len(first)))
    M_ = np.float32([[1, 0, 6], [0, 1, 3]])
    moved = cv2.warpAffine(rgb, M_, (rgb.shape[1], rgb.shape[0]))
    second = engine.track(moved, first)
    by_id = {p.track_id: p for p in second}
    kept = [p for p in first if p.track_id in by_id
            and np.median(np.hypot(*(by_id[p.track_id].xy - p.xy - (6, 3)).T)) < 10]
    assert len(kept) >= len(first) - 1


def test_people_too_small_to_label_are_candidates_not_people(engine):
    """A 9-px figure far in the background: nobody places 17 points on it, so the engine keeps
    it as a possibly missed person (the missing-people queue) instead of a person to delete."""
    rgb = load_image(GT_DEV / "images" / "coco_mini/000000136334.jpg")
    h, w = rgb.shape[:2]
    every_size = bp.PoseEstimator("detector", model_complexity=2, min_person_px=0).predict(rgb)
    small = [p for p in every_size if bp.shown_size(p, w, h) < engine.min_person_px]
    assert engine.min_person_px == 16 and small
    kept = engine.predict(rgb)
    assert len(kept) == len(every_size) - len(small)
    assert all(bp.shown_size(p, w, h) >= 16 for p in kept)
    assert all(any(np.allclose(c[:4], p.box[:4]) for c in engine.candidates) for p in small)
    with pytest.raises(UserError, match="min_person_px"):
        bp.PoseEstimator("detector", min_person_px=-1)


@pytest.mark.parametrize("file_name, box", [
    ("coco_mini/000000109313.jpg", (1, 317, 107, 636, 0.26)),     # cut by the image's left edge
    ("coco_mini/000000370162.jpg", (147, 139, 188, 216, 0.52)),   # a crowd: the box's square holds a neighbour
])
def test_movenet_looks_again_on_the_square_its_own_points_ask_for(engine, gt, file_name, box):
    """NanoDet's box (the one it gives on this photo) centres the crop on the pixels, not on the
    body; MoveNet's second look, on a square placed from its first points, is kept because it is
    surer, and it is the person the human labelled."""
    rgb = load_image(GT_DEV / "images" / file_name)
    _, pose = engine._detector()
    (im,) = [im for im in gt.images if im.file_name == file_name]

    def best_oks(k17):
        def oks(g):
            lab = g.k17[:, 2] > 0
            return float(np.mean(M.oks_terms(g.k17[lab], g.area, k17[lab], np.ones(int(lab.sum()), bool),
                                             np.asarray(sk.COCO17_SIGMAS)[lab])))
        return max(oks(g) for g in im.people if g.n_labelled17 >= 5)

    k1, s1 = pose.predict(rgb, box, recrop=False)
    again = pose.body_box(k1, s1, box)
    assert again is not None
    k2, s2 = pose.predict(rgb, box)
    k3, s3 = pose.predict(rgb, again, recrop=False)
    assert s2.mean() > s1.mean() and np.allclose(k2, k3) and np.allclose(s2, s3)
    assert best_oks(k1) < 0.6 and best_oks(k2) > 0.9
    s_no_hips = s1.copy()
    s_no_hips[11] = 0.0
    assert pose.body_box(k1, s_no_hips, box) is None        # no mid-hip seen: no second look


def test_the_face_of_a_man_seen_from_behind_is_hidden_by_movenets_mirrored_look(engine, gt):
    """The man with his back to the camera: the human labelled his ears and nothing of his face.
    MoveNet is half-sure of the nose and eyes on its crop, and much less on the mirrored crop;
    the point model reads the mean, so the face is not shown. Without the mirrored look it is
    (three unlabel clicks)."""
    file_name = "coco_mini/000000183709.jpg"
    rgb = load_image(GT_DEV / "images" / file_name)
    h, w = rgb.shape[:2]
    (im,) = [im for im in gt.images if im.file_name == file_name]
    (back,) = [g for g in im.people if g.n_labelled17 >= 5 and (g.k17[:3, 2] == 0).all()]
    face = [0, 1, 2]                                    # nose, eyes (COCO-17)

    def the_man(est):
        poses = est.predict(rgb)
        persons = [to_person(p, w, h) for p in poses]
        g = im.people.index(back)
        j = M.match_people(M.oks_matrix(im.people, persons))[g]
        return poses[j], persons[j].vis[bp._C17]

    pose, vis = the_man(engine)
    assert engine.mirror_scores
    own, label = pose.engine_conf[bp._C17], pose.label_conf[bp._C17]
    _, box_pose = engine._detector()
    mirror_k17, mirrored = box_pose.mirrored(rgb, pose.box)
    assert np.allclose(label, point_model.mean_score(own, mirrored), atol=1e-5)
    assert np.allclose(pose.mirror_k17, mirror_k17)
    assert (mirrored[face] < own[face]).all() and (label[face] < own[face]).all()
    assert (vis[face] == 0).all() and (vis[[3, 4]] > 0).all()       # face hidden, the labelled ears shown
    _, vis_one_look = the_man(bp.PoseEstimator("detector", model_complexity=2, mirror_scores=False))
    assert (vis_one_look[face] > 0).all()


def test_movenets_mirrored_look_is_movenet_on_the_mirror_image_left_and_right_swapped():
    from annotator.prefill import models as mp_models
    from annotator.prefill.detect_onnx import BoxPose
    rgb = load_image(GT_DEV / "images" / FULL_BODY)
    h, w = rgb.shape[:2]
    pose = BoxPose(mp_models.require("movenet_thunder"))
    box = (w * 0.2, h * 0.05, w * 0.8, h * 0.95, 0.9)
    k_mirror, on_mirror = pose.predict(np.ascontiguousarray(rgb[:, ::-1]), (w - box[2], box[1], w - box[0], box[3]),
                                       recrop=False)
    kps, mirrored = pose.mirrored(rgb, box)
    back = k_mirror[list(sk.COCO17_FLIP)] * [-1.0, 1.0] + [w, 0.0]       # x mirrored back, left and right swapped
    assert np.abs(kps - back).max() < 2.0                                  # pixels (the crop square rounds)
    assert np.abs(mirrored - on_mirror[list(sk.COCO17_FLIP)]).max() < 0.02
    assert np.abs(mirrored - on_mirror).max() > 0.1          # on this photo the swap back matters
