"""MediaPipe Pose (BlazePose) for every person in a photo, in original image pixels.

MediaPipe's own Python API (`mp.solutions.pose`) returns one person. Here the
two networks shipped in the mediapipe 0.10.21 wheel run directly under LiteRT
and MediaPipe's graph rules are reproduced step by step, so every detection
becomes a person. The wheel has no .pbtxt files: its graphs are compiled into
the mediapipe binary as CalculatorGraphConfig protos, and the rules below were
read from there (PoseDetectionCpu, PoseDetectionToRoi, PoseLandmarkByRoiCpu,
TensorsToPoseLandmarksAndSegmentation, PoseLandmarksAndSegmentationInverse-
Projection, PoseLandmarksToRoi) and from the calculators they name:

detector  image -> 224x224 letterbox (keep aspect, zero border, [-1, 1]) ->
          2254 SSD anchors (5 layers, strides 8,16,32,32,32, fixed size) ->
          boxes/keypoints = raw/224 + anchor centre (x, y, w, h order), scores =
          sigmoid(clip(raw, +-100)) -> score threshold -> weighted NMS (IoU 0.3)
          -> letterbox removed.
ROI       centre = keypoint 0 (mid hip); side = 2 |kp1 - kp0| (kp1 encodes size
          and rotation); rotation = 90 deg - angle(kp0 -> kp1); square (long
          side) and scaled by 1.25.
landmarks ROI -> 256x256 crop (bilinear, replicate border, [0, 1]) -> model ->
          39 x (x, y, z, visibility, presence) in crop pixels; visibility and
          presence sigmoid; x, y refined on the 64x64 heatmaps (7x7 window,
          where its peak >= 0.5); pose flag >= 0.5 keeps the person; projected
          back through the ROI (z scaled like x). Points 33 and 34 are the
          auxiliary hip-centre / scale points that give the next frame's ROI
          (same ROI rule as the detector's keypoints 0 and 1).
Checked against mp.solutions.pose on the person it picks: identical detection
and ROI, landmarks within ~0.1-0.3 px median (tests/test_blazepose.py).

What MediaPipe has no rule for (it keeps one person), measured on pose-gt-dev
with bench/engine.py: detections under MediaPipe's own 0.5 only add people
(so the confident ones keep MediaPipe's exact ROI); a person also needs the
landmark heatmaps to be confident (`min_keypoint_conf`, drops most false
people); two predictions of one person are merged by their OKS; optionally
the detector also runs on half-size windows (`tiles`) to find small people.

The `legacy` engine wraps mp.solutions.pose.Pose (one person per image) for
comparisons, benchmarks and MediaPipe's own video tracking.

Everything is in image pixels: ROIs are (cx, cy, w, h, rotation in radians).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from annotator.prefill import models as mp_models
from annotator.prefill import point_model
from annotator.core import skeleton as sk
from annotator.core import settings
from annotator.core.errors import UserError
from annotator.core.model import share_inside

# -- constants from the mediapipe 0.10.21 graphs -----------------------------------------
DET_SIZE = 224                      # PoseDetectionCpu: ImageToTensor 224x224, keep_aspect_ratio, BORDER_ZERO
DET_STRIDES = (8, 16, 32, 32, 32)   # SsdAnchorsCalculator: num_layers 5, offsets 0.5, fixed_anchor_size
DET_MIN_SCALE, DET_MAX_SCALE = 0.1484375, 0.75
NUM_ANCHORS = 2254
SAME_BOX_OKS = 0.7                  # engine "detector": a box whose MoveNet pose is this close to a found person's is
                                    # that person again (pose-gt-dev: BlazePose runs on 527 -> 381 boxes, same clicks)
MAX_BOXES = 100                     # engine "detector": person boxes tried per image (a crowd photo has ~60 at 0.2)
LOOK_AGAIN_MIN_SCORE = 0.08         # engine "detector": the person score a box below min_person_score needs on its
                                    # pixels alone (a black surround makes MoveNet surer of anything)
FIRST_FLAG_CUT = 0.5                # engine "detector": a box whose person score, with the first BlazePose run's pose
                                    # flag, is under this x min_person_score gets no second (refined-ROI) run
CANDIDATE_MIN_SCORE = 0.05           # engine "detector": boxes kept as possibly missed people (PoseEstimator.candidates)
MP_MIN_SCORE = 0.5                  # TensorsToDetections min_score_thresh (and Pose's min_detection_confidence)
SCORE_CLIP = 100.0                  # TensorsToDetections: score_clipping_thresh, sigmoid_score
NMS_IOU = 0.3                       # NonMaxSuppression: WEIGHTED, INTERSECTION_OVER_UNION
ROI_SCALE = 1.25                    # PoseDetectionToRoi / PoseLandmarksToRoi: RectTransformation 1.25, square_long
ROI_TARGET_ANGLE = math.pi / 2      # AlignmentPointsRects: rotation_vector_target_angle_degrees 90
LM_OUTPUTS = ("Identity", "Identity_1", "Identity_3")   # landmarks, pose flag, heatmap (not the mask, not world)
LM_SIZE = 256                       # PoseLandmarkByRoiCpu: ImageToTensor 256x256, [0, 1], replicate border
HEATMAP_KERNEL = 7                  # RefineLandmarksFromHeatmap: kernel_size 7, min_confidence_to_refine 0.5
HEATMAP_MIN_CONF = 0.5

ROI = tuple  # (cx, cy, w, h, rotation): pixels and radians

# Settings chosen on half of pose-gt-dev (bench/engine.py --sweep), checked on the other half.
# Whole image, 0.3 / 0.45: person recall 0.27 / 0.40 (tune / check half; legacy 0.23 / 0.31) with
# 1 / 0 people on the 27 / 36 no-person photos (legacy 1 / 1), ~30 ms per image on one core.
TUNED = {"min_detection_confidence": 0.3, "min_pose_presence": 0.5, "nms_iou": NMS_IOU,
         "min_keypoint_conf": 0.45, "tiles": 0.0}
# Plus detection on half-size windows, for small people and crowds: recall 0.48 / 0.51 with
# 4 / 3 people on the no-person photos, ~5x slower (7 detector runs per photo).
SMALL_PEOPLE = dict(TUNED, tiles=0.5, min_keypoint_conf=0.5)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def _check_rgb(rgb) -> np.ndarray:
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"expected an RGB uint8 image of shape (H, W, 3), got {a.dtype} {a.shape}")
    return a


# -- results ---------------------------------------------------------------------------
@dataclass
class Detection:
    """One detector hit after NMS, in image pixels.

    box: x, y, w, h (roughly the face); keypoints (4, 2): mid hip, full-body
    size/rotation point, mid shoulder, upper-body size/rotation point.
    """
    score: float
    box: tuple[float, float, float, float]
    keypoints: np.ndarray

    def roi(self) -> ROI:
        return alignment_roi(self.keypoints[0], self.keypoints[1])


@dataclass
class PersonPose:
    """One person's 33 landmarks in the input image's pixels.

    score = detector score x pose flag (the landmark model's "a person is in
    this crop" probability). For a tracked person the detector score is the
    one from when it was last detected; NaN parts (no detector, e.g.
    predict_roi) count as 1.
    """
    xy: np.ndarray                      # (33, 2) float64 pixels
    z: np.ndarray                       # (33,) depth, same pixel scale as x (MediaPipe's z x image width)
    visibility: np.ndarray              # (33,) [0, 1]
    presence: np.ndarray                # (33,) [0, 1]
    score: float
    roi: tuple[float, float, float, float, float]
    pose_flag: float = float("nan")
    det_score: float = float("nan")
    aux: np.ndarray | None = None       # (2, 2) auxiliary points 33, 34: the next frame's ROI
    track_id: int | None = None
    heatmap_conf: float = float("nan")  # mean over the 33 points of the heatmap's peak (sigmoid)
    unseen: np.ndarray | None = None    # (33,) bool: points the per-box pose model says are not there
    box: tuple | None = None            # the person detector's box (x0, y0, x1, y1, score), engine "detector"
    engine_gap: np.ndarray | None = None   # (33,) px between BlazePose's point and MoveNet's joint, before fusing
    engine_conf: np.ndarray | None = None  # (33,) MoveNet's score of the point's COCO joint
    point_doubt: np.ndarray | None = None  # (33,) point_model's chance the point's stored state costs a click
    label_doubt: np.ndarray | None = None  # (33,) point_model's 1 - P(a human labels the joint)
    box_k17: np.ndarray | None = None      # (17, 2) the per-box pose model's COCO-17 joints, pixels
    label_conf: np.ndarray | None = None   # (33,) the per-box score point_model sees (MoveNet's, with its mirrored look's)
    mirror_k17: np.ndarray | None = None   # (17, 2) MoveNet's COCO-17 joints on the mirrored crop of the box, pixels

    def bbox(self) -> tuple[float, float, float, float]:
        """x, y, w, h around the 33 points."""
        x0, y0 = self.xy.min(0)
        x1, y1 = self.xy.max(0)
        return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))

    def next_roi(self) -> ROI:
        """MediaPipe's landmarks-to-ROI rule (auxiliary points; body points when a model has none)."""
        aux = self.aux if self.aux is not None else aux_from_body(self.xy)
        return alignment_roi(aux[0], aux[1])


# -- geometry --------------------------------------------------------------------------
def _normalize_radians(a: float) -> float:
    return a - 2 * math.pi * math.floor((a + math.pi) / (2 * math.pi))


def alignment_roi(center, scale_point, scale: float = ROI_SCALE) -> ROI:
    """AlignmentPointsRects + RectTransformation (square long side, x scale), in pixels.

    The centre point is the person's centre (hips); the distance to the second
    point is half the box side and its direction, turned to point up, the
    rotation.
    """
    x0, y0 = float(center[0]), float(center[1])
    x1, y1 = float(scale_point[0]), float(scale_point[1])
    side = 2.0 * math.hypot(x1 - x0, y1 - y0) * scale
    rot = _normalize_radians(ROI_TARGET_ANGLE - math.atan2(-(y1 - y0), x1 - x0))
    return (x0, y0, side, side, rot)


def aux_from_body(xy: np.ndarray, ok: np.ndarray | None = None) -> np.ndarray:
    """Stand-in for the auxiliary ROI points from the 33 body points (models without points 33/34).

    Centre at the mid hip; the scale point lies towards the mid shoulder at
    the distance of the farthest point (MediaPipe's hip-centred circle). ok: the
    points to trust (all when None); without both shoulders "up" is the image's up.
    """
    xy = np.asarray(xy, np.float64)[:sk.N]
    ok = np.ones(sk.N, bool) if ok is None else np.asarray(ok, bool)
    hip = xy[[23, 24]].mean(0)
    up = xy[[11, 12]].mean(0) - hip if ok[[11, 12]].all() else np.array([0.0, -1.0])
    n = float(np.linalg.norm(up))
    up = up / n if n > 1e-6 else np.array([0.0, -1.0])
    r = float(np.linalg.norm(xy[ok] - hip, axis=1).max())
    return np.stack([hip, hip + up * max(r, 1.0)])


def square_roi(roi) -> ROI:
    """The square ROI MediaPipe actually samples for a non-square one (keep_aspect_ratio letterbox)."""
    cx, cy, w, h, r = (float(v) for v in roi)
    s = max(w, h)
    if not (s > 0 and all(map(math.isfinite, (cx, cy, s, r)))):
        raise ValueError(f"invalid ROI {roi!r}: need finite centre and positive size")
    return (cx, cy, s, s, r)


def crop_affine(roi, size: int = LM_SIZE) -> np.ndarray:
    """2x3 matrix: crop pixel (u, v), 0..size, -> image pixel, for the square version of `roi`.

    Same corner convention as MediaPipe's OpenCV crop: crop pixel 0 is the
    ROI's corner, crop pixel `size` the opposite one.
    """
    cx, cy, s, _, r = square_roi(roi)
    c, si = math.cos(r), math.sin(r)
    k = s / size
    return np.array([[c * k, -si * k, cx - 0.5 * s * (c - si)],
                     [si * k, c * k, cy - 0.5 * s * (si + c)]], np.float64)


def warp_crop(rgb: np.ndarray, affine: np.ndarray, size: int, border=cv2.BORDER_REPLICATE) -> np.ndarray:
    """uint8 crop: out[v, u] = rgb at affine @ (u, v, 1), bilinear (as MediaPipe's warpPerspective)."""
    return cv2.warpAffine(rgb, affine, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=border, borderValue=(0, 0, 0))


# -- detector ----------------------------------------------------------------------------
@lru_cache(maxsize=1)
def ssd_anchors() -> np.ndarray:
    """(2254, 2) anchor centres in [0, 1], in the model's output order (SsdAnchorsCalculator rules)."""
    n = len(DET_STRIDES)

    def scale(i):
        return DET_MIN_SCALE + (DET_MAX_SCALE - DET_MIN_SCALE) * i / (n - 1)

    out = []
    layer = 0
    while layer < n:
        per_cell = 0
        last = layer
        while last < n and DET_STRIDES[last] == DET_STRIDES[layer]:
            per_cell += 2          # aspect ratio 1.0 + the interpolated-scale anchor
            last += 1
        fm = int(math.ceil(DET_SIZE / DET_STRIDES[layer]))
        ys, xs = np.meshgrid((np.arange(fm) + 0.5) / fm, (np.arange(fm) + 0.5) / fm, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], 1)
        out.append(np.repeat(cells, per_cell, axis=0))
        layer = last
    a = np.concatenate(out)
    assert len(a) == NUM_ANCHORS, len(a)
    return a


