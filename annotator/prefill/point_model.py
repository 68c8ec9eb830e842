"""Which of a found person's points to show: would an annotator label it, and is the guess right?

A point costs a click either way it goes wrong: shown where the human labels nothing (an unlabel
click), hidden where they label it (it has to be placed), shown in the wrong place (a drag). So a
point is shown when P(labelled) x P(right | labelled) > 1 - P(labelled). Both are logistic models
on what the engine knows per COCO-17 joint: MoveNet's score, BlazePose's visibility and depth
against the joint's left/right twin, where the point is against the image edge, the person's size
and MoveNet's mean score, and the joint's group (annotators label a turned-away face or a hand
behind the back at different rates than a shoulder).

Fit on the calibration half of pose-gt-dev (calibration.assign_splits) by
`python tools/fit_point_model.py` (engine "detector", Heavy, refit after MoveNet's second look
on its own square). The three kinds of click against hiding MoveNet's points under 0.2, on the
current engine: 302 -> 261 on the half it was fit on, 193 -> 160 on the held-out half; the joint
group carries most of it (without it, no better than the threshold). The depth features (z_pair,
z_pair_face), when they were added, took the held-out half 199 -> 182 (unlabel clicks 53 -> 42) and 5-fold by image over all of
pose-gt-dev 440 -> 421 clicks out of fold; a gradient-boosted model on the same features was no
better (442).
"""
from __future__ import annotations

import numpy as np

FEATURES = ("movenet_logit", "visibility_logit", "inside", "edge", "log_size", "mean_score",
            "g_shoulder", "g_elbow", "g_wrist", "g_hip", "g_knee", "g_ankle", "z_pair", "z_pair_face")
# COCO-17 joint -> group (0 face: nose, eyes, ears; the reference level of the one-hot)
GROUP = np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6])
PAIR = np.array([0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15])   # left <-> right (nose: itself)
Z_CLIP = 1.5
EDGE_CLIP = 0.3

# tools/fit_point_model.py's output (pose-gt-dev, split "cal" of calibration.assign_splits over all GT images:
# 34 images, 1,375 points; refit after MoveNet's second look on a crop from its own points)
MODEL = {
    "mean": [-0.48312, 2.97463, 0.973818, 0.260802, -1.317, 0.425421,
             0.125091, 0.125091, 0.125091, 0.123636, 0.125091, 0.125091,
             -0.000555, 0],
    "std": [1.33504, 4.16312, 0.159676, 0.089924, 0.72269, 0.12326,
            0.330822, 0.330822, 0.330822, 0.329166, 0.330822, 0.330822,
            0.413817, 0.063982],
    "labelled": {"coef": [1.73487, 1.40359, 0.760611, 0.594443, 0.213694, 0.155296,
                          0.930137, 1.18175, 1.07964, 0.418254, 1.12577, 1.13614,
                          -0.021179, -0.594241],
                 "intercept": 1.5364},
    "right": {"coef": [1.48891, 0.786826, 0, -0.454768, 0.0362, 0.367484,
                       -0.070457, 0.434133, 0.328726, 0.160772, 0.464523, 0.325922,
                       -0.204291, 0.004933],
              "intercept": 1.85959},
}


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


def features(xy17: np.ndarray, s17: np.ndarray, vis17: np.ndarray, z17: np.ndarray, box, width: int,
             height: int) -> np.ndarray:
    """(17, len(FEATURES)) for one person: its COCO-17 points in image pixels, MoveNet's scores,
    BlazePose's visibilities and depths (z, pixels), the detector's box (x0, y0, x1, y1, ...) and
    the image size.

    The depth features are how much farther from the camera a point is than its left/right twin
    (box units, clipped at Z_CLIP against the odd collapsed pose), once for every joint and once
    more for the face: the far ear or eye of a head in profile is what COCO's annotators leave
    unlabelled and BlazePose's visibility still calls seen (the fit puts its weight on the face
    term for P(labelled); the all-joints term lowers P(right) a little for a far limb).
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
    return np.column_stack(cols + [groups, z_pair, z_pair * (GROUP == 0)])


def probabilities(F: np.ndarray, model: dict = MODEL) -> tuple[np.ndarray, np.ndarray]:
    """(P(labelled), P(right | labelled)) per row of features()."""
    Z = (F - np.asarray(model["mean"])) / np.asarray(model["std"])

    def p(part):
        return 1.0 / (1.0 + np.exp(-np.clip(Z @ np.asarray(part["coef"]) + part["intercept"], -40, 40)))
    return p(model["labelled"]), p(model["right"])


def show(F: np.ndarray, model: dict = MODEL) -> np.ndarray:
    """Bool (17,): the points whose expected clicks are lower shown than hidden."""
    pl, pr = probabilities(F, model)
    return pl * pr > 1.0 - pl


def doubt(F: np.ndarray, shown: np.ndarray, model: dict = MODEL) -> tuple[np.ndarray, np.ndarray]:
    """Two review-queue signals per point, (17,) each: the chance the point costs a click as stored
    (1 - P(labelled) x P(right) when shown, P(labelled) when hidden), and 1 - P(labelled) (a human
    leaves the joint unlabelled). They cover the clicks no re-run disagreement sees: a hidden point
    a human would place, a shown one they would remove."""
    pl, pr = probabilities(F, model)
    return np.where(np.asarray(shown, bool), 1.0 - pl * pr, pl), 1.0 - pl
