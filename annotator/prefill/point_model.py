"""Which of a found person's points to show: would an annotator label it, and is the guess right?

A point costs a click either way it goes wrong: shown where the human labels nothing (an unlabel
click), hidden where they label it (it has to be placed), shown in the wrong place (a drag). So a
point is shown when P(labelled) x P(right | labelled) - (1 - P(labelled)) > SHOW_MARGIN. Both are
logistic models on what the engine knows per COCO-17 joint: MoveNet's score (the mean, as logits,
of its crop's and its mirrored crop's: mean_score), BlazePose's visibility and depth against the
joint's left/right twin, where the point is against the image edge, the person's size and
MoveNet's mean score, the joint's group (annotators label a turned-away face or a hand behind
the back at different rates than a shoulder), and how far apart two looks put the joint
(BlazePose against MoveNet; the stored point against MoveNet on the mirror image).

Fit on the calibration half of pose-gt-dev (calibration.assign_splits) by
`python tools/fit_point_model.py` (engine "detector", Heavy, with the mirrored look), which also
picks SHOW_MARGIN: the fewest clicks out of fold inside that half (0.05; the curve is flat from 0
to 0.15). The three kinds of click against hiding MoveNet's points under 0.2: 289 -> 243 on the
half it was fit on, 188 -> 161 on the held-out half; the joint group carries most of it (without
it, no better than the threshold). The two gaps mostly lower P(right): they make the point model
the review queue's best signal (point_doubt; held-out queue recall@20% 0.556 -> 0.577 on labelled
points, 0.458 -> 0.527 on every point), at the same clicks a person (docs/prefill.md).
The depth features (z_pair, z_pair_face), when they were added, took the held-out half 199 -> 182
(unlabel clicks 53 -> 42) and 5-fold by image over all of pose-gt-dev 440 -> 421 clicks out of
fold; a gradient-boosted model on the same features was no better (442).
"""
from __future__ import annotations

import numpy as np

from annotator.core import skeleton as sk

FEATURES = ("movenet_logit", "visibility_logit", "inside", "edge", "log_size", "mean_score",
            "g_shoulder", "g_elbow", "g_wrist", "g_hip", "g_knee", "g_ankle", "z_pair", "z_pair_face",
            "engine_gap", "mirror_gap")
# COCO-17 joint -> group (0 face: nose, eyes, ears; the reference level of the one-hot)
GROUP = np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6])
PAIR = np.array(sk.COCO17_FLIP)   # left <-> right (nose: itself)
Z_CLIP = 1.5
SHOW_MARGIN = 0.05
EDGE_CLIP = 0.3
GAP_FLOOR = 1e-3     # box units: the log of a gap closer than this is the log of this

# tools/fit_point_model.py's output (pose-gt-dev, split "cal" of calibration.assign_splits over all GT images:
# 34 images, 1,375 points; refit with MoveNet's mirrored look and the two gaps)
MODEL = {
    "mean": [-0.526371, 3.00016, 0.974545, 0.261422, -1.31976, 0.417359, 0.125091, 0.125091, 0.125091,
             0.123636, 0.125091, 0.125091, -0.000555, 0, -3.03477, -3.72329],
    "std": [1.31183, 4.10531, 0.157501, 0.08862, 0.720305, 0.124793, 0.330822, 0.330822, 0.330822,
            0.329166, 0.330822, 0.330822, 0.411685, 0.063315, 1.45731, 1.36206],
    "labelled": {"coef": [1.90578, 0.948874, 0.767435, 0.605233, 0.276489, -0.042781, 0.945816,
                          0.993033, 0.892741, 0.47427, 0.96862, 1.05719, -0.113876, -0.592502,
                          -0.289075, 0.029634],
                 "intercept": 1.592836},
    "right": {"coef": [1.10971, 0.088036, 0, -0.312546, -0.042129, 0.241554, 0.126754, 0.254116,
                       0.027818, 0.315331, 0.184127, 0.097719, -0.29731, 0.076219, -0.565916,
                       -0.724721],
              "intercept": 2.044463},
}


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


def mean_score(s17, mirrored17) -> np.ndarray:
    """MoveNet's score on its crop and on the mirrored crop, averaged as logits."""
    z = (_logit(s17) + _logit(mirrored17)) / 2.0
    return 1.0 / (1.0 + np.exp(-z))