def letterbox_affine(width: int, height: int, size: int = DET_SIZE) -> np.ndarray:
    """2x3 matrix: detector input pixel -> image pixel (whole image fitted, centred, padded)."""
    L = float(max(width, height))
    k = L / size
    return np.array([[k, 0.0, width / 2 - L / 2], [0.0, k, height / 2 - L / 2]])


def decode_detections(raw_boxes: np.ndarray, raw_scores: np.ndarray, min_score: float) -> tuple:
    """Model outputs -> (scores (N,), boxes (N, 4) xmin, ymin, xmax, ymax, keypoints (N, 4, 2)) in input pixels."""
    rb = np.asarray(raw_boxes, np.float64).reshape(NUM_ANCHORS, 12)
    sc = _sigmoid(np.clip(np.asarray(raw_scores, np.float64).reshape(NUM_ANCHORS), -SCORE_CLIP, SCORE_CLIP))
    keep = np.nonzero(sc >= min_score)[0]
    anc = ssd_anchors()[keep] * DET_SIZE
    rb = rb[keep]
    c = rb[:, 0:2] + anc
    wh = rb[:, 2:4]
    boxes = np.concatenate([c - wh / 2, c + wh / 2], 1)
    kps = rb[:, 4:12].reshape(-1, 4, 2) + anc[:, None, :]
    return sc[keep], boxes, kps


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(scores, boxes, kps, iou: float = NMS_IOU) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """MediaPipe's WEIGHTED NMS: each top box absorbs everything with IoU > iou (itself included),
    its location becomes their score-weighted mean, its score stays the top score."""
    order = np.argsort(-scores, kind="stable")
    out = []
    while len(order):
        top = order[0]
        sim = _iou(boxes[top], boxes[order])
        cand = order[sim > iou]
        rest = order[~(sim > iou)]
        if len(cand):
            w = scores[cand][:, None]
            box = (boxes[cand] * w).sum(0) / w.sum()
            kp = (kps[cand] * w[:, :, None]).sum(0) / w.sum()
        else:
            box, kp = boxes[top], kps[top]
        out.append((float(scores[top]), box, kp))
        if len(rest) == len(order):
            break
        order = rest
    return out


