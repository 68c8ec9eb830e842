"""Which of a found person's points to show: would an annotator label it, and is the guess right?

A point costs a click either way it goes wrong: shown where the human labels nothing (an unlabel
click), hidden where they label it (it has to be placed), shown in the wrong place (a drag). So a
point is shown when P(labelled) x P(right | labelled) > 1 - P(labelled). Both are logistic models
on what the engine knows per COCO-17 joint: MoveNet's score, BlazePose's visibility, where the
point is against the image edge, the person's size and MoveNet's mean score, and the joint's group
(annotators label a turned-away face or a hand behind the back at different rates than a shoulder).

Fit on the calibration half of pose-gt-dev (calibration.assign_splits) by
`python tools/fit_point_model.py` (engine "detector", Heavy). The three kinds of click against
hiding MoveNet's points under 0.2: 301 -> 262 on the half it was fit on, 193 -> 186 on the held-out
half (the gain is small out of sample and depends on the split: 259 -> 236 on another split of
the same images); the joint group carries most of it (without it, no better than the threshold).
"""
from __future__ import annotations

import numpy as np

FEATURES = ("movenet_logit", "visibility_logit", "inside", "edge", "log_size", "mean_score",
            "g_shoulder", "g_elbow", "g_wrist", "g_hip", "g_knee", "g_ankle")
# COCO-17 joint -> group (0 face: nose, eyes, ears; the reference level of the one-hot)
GROUP = np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6])
EDGE_CLIP = 0.3

# tools/fit_point_model.py's output (pose-gt-dev, split "cal" of calibration.assign_splits over all GT images:
# 33 images, 1,273 points)
MODEL = {
    "mean": [-0.514968, 2.983012, 0.970935, 0.25793, -1.316539, 0.422386,
             0.125687, 0.125687, 0.125687, 0.124116, 0.125687, 0.125687],
    "std": [1.392704, 4.185742, 0.167989, 0.096187, 0.753541, 0.133295,
            0.331497, 0.331497, 0.331497, 0.329714, 0.331497, 0.331497],
    "labelled": {"coef": [1.768193, 1.596495, 0.285948, 0.478196, 0.255122, -0.036156,
                          0.889551, 1.384681, 1.2069, 0.432277, 1.264612, 1.304699],
                 "intercept": 1.685407},
    "right": {"coef": [1.383736, 1.327499, -0.247933, -0.017413, 0.206113, 0.689599,
                       -0.053201, 0.722385, 0.668658, 0.000927, 0.750165, 0.585119],
              "intercept": 1.564924},
}


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


def features(xy17: np.ndarray, s17: np.ndarray, vis17: np.ndarray, box, width: int, height: int) -> np.ndarray:
    """(17, len(FEATURES)) for one person: its COCO-17 points in image pixels, MoveNet's scores,
    BlazePose's visibilities, the detector's box (x0, y0, x1, y1, ...) and the image size."""
    xy17 = np.asarray(xy17, np.float64)
    s17 = np.asarray(s17, np.float64)
    scale = max(float(box[2]) - float(box[0]), float(box[3]) - float(box[1]), 1.0)
    x, y = xy17[:, 0], xy17[:, 1]
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    edge = np.minimum.reduce([x, width - 1 - x, y, height - 1 - y]) / scale
    groups = (GROUP[:, None] == np.arange(1, 7)[None, :]).astype(np.float64)
    cols = [_logit(s17), _logit(vis17), inside.astype(np.float64), np.clip(edge, -EDGE_CLIP, EDGE_CLIP),
            np.full(17, np.log(scale / max(width, height, 1))), np.full(17, float(np.mean(s17)))]
    return np.column_stack(cols + [groups])


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