def features(xy17: np.ndarray, s17: np.ndarray, vis17: np.ndarray, z17: np.ndarray, box, width: int,
             height: int, gap17=None, mirror_xy17=None) -> np.ndarray:
    """(17, len(FEATURES)) for one person: its COCO-17 points in image pixels, MoveNet's scores,
    BlazePose's visibilities and depths (z, pixels), the detector's box (x0, y0, x1, y1, ...) and
    the image size; gap17: pixels between BlazePose's and MoveNet's joint before they were fused
    (PersonPose.engine_gap), mirror_xy17: MoveNet's joints on the mirrored crop (BoxPose.mirrored).
    A gap not given is NaN, which probabilities() reads as the fit's mean.

    The depth features are how much farther from the camera a point is than its left/right twin
    (box units, clipped at Z_CLIP against the odd collapsed pose), once for every joint and once
    more for the face: the far ear or eye of a head in profile is what COCO's annotators leave
    unlabelled and BlazePose's visibility still calls seen (the fit puts its weight on the face
    term for P(labelled); the all-joints term lowers P(right) a little for a far limb).
    The two gaps (log, box units) are where two looks disagree: BlazePose against MoveNet, and the
    stored point against MoveNet on the mirror image. A point the models cannot agree on is both
    less likely right and less likely labelled (an occluded or out-of-view joint).
    """
    xy17 = np.asarray(xy17, np.float64)
    z17 = np.asarray(z17, np.float64)
    s17 = np.asarray(s17, np.float64)
    scale = max(float(box[2]) - float(box[0]), float(box[3]) - float(box[1]), 1.0)
    x, y = xy17[:, 0], xy17[:, 1]
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    edge = np.minimum.reduce([x, width - 1 - x, y, height - 1 - y]) / scale
    groups = (GROUP[:, None] == np.arange(1, 7)[None, :]).astype(np.float64)
    cols = [_logit(s17), _logit(vis17), inside.astype(np.float64), np.clip(edge, -EDGE_CLIP, EDGE_CLIP),
            np.full(17, np.log(scale / max(width, height, 1))), np.full(17, float(np.mean(s17)))]
    z_pair = np.clip((z17 - z17[PAIR]) / scale, -Z_CLIP, Z_CLIP)

    def log_gap(px):
        return np.full(17, np.nan) if px is None else np.log(np.maximum(np.asarray(px, np.float64) / scale, GAP_FLOOR))
    mirror_px = None if mirror_xy17 is None else np.linalg.norm(np.asarray(mirror_xy17, np.float64) - xy17, axis=1)
    return np.column_stack(cols + [groups, z_pair, z_pair * (GROUP == 0), log_gap(gap17), log_gap(mirror_px)])


def probabilities(F: np.ndarray, model: dict = MODEL) -> tuple[np.ndarray, np.ndarray]:
    """(P(labelled), P(right | labelled)) per row of features()."""
    Z = np.nan_to_num((F - np.asarray(model["mean"])) / np.asarray(model["std"]))   # a feature not known: its mean

    def p(part):
        return 1.0 / (1.0 + np.exp(-np.clip(Z @ np.asarray(part["coef"]) + part["intercept"], -40, 40)))
    return p(model["labelled"]), p(model["right"])


def show(F: np.ndarray, model: dict = MODEL, margin: float | None = None) -> np.ndarray:
    """Bool (17,): the points whose expected clicks are lower shown than hidden, by `margin`
    (SHOW_MARGIN when None)."""
    pl, pr = probabilities(F, model)
    return pl * pr - (1.0 - pl) > (SHOW_MARGIN if margin is None else margin)


def doubt(F: np.ndarray, shown: np.ndarray, model: dict = MODEL) -> tuple[np.ndarray, np.ndarray]:
    """Two review-queue signals per point, (17,) each: the chance the point costs a click as stored
    (1 - P(labelled) x P(right) when shown, P(labelled) when hidden), and 1 - P(labelled) (a human
    leaves the joint unlabelled). They cover the clicks no re-run disagreement sees: a hidden point
    a human would place, a shown one they would remove."""
    pl, pr = probabilities(F, model)
    return np.where(np.asarray(shown, bool), 1.0 - pl * pr, pl), 1.0 - pl