# -- landmark decoding -------------------------------------------------------------------
def refine_from_heatmap(norm_xy: np.ndarray, heatmap: np.ndarray, kernel: int = HEATMAP_KERNEL,
                        min_conf: float = HEATMAP_MIN_CONF) -> np.ndarray:
    """RefineLandmarksFromHeatmap: x, y (normalized to the crop) -> sigmoid-weighted mean of the
    kernel window around each point, where the window's peak is confident enough.

    Kept faithful to the calculator, quirks included: the window centre is
    truncated toward zero, weights sit on the cell's corner (no +0.5), and
    only the column is checked against the bottom edge, so a point just
    below the heatmap is still refined from the last rows.
    """
    hm = np.asarray(heatmap, np.float32).reshape(heatmap.shape[-3:])
    hh, hw, nch = hm.shape
    k = len(norm_xy)
    if nch < k:
        raise ValueError(f"heatmap has {nch} channels for {k} landmarks")
    out = np.array(norm_xy, np.float64, copy=True)
    col = np.trunc(out[:, 0].astype(np.float32) * hw).astype(int)
    row = np.trunc(out[:, 1].astype(np.float32) * hh).astype(int)
    ok = (col >= 0) & (col < hw) & (row >= 0)
    off = (kernel - 1) // 2
    d = np.arange(-off, off + 1)
    rows = row[:, None] + d[None, :]                                    # (k, kernel)
    cols = col[:, None] + d[None, :]
    rv = (rows >= 0) & (rows < hh)
    cv = (cols >= 0) & (cols < hw)
    ch = np.arange(k)
    vals = hm[np.clip(rows, 0, hh - 1)[:, :, None], np.clip(cols, 0, hw - 1)[:, None, :], ch[:, None, None]]
    conf = _sigmoid(vals) * (rv[:, :, None] & cv[:, None, :])
    s = conf.sum((1, 2))
    peak = conf.max((1, 2))
    wc = (conf * cols[:, None, :]).sum((1, 2))
    wr = (conf * rows[:, :, None]).sum((1, 2))
    upd = ok & (peak >= min_conf) & (s > 0)
    out[upd, 0] = wc[upd] / hw / s[upd]
    out[upd, 1] = wr[upd] / hh / s[upd]
    return out


def decode_landmarks(raw_landmarks, pose_flag: float, roi, heatmap: np.ndarray | None = None,
                     det_score: float = float("nan"), input_size: int = LM_SIZE) -> PersonPose:
    """The landmark model's raw output -> PersonPose in image pixels (TensorsToLandmarks + projection).

    raw_landmarks: (K*5,) or (K, 5), K = 39 as the TFLite model emits it (33
      also accepted, e.g. a student net): x, y, z in crop pixels (0..input_size),
      visibility and presence as logits.
    pose_flag: the model's pose-presence probability (already a sigmoid).
    roi: the ROI the crop was taken from (cx, cy, w, h, rotation), pixels/radians.
    heatmap: (64, 64, K) heatmap logits when the model has them (x, y refinement).
    """
    raw = np.asarray(raw_landmarks, np.float64)
    raw = raw.reshape(-1, 5) if raw.ndim == 1 else raw
    if raw.ndim != 2 or raw.shape[1] < 5 or raw.shape[0] < sk.N:
        raise ValueError(f"raw landmarks must be (K*5,) or (K, 5) with K >= 33, got {np.shape(raw_landmarks)}")
    norm = raw[:, :2] / input_size
    if heatmap is not None:
        norm = refine_from_heatmap(norm, heatmap)
    A = crop_affine(roi, 1)                                      # normalized crop -> image pixels
    xy = norm @ A[:, :2].T + A[:, 2]
    side = square_roi(roi)[2]
    z = raw[:, 2] / input_size * side
    flag = float(pose_flag)
    hconf = float("nan")
    if heatmap is not None:
        # max in the heatmap's own dtype (exact), then float64: not a float64 copy of 160,000 cells
        peaks = np.asarray(heatmap).reshape(-1, np.shape(heatmap)[-1]).max(0)[:sk.N].astype(np.float64)
        hconf = float(_sigmoid(peaks).mean())
    aux = xy[sk.N:sk.N + 2].copy() if raw.shape[0] >= sk.N + 2 else None
    det = float(det_score)
    score = (1.0 if math.isnan(det) else det) * (1.0 if math.isnan(flag) else flag)
    return PersonPose(xy=xy[:sk.N].copy(), z=z[:sk.N].copy(), visibility=_sigmoid(raw[:sk.N, 3]),
                      presence=_sigmoid(raw[:sk.N, 4]), score=float(score), roi=tuple(float(v) for v in roi),
                      pose_flag=flag, det_score=det, aux=aux, heatmap_conf=hconf)


# -- LiteRT models -----------------------------------------------------------------------
class _Model:
    """A .tflite file under LiteRT with outputs fetched by tensor name."""

    def __init__(self, path, num_threads: int = 1, outputs: tuple[str, ...] | None = None, lean: bool = True):
        """outputs: only these are computed (all when None). lean: run mp_models.lean_model's
        version of the file (the same numbers, faster to load and run); False: the file as shipped."""
        self.path = str(path)
        if outputs and not lean:
            raise ValueError("outputs can only be chosen for the lean model")
        try:
            self.it = self._interpreter(num_threads, tuple(outputs or ()), lean)
        except ValueError as e:
            raise UserError(f"{path}: cannot load TFLite model ({str(e).splitlines()[0]})") from None
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]["index"]
        self.out = {d["name"]: d["index"] for d in self.it.get_output_details()}

    def _interpreter(self, num_threads: int, outputs: tuple[str, ...], lean: bool):
        from ai_edge_litert.interpreter import Interpreter
        if not lean:
            return Interpreter(model_path=self.path, num_threads=num_threads)
        cached = mp_models.lean_model_file(Path(self.path), outputs)
        if cached is not None:
            try:
                return Interpreter(model_path=str(cached), num_threads=num_threads)
            except ValueError:          # a damaged cache entry: drop it, make it in memory this time
                cached.unlink(missing_ok=True)
        return Interpreter(model_content=mp_models.lean_model(Path(self.path), outputs), num_threads=num_threads)

    def __call__(self, x: np.ndarray, names) -> list[np.ndarray]:
        self.it.set_tensor(self.inp, x[None].astype(np.float32, copy=False))
        self.it.invoke()
        return [self.it.get_tensor(self.out[n])[0] for n in names]


@lru_cache(maxsize=4)
def _detector_model(num_threads: int = 1) -> _Model:
    return _Model(mp_models.detector_path(), num_threads)


def detector_input(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The detector's (224, 224, 3) float32 input in [-1, 1] and the affine input pixel -> image pixel."""
    h, w = rgb.shape[:2]
    A = letterbox_affine(w, h)
    return warp_crop(rgb, A, DET_SIZE, cv2.BORDER_CONSTANT).astype(np.float32) * (2.0 / 255.0) - 1.0, A


def _to_image(A: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ A[:, :2].T + A[:, 2]


def raw_detections(rgb: np.ndarray, model: "_Model", min_score: float, origin=(0.0, 0.0)) -> tuple:
    """Decoded detections before NMS (scores, boxes (N, 4) x0 y0 x1 y1, keypoints (N, 4, 2)), image pixels.

    origin: where `rgb` sits in a larger image (detection on a window of it).
    """
    x, A = detector_input(rgb)
    raw_boxes, raw_scores = model(x, ("Identity", "Identity_1"))
    scores, boxes, kps = decode_detections(raw_boxes, raw_scores, min_score)
    A = A.copy()
    A[:, 2] += origin
    return scores, _to_image(A, boxes.reshape(-1, 2)).reshape(-1, 4), _to_image(A, kps.reshape(-1, 2)).reshape(-1, 4, 2)


def nms_detections(scores, boxes, kps, nms_iou: float = NMS_IOU) -> list[Detection]:
    """Weighted NMS in image pixels (the same as MediaPipe's on the letterboxed input: IoU and
    weighted means do not change under its uniform scale and shift), best first.

    Below MediaPipe's own score threshold (0.5) detections only add people:
    the confident ones are merged among themselves exactly as MediaPipe
    does (so their ROIs stay MediaPipe's), then the weaker ones that overlap
    none of them are merged among themselves.
    """
    scores = np.asarray(scores, np.float64)
    hi = scores >= MP_MIN_SCORE
    merged = weighted_nms(scores[hi], boxes[hi], kps[hi], nms_iou)
    lo = np.nonzero(~hi)[0]
    if len(lo) and merged:
        kept = np.stack([b for _, b, _ in merged])
        lo = np.array([i for i in lo if (_iou(boxes[i], kept) <= nms_iou).all()], int)
    if len(lo):
        merged += weighted_nms(scores[lo], boxes[lo], kps[lo], nms_iou)
    merged.sort(key=lambda t: -t[0])
    return [Detection(s, (float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])), k)
            for s, b, k in merged]


def detect(rgb: np.ndarray, min_score: float = 0.5, nms_iou: float = NMS_IOU, model: "_Model | None" = None,
           num_threads: int = 1) -> list[Detection]:
    """The raw multi-person pose detector on the whole image: detections after weighted NMS,
    best first, in image pixels (MediaPipe's PoseDetectionCpu, without its one-person cut)."""
    rgb = _check_rgb(rgb)
    model = model or _detector_model(num_threads)
    return nms_detections(*raw_detections(rgb, model, min_score), nms_iou)


def tile_windows(width: int, height: int, tile: float) -> list[tuple[int, int, int, int]]:
    """Overlapping square windows (x0, y0, x1, y1) of side tile x the long side, half-side stride,
    covering the image; none when tile is 0 or the window would not be smaller than the image."""
    if not tile:
        return []
    s = int(round(tile * max(width, height)))
    if s >= max(width, height) or s < 32:
        return []

    def starts(n):
        if n <= s:
            return [0]
        k = int(math.ceil((n - s) / (s / 2))) + 1
        return [int(round(i * (n - s) / (k - 1))) for i in range(k)]

    return [(x, y, min(width, x + s), min(height, y + s)) for y in starts(height) for x in starts(width)]


# -- person-level duplicate check -----------------------------------------------------------
_COCO = list(sk.COCO17_FROM_BP)


def _oks_terms17(a17: np.ndarray, b17: np.ndarray, area: float) -> np.ndarray:
    """COCO's per-joint OKS terms between two COCO-17 point sets (pixels) at one person area."""
    d2 = ((np.asarray(a17) - np.asarray(b17)) ** 2).sum(1)
    return np.exp(-d2 / (2.0 * area * (2.0 * sk.COCO17_SIGMAS) ** 2))


def pose_similarity(a: PersonPose, b: PersonPose) -> float:
    """OKS between two predictions on the COCO-17 points, scaled by the larger one's box."""
    bw = max(a.bbox()[2] * a.bbox()[3], b.bbox()[2] * b.bbox()[3], 1.0)
    return float(_oks_terms17(a.xy[_COCO], b.xy[_COCO], bw).mean())


def coco17_similarity(k17a: np.ndarray, box_a, k17b: np.ndarray, box_b) -> float:
    """OKS between two per-box COCO-17 poses, on the larger box's person area (COCO's 0.53 ratio)."""
    area = 0.53 * max((box_a[2] - box_a[0]) * (box_a[3] - box_a[1]), (box_b[2] - box_b[0]) * (box_b[3] - box_b[1]), 1.0)
    return float(_oks_terms17(k17a, k17b, area).mean())


def _same_alignment(kp: np.ndarray, p: PersonPose, tol: float = 0.3) -> bool:
    """Detector keypoints 0/1 sit where a person's auxiliary points 33/34 are (the same two points)."""
    aux = p.aux if p.aux is not None else aux_from_body(p.xy)
    r = float(np.linalg.norm(aux[1] - aux[0]))
    return bool((np.linalg.norm(np.asarray(kp) - aux, axis=1) < tol * max(r, 1.0)).all())


# -- the estimator ---------------------------------------------------------------------------
# -- engine "detector": person boxes -> per-box COCO-17 pose -> BlazePose ----------------------
_C17 = list(sk.COCO17_FROM_BP)
# the COCO-17 joint each BlazePose point goes with (itself for the 17; the nearest one for the rest)
_SATELLITE = {1: 2, 2: 2, 3: 2, 4: 5, 5: 5, 6: 5, 9: 0, 10: 0, 17: 15, 19: 15, 21: 15, 18: 16, 20: 16, 22: 16,
              29: 27, 31: 27, 30: 28, 32: 28}
TO_COCO17 = np.array([_C17.index(i) if i in _C17 else _C17.index(_SATELLITE[i]) for i in range(sk.N)])


def roi_from_coco17(k17: np.ndarray, s17: np.ndarray, min_score: float = 0.2) -> ROI | None:
    """MediaPipe's alignment ROI from a COCO-17 pose (aux_from_body's rule on its confident points).
    None without both hips (a partial body: the caller uses the box instead)."""
    xy = np.zeros((sk.N, 2))
    ok = np.zeros(sk.N, bool)
    xy[_C17], ok[_C17] = k17, np.asarray(s17) >= min_score
    if not ok[[23, 24]].all():
        return None
    aux = aux_from_body(xy, ok)
    return alignment_roi(aux[0], aux[1])


MIN_SHARE_IN_USER_BOX = 0.5     # predict_in_box, engine "detector": a pose with fewer points in the box is nobody


def box_pixels_only(rgb: np.ndarray, box, margin: float = 0.0) -> np.ndarray:
    """The image black outside an (x0, y0, x1, y1) box grown by `margin` of its size."""
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    h, w = rgb.shape[:2]
    a, b = int(max(0, math.floor(x0 - mx))), int(max(0, math.floor(y0 - my)))
    c, d = int(min(w, math.ceil(x1 + mx))), int(min(h, math.ceil(y1 + my)))
    out = np.zeros_like(rgb)
    out[b:d, a:c] = rgb[b:d, a:c]
    return out


def box_roi(box) -> ROI:
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    s = ROI_SCALE * max(x1 - x0, y1 - y0)
    return ((x0 + x1) / 2, (y0 + y1) / 2, s, s, 0.0)


_HIPS17 = np.isin(np.arange(17), [11, 12])


def fuse_coco17(pose: PersonPose, k17: np.ndarray, s17: np.ndarray, box, max_term: float = 0.5,
                min_score: float = 0.2, blend: float = 0.5) -> PersonPose:
    """BlazePose's 33 points moved towards the per-box model's (MoveNet's) COCO-17 joints; each
    joint's satellite points (fingers, heel and toe, eye corners, mouth) move with it.

    Where the two agree, the joint is their mean (`blend` of the way to MoveNet): two independent
    models' errors partly cancel. Where they disagree (OKS term under max_term, on the box's scale)
    and MoveNet is sure, MoveNet's: where BlazePose lost a limb (occlusion, a crowd), MoveNet,
    trained on crowded COCO photos, usually has it. The hips are MoveNet's: BlazePose's hip
    is its own definition, not the one COCO-style datasets label. On pose-gt-dev (docs/benchmarks.md)
    the mean against BlazePose's own point where they agree: OKS AP 0.344 -> 0.382, clicks a person
    5.10 -> 4.85; non-COCO sources alone AP 0.446 -> 0.487.
    """
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1.0) * 0.53        # box area -> person area, COCO's ratio
    term = _oks_terms17(pose.xy[_C17], k17, area)
    take = ((term < max_term) & (np.asarray(s17) >= min_score)) | _HIPS17
    weight = np.where(take, 1.0, float(blend))
    shift = weight[:, None] * (k17 - pose.xy[_C17])
    return dataclasses.replace(pose, xy=pose.xy + shift[TO_COCO17])


def shown_size(pose: PersonPose, width: int, height: int) -> float:
    """Pixels: the geometric mean of the sides of the box around the points a person shows (inside
    the image and not `unseen`), the size to_person's stored person has.

    engine "detector" keeps no one smaller than min_person_px (16): nobody places 17 points on a
    person 35 px tall, so the people found there were all deletes. On pose-gt-dev no person with
    >= 5 labelled points is under 19 px, 13 of the unmatched are under 16, and clicks a person went
    4.19 -> 4.13 (both halves: 4.15 -> 4.12, 4.25 -> 4.15)."""
    xy = np.asarray(pose.xy, np.float64)
    ok = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    unseen = getattr(pose, "unseen", None)
    if unseen is not None:
        ok &= ~np.asarray(unseen, bool)
    if not ok.any():
        return 0.0
    w, h = xy[ok].max(0) - xy[ok].min(0)
    return float(np.sqrt(w * h))


ENGINES = settings.CHOICES["prefill", "engine"]
HIDE_RULES = settings.CHOICES["prefill", "hide_points"]   # engine "detector": point_model.show, or MoveNet < unseen_below


class PoseEstimator:
    """BlazePose on still images and video frames.

    engine "detector" (the default for new projects): a person detector's boxes (NanoDet), a
    per-box COCO-17 pose (MoveNet Thunder) that decides whether a person is there, where they are
    aligned and which points are not there, then BlazePose (Heavy by default) on MediaPipe's ROI
    from that alignment (person_in_box). Measured on pose-gt-dev (bench/engine.py): person recall
    0.31 -> 0.81 against "multi".
    engine "multi": every person MediaPipe's own (face-based) detector finds (LiteRT, this
    module's graph rules).
    engine "legacy": mp.solutions.pose.Pose, one person per image (comparison,
    benchmarks, MediaPipe's own tracking); predict_roi/crop/decode always use
    the LiteRT landmark model, which is the same network.
    """

    DEDUP_OKS = 0.5     # two predictions this similar are one person (overlapping detections)

    def __init__(self, engine: str = "multi", model_complexity: int = 1, min_detection_confidence: float = 0.5,
                 min_pose_presence: float = 0.5, max_people: int = 50, nms_iou: float = NMS_IOU,
                 tiles: float = 0.0, min_keypoint_conf: float = 0.45, num_threads: int = 1,
                 box_min_score: float = 0.2, min_person_score: float = 0.06, unseen_below: float = 0.2,
                 fuse_max_term: float = 0.5, rerun_complexity: int | None = None, hide_points: str = "model",
                 pose_flag_weight: float = 0.7, second_look: bool = True, min_person_px: float = 16.0,
                 mirror_scores: bool = True):
        if engine not in ENGINES:
            raise UserError(f"engine={engine!r}: must be one of {', '.join(ENGINES)}")
        for name, v in (("box_min_score", box_min_score), ("min_person_score", min_person_score),
                        ("unseen_below", unseen_below), ("fuse_max_term", fuse_max_term),
                        ("pose_flag_weight", pose_flag_weight)):
            if not 0.0 <= float(v) <= 1.0:
                raise UserError(f"{name}={v!r}: must be between 0 and 1")
        mp_models.check_complexity(int(model_complexity), legacy=engine == "legacy")
        for name, v in (("min_detection_confidence", min_detection_confidence),
                        ("min_pose_presence", min_pose_presence), ("nms_iou", nms_iou),
                        ("min_keypoint_conf", min_keypoint_conf)):
            if not 0.0 <= float(v) <= 1.0:
                raise UserError(f"{name}={v!r}: must be between 0 and 1")
        if int(max_people) < 1:
            raise UserError(f"max_people={max_people!r}: must be at least 1")
        self.engine = engine
        self.model_complexity = int(model_complexity)
        self.min_detection_confidence = float(min_detection_confidence)
        self.min_pose_presence = float(min_pose_presence)
        self.max_people = int(max_people)
        self.nms_iou = float(nms_iou)
        self.num_threads = int(num_threads)
        if not (tiles == 0 or 0.2 <= float(tiles) < 1.0):
            raise UserError(f"tiles={tiles!r}: 0 (whole image only) or a window side between 0.2 and 1 "
                            f"of the image's long side")
        self.tiles = float(tiles)
        self.min_keypoint_conf = float(min_keypoint_conf)
        self.box_min_score, self.min_person_score = float(box_min_score), float(min_person_score)
        self.unseen_below, self.fuse_max_term = float(unseen_below), float(fuse_max_term)
        if hide_points not in HIDE_RULES:
            raise UserError(f"hide_points={hide_points!r}: must be one of {', '.join(HIDE_RULES)}")
        self.hide_points, self.pose_flag_weight = hide_points, float(pose_flag_weight)
        self.second_look = bool(second_look)
        self.mirror_scores = bool(mirror_scores)
        if not float(min_person_px) >= 0:
            raise UserError(f"min_person_px={min_person_px!r}: must be 0 (keep every size) or more pixels")
        self.min_person_px = float(min_person_px)
        self.rerun_complexity = None if rerun_complexity is None else int(rerun_complexity)
        if self.rerun_complexity is not None:
            mp_models.check_complexity(self.rerun_complexity)
        variant = mp_models.VARIANT[self.model_complexity]
        self.name = (f"nanodet+movenet+blazepose-{variant}" if engine == "detector" else f"blazepose-{variant}") \
            + f"/mediapipe-{mp_models.mediapipe_version()}"
        self.settings = {"engine": engine, "model_complexity": self.model_complexity,
                         "min_detection_confidence": self.min_detection_confidence,
                         "min_pose_presence": self.min_pose_presence, "max_people": self.max_people,
                         "nms_iou": self.nms_iou, "tiles": self.tiles,
                         "min_keypoint_conf": self.min_keypoint_conf, "dedup_oks": self.DEDUP_OKS}
        if engine == "detector":
            self.settings.update(box_min_score=self.box_min_score, min_person_score=self.min_person_score,
                                 unseen_below=self.unseen_below, fuse_max_term=self.fuse_max_term,
                                 hide_points=self.hide_points, pose_flag_weight=self.pose_flag_weight,
                                 rerun_complexity=self.rerun_complexity, second_look=self.second_look,
                                 mirror_scores=self.mirror_scores,
                                 min_person_px=self.min_person_px)
            mp_models.require("nanodet")
            mp_models.require("movenet_thunder")
        self._det = _Model(mp_models.detector_path(), self.num_threads) if engine == "multi" else None
        self._boxes = None
        self.candidates: list[tuple] = []   # the last predict()'s rejected person boxes (x0, y0, x1, y1, score)
        self._box_pose = None
        self._rerun = None
        self._lm_model = None
        self._legacy = None
        self._legacy_video = None
        # A replacement landmark network (e.g. a distilled student): crop (256, 256, 3) float32 [0, 1]
        # -> (raw (K*5,), pose_flag, heatmap or None), K >= 33, as decode_landmarks takes them.
        self.landmark_fn = None
        # id(pose) -> (pose, heatmap) for the people of the last predict(): the suspicion's heatmap
        # signals read them instead of running the landmark model on the same crop again
        self._heatmaps: dict[int, tuple[PersonPose, np.ndarray]] = {}

    # -- building blocks ----------------------------------------------------------------
    @property
    def rerun(self) -> "PoseEstimator":
        """The estimator the review signals' re-runs use: a cheaper landmark model than the one that
        predicts when rerun_complexity says so (8 runs a person), else this one."""
        if self.rerun_complexity is None or self.rerun_complexity == self.model_complexity:
            return self
        if self._rerun is None:
            self._rerun = PoseEstimator("multi", self.rerun_complexity, num_threads=self.num_threads)
            self._rerun._det = None
        return self._rerun

    def _detector(self):
        if self._boxes is None:
            from annotator.prefill.detect_onnx import BoxPose, PersonDetector
            self._boxes = PersonDetector(mp_models.require("nanodet"), self.num_threads, self.box_min_score)
            self._box_pose = BoxPose(mp_models.require("movenet_thunder"), self.num_threads)
        return self._boxes, self._box_pose

    def box_keypoints(self, rgb: np.ndarray, box, first=None, recrop: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The per-box pose model (MoveNet) on one box: COCO-17 (x, y) pixels and scores, float64.
        recrop=False: the box's own square only (BoxPose.predict), enough to tell a person already
        found and all a box alone on black needs (its second look there measured no better).
        first: that result when the caller already has it (only its second look is run)."""
        _, box_pose = self._detector()
        if first is None:
            k17, s17 = box_pose.predict(rgb, box, recrop)
        else:
            k17, s17 = box_pose.look_again(rgb, box, *first) if recrop else first
        return k17.astype(np.float64), s17.astype(np.float64)

    def _person_score(self, pre: float, pose: PersonPose) -> float:
        """Box score x MoveNet's mean point score (`pre`) x (1 - w + w x BlazePose's pose flag)."""
        flag = pose.pose_flag if np.isfinite(pose.pose_flag) else 1.0
        return pre * (1.0 - self.pose_flag_weight + self.pose_flag_weight * flag)

    def person_in_box(self, rgb: np.ndarray, box, keypoints=None,
                      mirror: bool | None = None) -> tuple[PersonPose | None, np.ndarray]:
        """engine "detector" on one box (x0, y0, x1, y1, score): the per-box pose model says whether
        a person is there and how they are aligned, BlazePose puts the 33 points on that ROI (refined
        once by its own landmarks-to-ROI rule) and the two are fused. Returns (pose or None when the
        person score is under min_person_score, its landmark heatmap).

        Person score: box score x MoveNet's mean point score x (1 - w + w x BlazePose's pose flag),
        w = pose_flag_weight: a person both models see. On pose-gt-dev (docs/benchmarks.md, with the
        first fit of point_model) w = 0.7 against 0: false people on the empty photos 6 -> 3, clicks a
        person 5.30 -> 5.14, recall 0.853 -> 0.814; w = 1 loses partial bodies BlazePose flags 0.
        keypoints: box_keypoints(rgb, box) when the caller already has them.
        mirror (None: mirror_scores): MoveNet once more, on the mirrored crop of the box; the
        point model reads the mean of the two scores (point_model.mean_score): on pose-gt-dev
        clicks a person 3.92 -> 3.85, unlabel 0.86 -> 0.71 with the refit and its SHOW_MARGIN.
        A whole photo (_detector_predict) runs it only for the people it keeps, after dedup.
        """
        k17, s17 = self.box_keypoints(rgb, box) if keypoints is None else keypoints
        pre = float(box[4]) * float(np.mean(s17))
        if pre < self.min_person_score:          # BlazePose's flag can only lower it: skip its two runs
            return None, None
        roi = roi_from_coco17(k17, s17)
        first, _ = self._predict_roi(rgb, roi if roi is not None else box_roi(box), float(box[4]))
        if self._person_score(pre, first) < FIRST_FLAG_CUT * self.min_person_score:
            return None, None                   # BlazePose sees nobody: no refined run (the same people on pose-gt-dev)
        pose, hm = self._predict_roi(rgb, first.next_roi(), float(box[4]))
        score = self._person_score(pre, pose)
        if score < self.min_person_score:
            return None, None
        gap = np.linalg.norm(pose.xy[_C17] - k17, axis=1)[TO_COCO17]
        pose = fuse_coco17(pose, k17, s17, box, self.fuse_max_term)
        pose.score = score
        pose.engine_gap, pose.engine_conf = gap, s17[TO_COCO17]
        pose.box_k17 = k17
        pose.box = tuple(float(v) for v in box[:5])
        self._show_points(rgb, pose, self.mirror_scores if mirror is None else mirror)
        return pose, hm

    def _show_points(self, rgb: np.ndarray, pose: PersonPose, mirror: bool) -> None:
        """pose.unseen (the points stored as not labelled), label_conf and the queue's two doubts,
        from point_model on the pose's MoveNet scores (engine_conf), engine_gap and box; mirror: with
        MoveNet's mirrored look (one MoveNet run) in the score and its joints (mirror_k17)."""
        h, w = rgb.shape[:2]
        s17, box = pose.engine_conf[_C17], pose.box
        label_s = s17
        if mirror:
            pose.mirror_k17, mirror_s = self._detector()[1].mirrored(rgb, box)
            label_s = point_model.mean_score(s17, mirror_s)
        pose.label_conf = label_s[TO_COCO17]
        F = point_model.features(pose.xy[_C17], label_s, pose.visibility[_C17], pose.z[_C17], box, w, h,
                                 pose.engine_gap[_C17], pose.mirror_k17)
        if self.hide_points == "model":
            pose.unseen = ~point_model.show(F)[TO_COCO17]
        else:
            pose.unseen = s17[TO_COCO17] < self.unseen_below
        x17, y17 = pose.xy[_C17, 0], pose.xy[_C17, 1]
        shown = ~pose.unseen[_C17] & (x17 >= 0) & (x17 < w) & (y17 >= 0) & (y17 < h)   # to_person hides the rest
        doubt, unlabel = point_model.doubt(F, shown)
        pose.point_doubt, pose.label_doubt = doubt[TO_COCO17], unlabel[TO_COCO17]

    def _detector_predict(self, rgb: np.ndarray, look_again_empty: bool = True) -> list[PersonPose]:
        boxes, _ = self._detector()
        people, heat = [], {}
        # one detector run down to CANDIDATE_MIN_SCORE: the boxes at or above box_min_score are the
        # same as a run at that threshold (greedy NMS only lets a higher box suppress a lower one);
        # the ones below, and the boxes the pose model rejected, are kept as `candidates`: where a
        # person may have been missed (the review queue's missing-people term)
        found = boxes.detect(rgb, min(CANDIDATE_MIN_SCORE, self.box_min_score))
        self.candidates = [tuple(b[:5]) for b in found if b[4] < self.box_min_score]
        h, w = rgb.shape[:2]

        def mirror(p, alone) -> None:       # MoveNet's mirrored look (p.mirror_k17), on the image p was found in
            self._show_points(box_pixels_only(rgb, p.box) if alone else rgb, p, True)
        for b in [b for b in found if b[4] >= self.box_min_score][: max(2 * self.max_people, MAX_BOXES)]:
            p, hm, twice, alone = self._box_person(rgb, b, people, look_again_empty)
            if p is not None and shown_size(p, w, h) < self.min_person_px and self.mirror_scores:
                mirror(p, alone)            # the size is the one the stored points will have
            if p is not None and shown_size(p, w, h) < self.min_person_px:
                p = None                    # too small to label: a candidate for the missing-people queue
            if p is not None:
                people.append(p)
                heat[id(p)] = (p, hm, alone)
            elif not twice:
                self.candidates.append(tuple(b[:5]))
        out = self._dedup(people)[: self.max_people]
        if self.mirror_scores:              # the mirrored look for the people kept only (not the duplicates)
            for p in out:
                if p.mirror_k17 is None:    # (a set of id()s missed one: a person the size cut drops frees its id)
                    mirror(p, heat[id(p)][2])
        self._heatmaps = {id(p): heat[id(p)][:2] for p in out if heat[id(p)][1] is not None}
        return out

    def _box_person(self, rgb: np.ndarray, box, people: list[PersonPose],
                    look_again_empty: bool = True) -> tuple[PersonPose | None, object, bool, bool]:
        """The person in one detector box: (pose or None, its heatmap, skipped as a person found twice,
        found on the box's pixels alone). Its points are shown as MoveNet's own scores say; the
        mirrored look waits for the people the photo keeps (_detector_predict).

        With second_look, a box whose pose is a person already found, MoveNet's or BlazePose's after
        its ROI refinement, is looked at again on its own pixels (box_pixels_only): where someone
        stands behind another, the crop around the back person's box is mostly the front person.
        On pose-gt-dev (docs/benchmarks.md) recall 0.833 -> 0.859, clicks a person 4.40 -> 4.19,
        the same false people on the empty photos. So is a box whose scores say nobody is there, on
        a photo where someone was already found (a crowd's low-scored people, a neighbour filling
        the crop), kept at LOOK_AGAIN_MIN_SCORE: recall 0.859 -> 0.878, clicks 4.13 -> 4.08 (both
        halves), false people 3 (4 without the higher score; on every photo, 7). MoveNet's first look
        tells a duplicate box; only a box that is not one gets its second look (BoxPose.look_again),
        and a box alone on black gets none (no better there, and fewer runs)."""
        def found(k17, b) -> bool:
            return any(coco17_similarity(k17, b, q.box_k17, q.box) >= SAME_BOX_OKS for q in people)

        # MoveNet's first look is enough to tell most boxes of a person already found: no second look for them
        first = self.box_keypoints(rgb, box, recrop=False)
        kp = None if found(first[0], box) else self.box_keypoints(rgb, box, first)
        if kp is None or found(kp[0], box):
            if not self.second_look:
                return None, None, True, False     # the same person boxed twice: no BlazePose runs for it
            img = box_pixels_only(rgb, box)
            kp = self.box_keypoints(img, box, recrop=False)
            if found(kp[0], box):
                return None, None, True, False
            return (*self.person_in_box(img, box, kp, mirror=False), False, True)
        p, hm = self.person_in_box(rgb, box, kp, mirror=False)
        # BlazePose's pose is someone already found, or the scores say nobody is in the box on a
        # photo where someone was found (a neighbour fills the crop): the box's pixels alone
        again = any(pose_similarity(p, q) >= self.DEDUP_OKS for q in people) if p is not None else \
            look_again_empty and bool(people)
        if self.second_look and again:
            img = box_pixels_only(rgb, box)
            p2, hm2 = self.person_in_box(img, box, self.box_keypoints(img, box, recrop=False), mirror=False)
            if p2 is not None and all(pose_similarity(p2, q) < self.DEDUP_OKS for q in people) \
                    and (p is not None or p2.score >= LOOK_AGAIN_MIN_SCORE):
                return p2, hm2, False, True
        return p, hm, False, False

    def _lm(self) -> _Model:
        if self._lm_model is None:
            self._lm_model = _Model(mp_models.landmark_path(self.model_complexity), self.num_threads, LM_OUTPUTS)
        return self._lm_model

    def detect(self, rgb: np.ndarray, min_score: float | None = None) -> list[Detection]:
        """Detections on the whole image (and on overlapping windows when `tiles` is set), merged
        by weighted NMS, best first."""
        rgb = _check_rgb(rgb)
        ms = self.min_detection_confidence if min_score is None else float(min_score)
        h, w = rgb.shape[:2]
        found = nms_detections(*self._raw_detections(rgb, ms), self.nms_iou)
        windows = tile_windows(w, h, self.tiles)
        if not windows:
            return found
        # windows only add people: whoever the whole image shows keeps MediaPipe's own ROI
        parts = [self._raw_detections(rgb[y0:y1, x0:x1], ms, (x0, y0)) for x0, y0, x1, y1 in windows]
        scores, boxes, kps = (np.concatenate([p[i] for p in parts]) for i in range(3))
        if found:
            seen = np.array([[d.box[0], d.box[1], d.box[0] + d.box[2], d.box[1] + d.box[3]] for d in found])
            new = np.array([(_iou(b, seen) <= self.nms_iou).all() for b in boxes], bool)
            scores, boxes, kps = scores[new], boxes[new], kps[new]
        found += nms_detections(scores, boxes, kps, self.nms_iou)
        return sorted(found, key=lambda d: -d.score)

    def _raw_detections(self, rgb: np.ndarray, min_score: float, origin=(0, 0)) -> tuple:
        if self._det is None:
            self._det = _Model(mp_models.detector_path(), self.num_threads)
        return raw_detections(rgb, self._det, min_score, origin)

    def crop(self, rgb: np.ndarray, roi, size: int = LM_SIZE) -> tuple[np.ndarray, np.ndarray]:
        """The landmark model's input for `roi` (float32 [0, 1], size x size x 3) and the 2x3
        affine taking crop pixels to image pixels."""
        rgb = _check_rgb(rgb)
        A = crop_affine(roi, size)
        return warp_crop(rgb, A, size).astype(np.float32) * (1.0 / 255.0), A

    def run_landmark_model(self, crop: np.ndarray) -> tuple[np.ndarray, float, np.ndarray | None]:
        """(raw landmarks (195,), pose flag, heatmap (64, 64, 39)) for one 256x256 crop."""
        if self.landmark_fn is not None:
            return self.landmark_fn(crop)
        raw, flag, hm = self._lm()(crop, LM_OUTPUTS)
        return raw, float(flag.reshape(-1)[0]), hm

    def predict_roi(self, rgb: np.ndarray, roi, det_score: float = float("nan")) -> PersonPose:
        """The landmark model on one ROI, whatever its pose flag."""
        return self._predict_roi(rgb, roi, det_score)[0]

    def _predict_roi(self, rgb: np.ndarray, roi, det_score: float) -> tuple[PersonPose, np.ndarray | None]:
        x, _ = self.crop(rgb, roi)
        raw, flag, hm = self.run_landmark_model(x)
        return decode_landmarks(raw, flag, square_roi(roi), hm, det_score), hm

    def heatmap_of(self, pose: PersonPose) -> np.ndarray | None:
        """The landmark heatmap behind a pose the last predict() returned (crop of pose.roi), else None."""
        e = self._heatmaps.get(id(pose))
        return e[1] if e is not None and e[0] is pose else None

    # -- still images ----------------------------------------------------------------------
    def predict(self, rgb: np.ndarray) -> list[PersonPose]:
        """Every person in a still image, best score first."""
        if self.engine == "legacy":
            return self._legacy_predict(rgb)
        if self.engine == "detector":
            return self._detector_predict(_check_rgb(rgb))
        people, heat = [], {}
        for d in self.detect(rgb)[: 2 * self.max_people]:
            p, hm = self._predict_roi(rgb, d.roi(), d.score)
            if self._is_person(p):
                people.append(p)
                heat[id(p)] = (p, hm)
        out = self._dedup(people)[: self.max_people]
        self._heatmaps = {id(p): heat[id(p)] for p in out if heat[id(p)][1] is not None}
        return out

    def _is_person(self, p: PersonPose) -> bool:
        """A detection's landmarks are kept as a person: pose flag, and the heatmaps' confidence
        (where the model has heatmaps) above their thresholds."""
        return p.pose_flag >= self.min_pose_presence and not (p.heatmap_conf < self.min_keypoint_conf)

    def _dedup(self, people: list[PersonPose]) -> list[PersonPose]:
        kept: list[PersonPose] = []
        for p in sorted(people, key=lambda q: -q.score):
            if all(pose_similarity(p, q) < self.DEDUP_OKS for q in kept):
                kept.append(p)
        return kept

    def predict_in_box(self, rgb: np.ndarray, box_xywh) -> PersonPose | None:
        """The person inside a user-drawn box (None when the model sees nobody there).

        The detector runs on the box (plus margin) at its own resolution, so
        small people are found; its ROI and a box-centred ROI are both tried,
        each refined once with the landmarks-to-ROI rule, and the pose that
        is most confident and most inside the box wins.
        """
        rgb = _check_rgb(rgb)
        H, W = rgb.shape[:2]
        try:
            x, y, w, h = (float(v) for v in box_xywh)
        except (TypeError, ValueError):
            raise ValueError(f"box must be (x, y, w, h), got {box_xywh!r}") from None
        if not (w > 1 and h > 1) or x >= W or y >= H or x + w <= 0 or y + h <= 0:
            raise ValueError(f"box {box_xywh!r} is empty or outside the {W}x{H} image")
        if self.engine == "detector":           # the user's box is the detector's box, fully trusted
            b = (x, y, x + w, y + h, 1.0)

            def in_box(p) -> bool:
                return p is not None and share_inside(p.xy, (x, y, w, h), 0.1) >= MIN_SHARE_IN_USER_BOX
            p, _ = self.person_in_box(rgb, b)
            # ... but not a pose that drifted out of it (the ROI refinement walks to someone nearby):
            # then, with second_look, once more on the box's pixels alone
            if not in_box(p) and self.second_look:
                p, _ = self.person_in_box(box_pixels_only(rgb, b), b)
            return p if in_box(p) else None
        m = 0.25 * max(w, h)
        x0, y0 = int(max(0, math.floor(x - m))), int(max(0, math.floor(y - m)))
        x1, y1 = int(min(W, math.ceil(x + w + m))), int(min(H, math.ceil(y + h + m)))
        rois = []
        sub = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        for d in nms_detections(*self._raw_detections(sub, min(0.3, self.min_detection_confidence)), self.nms_iou):
            k = d.keypoints + (x0, y0)
            if x <= k[0, 0] <= x + w and y <= k[0, 1] <= y + h:
                rois.append((alignment_roi(k[0], k[1]), d.score))
                break
        rois.append(((x + w / 2, y + h / 2, ROI_SCALE * max(w, h), ROI_SCALE * max(w, h), 0.0), float("nan")))
        best, best_key = None, -1.0
        for roi, ds in rois:
            p = self.predict_roi(rgb, roi, ds)
            q = self.predict_roi(rgb, p.next_roi(), ds)
            for cand in (p, q):
                key = cand.pose_flag * share_inside(cand.xy, (x, y, w, h), 0.1)
                if key > best_key:
                    best, best_key = cand, key
        if best is None or best.pose_flag < self.min_pose_presence:
            return None
        return best

    # -- video -----------------------------------------------------------------------------
    def track(self, rgb: np.ndarray, previous: list[PersonPose], detect: bool = True) -> list[PersonPose]:
        """Video mode: each previous person is followed through its landmarks-to-ROI (MediaPipe's
        tracking rule); the detector only adds people not already followed and re-finds lost ones.

        Output order follows `previous` (identity by position, and `track_id`);
        people who are lost and not re-found are dropped, new people come last.
        detect=False runs the detector only when someone was lost (MediaPipe's
        single-person behaviour).
        """
        if self.engine == "legacy":
            return self._legacy_track(rgb, previous)
        rgb = _check_rgb(rgb)
        ids = [p.track_id if p.track_id is not None else i for i, p in enumerate(previous)]
        next_id = max(ids, default=-1) + 1
        slots: list[PersonPose | None] = []
        for p, tid in zip(previous, ids):
            roi = p.next_roi()
            if not roi[2] >= 4.0:           # collapsed points: nothing to follow
                slots.append(None)
                continue
            q = self.predict_roi(rgb, roi, p.det_score)
            q.track_id = tid
            ok = q.pose_flag >= self.min_pose_presence and all(
                s is None or pose_similarity(q, s) < self.DEDUP_OKS for s in slots)
            slots.append(q if ok else None)
        lost = [i for i, s in enumerate(slots) if s is None]
        if self.engine == "detector":
            return self._detector_track(rgb, previous, ids, slots, next_id)
        if detect or lost or not previous:
            for d in self.detect(rgb):
                if sum(s is not None for s in slots) >= self.max_people:
                    break
                if any(s is not None and _same_alignment(d.keypoints[:2], s) for s in slots):
                    continue            # already followed: no need to run the landmark model again
                q = self.predict_roi(rgb, d.roi(), d.score)
                if not self._is_person(q) or any(
                        s is not None and pose_similarity(q, s) >= self.DEDUP_OKS for s in slots):
                    continue
                # a lost person re-found keeps its slot
                back = max(lost, key=lambda i: pose_similarity(q, previous[i]), default=None)
                if back is not None and pose_similarity(q, previous[back]) >= 0.3:
                    q.track_id = ids[back]
                    slots[back] = q
                    lost.remove(back)
                else:
                    q.track_id = next_id
                    next_id += 1
                    slots.append(q)
        return [s for s in slots if s is not None]

    def _detector_track(self, rgb, previous, ids, slots, next_id) -> list[PersonPose]:
        """engine "detector" in video: every frame's people come from the detector pipeline (so each
        has its per-box pose checks); found people take the track ids of the previous frame's people
        they match, most similar pairs first (similar to the previous pose or box, or to where MediaPipe's
        landmarks-to-ROI rule followed it: the `slots` made by track()); a previous person the
        detector missed stays followed through that rule."""
        # no look again at empty-scored boxes: a box-alone pose near a lost person took its track id
        # (tests/test_prefill_tracks.py), and the followed people are found without the detector
        found = self._detector_predict(rgb, look_again_empty=False)
        pairs = []
        for i, prev in enumerate(previous):
            for j, q in enumerate(found):
                s = pose_similarity(q, prev)
                if q.box is not None and prev.box is not None:      # small people move more in OKS than in IoU
                    s = max(s, float(_iou(np.asarray(q.box[:4]), np.asarray([prev.box[:4]]))[0]))
                if slots[i] is not None:
                    s = max(s, pose_similarity(q, slots[i]))
                if s >= 0.2:
                    pairs.append((s, i, j))
        out: list[PersonPose | None] = [None] * len(previous)
        taken: set[int] = set()
        for s, i, j in sorted(pairs, reverse=True):
            if out[i] is None and j not in taken:
                found[j].track_id = ids[i]
                out[i] = found[j]
                taken.add(j)
        fresh = [q for j, q in enumerate(found) if j not in taken]
        for i, s in enumerate(slots):      # missed by the detector: followed, unless someone found is there
            if out[i] is None and s is not None and s.pose_flag >= self.min_pose_presence and all(
                    q is None or pose_similarity(s, q) < self.DEDUP_OKS for q in out + fresh):
                out[i] = s
        for q in fresh:
            q.track_id = next_id
            next_id += 1
        return ([p for p in out if p is not None] + fresh)[: self.max_people]

    # -- legacy engine -------------------------------------------------------------------------
    def _legacy_pose(self, video: bool):
        return _LegacyPose(static_image_mode=not video, model_complexity=self.model_complexity,
                           min_detection_confidence=self.min_detection_confidence,
                           min_tracking_confidence=self.min_pose_presence)

    def _legacy_predict(self, rgb: np.ndarray) -> list[PersonPose]:
        if self._legacy is None:
            self._legacy = self._legacy_pose(video=False)
        return self._legacy.run(_check_rgb(rgb), self.min_pose_presence)

    def _legacy_track(self, rgb: np.ndarray, previous: list[PersonPose]) -> list[PersonPose]:
        if self._legacy_video is None or (not previous and self._legacy_video.last):
            if self._legacy_video is not None:
                self._legacy_video.close()
            self._legacy_video = self._legacy_pose(video=True)
        out = self._legacy_video.run(_check_rgb(rgb), self.min_pose_presence)
        for p in out:
            p.track_id = previous[0].track_id if previous and previous[0].track_id is not None else 0
        return out

    def close(self) -> None:
        for g in (self._legacy, self._legacy_video):
            if g is not None:
                g.close()
        self._legacy = self._legacy_video = None


_LEGACY_CLASS = None


def _LegacyPose(**kwargs):
    """mp.solutions.pose.Pose with the ROI, detection and presence kept (the stock class drops them)."""
    global _LEGACY_CLASS
    if _LEGACY_CLASS is None:
        import mediapipe as mp
        from mediapipe.python.solution_base import SolutionBase

        class LegacyPose(mp.solutions.pose.Pose):
            def __init__(self, static_image_mode, model_complexity, min_detection_confidence,
                         min_tracking_confidence):
                # Same graph, side packets and thresholds as Pose.__init__, with more outputs.
                SolutionBase.__init__(
                    self,
                    binary_graph_path=mp.solutions.pose._BINARYPB_FILE_PATH,
                    side_inputs={"model_complexity": model_complexity,
                                 "smooth_landmarks": not static_image_mode,
                                 "enable_segmentation": False, "smooth_segmentation": False,
                                 "use_prev_landmarks": not static_image_mode},
                    calculator_params={
                        "posedetectioncpu__TensorsToDetectionsCalculator.min_score_thresh":
                            min_detection_confidence,
                        "poselandmarkbyroicpu__tensorstoposelandmarksandsegmentation__"
                        "ThresholdingCalculator.threshold": min_tracking_confidence},
                    outputs=["pose_landmarks", "pose_detection", "pose_rect_from_detection",
                             "pose_rect_from_landmarks"])
                self.static = static_image_mode
                self.prev_rect = None
                self.last = []

            def run(self, rgb, min_presence):
                h, w = rgb.shape[:2]
                r = SolutionBase.process(self, input_data={"image": rgb})
                rect_used = self.prev_rect if (not self.static and self.prev_rect is not None) else None
                self.prev_rect = r.pose_rect_from_landmarks if r.pose_landmarks else None
                if not r.pose_landmarks:
                    self.last = []
                    return []
                det = float(r.pose_detection.score[0]) if r.pose_detection is not None else float("nan")
                rect = rect_used if rect_used is not None else r.pose_rect_from_detection
                lm = r.pose_landmarks.landmark
                a = np.array([[p.x, p.y, p.z, p.visibility, p.presence] for p in lm], np.float64)
                roi = (rect.x_center * w, rect.y_center * h, rect.width * w, rect.height * h, rect.rotation) \
                    if rect is not None else (float("nan"),) * 5
                p = PersonPose(xy=a[:, :2] * (w, h), z=a[:, 2] * w, visibility=a[:, 3], presence=a[:, 4],
                               score=1.0 if math.isnan(det) else det, roi=roi, det_score=det)
                self.last = [p]
                return [p]

        _LEGACY_CLASS = LegacyPose
    return _LEGACY_CLASS(**kwargs)
