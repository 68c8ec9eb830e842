"""Which of a found person's points to show: would an annotator label it, and is the guess right?

A point costs a click either way it goes wrong: shown where the human labels nothing (an unlabel
click), hidden where they label it (it has to be placed), shown in the wrong place (a drag). So a
point is shown when P(labelled) x P(right | labelled) - (1 - P(labelled)) > SHOW_MARGIN. Both are
logistic models on what the engine knows per COCO-17 joint: MoveNet's score (the mean, as logits,
of its crop's and its mirrored crop's: mean_score), BlazePose's visibility and depth against the
joint's left/right twin, where the point is against the image edge, the person's size and
MoveNet's mean score, and the joint's group (annotators label a turned-away face or a hand behind
the back at different rates than a shoulder).

Fit on the calibration half of pose-gt-dev (calibration.assign_splits) by
`python tools/fit_point_model.py` (engine "detector", Heavy, refit with the mirrored look). The
three kinds of click against hiding MoveNet's points under 0.2: 289 -> 249 on the half it was fit
on, 188 -> 159 on the held-out half; the joint group carries most of it (without it, no better
than the threshold). MoveNet's mirrored look makes the label question easier: at the same total it
leaves far fewer unlabel clicks (docs/prefill.md), so SHOW_MARGIN = 0.1 hides a point the model is
unsure of: end to end on the cal half 3.85 clicks a person at 0 and at 0.1 (unlabel 0.84 -> 0.77),
held-out 3.90 -> 3.83 (0.73 -> 0.61); 0.15 and 0.25 cost clicks (3.91, 4.02). A point shown where
nobody labels one is also the worse error to leave in a dataset than one left to place.
The depth features (z_pair, z_pair_face), when they were added, took the held-out half 199 -> 182
(unlabel clicks 53 -> 42) and 5-fold by image over all of pose-gt-dev 440 -> 421 clicks out of
fold; a gradient-boosted model on the same features was no better (442).
"""
from __future__ import annotations

import numpy as np

from annotator.core import skeleton as sk

FEATURES = ("movenet_logit", "visibility_logit", "inside", "edge", "log_size", "mean_score",
            "g_shoulder", "g_elbow", "g_wrist", "g_hip", "g_knee", "g_ankle", "z_pair", "z_pair_face")
# COCO-17 joint -> group (0 face: nose, eyes, ears; the reference level of the one-hot)
GROUP = np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6])
PAIR = np.array(sk.COCO17_FLIP)   # left <-> right (nose: itself)
Z_CLIP = 1.5
SHOW_MARGIN = 0.1
EDGE_CLIP = 0.3

# tools/fit_point_model.py's output (pose-gt-dev, split "cal" of calibration.assign_splits over all GT images:
# 34 images, 1,375 points; refit with MoveNet's mirrored look in the score)
MODEL = {
    "mean": [-0.526371, 3.00016, 0.974545, 0.261422, -1.31976, 0.417359, 0.125091,
             0.125091, 0.125091, 0.123636, 0.125091, 0.125091, -0.000555, 0],
    "std": [1.31183, 4.10531, 0.157501, 0.08862, 0.720305, 0.124793, 0.330822,
            0.330822, 0.330822, 0.329166, 0.330822, 0.330822, 0.411685, 0.063315],
    "labelled": {"coef": [1.94222, 1.0462, 0.792937, 0.589504, 0.269772, 0.080636, 0.901298,
                          0.999883, 0.903441, 0.410007, 0.963514, 1.04904, -0.11334, -0.59549],
                 "intercept": 1.55896},
    "right": {"coef": [1.64775, 0.525577, 0, -0.342772, -0.095449, 0.52205, -0.048053, 0.325721,
                       0.163492, 0.118814, 0.238777, 0.186186, -0.267265, 0.052569],
              "intercept": 1.86167},
}


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


def mean_score(s17, mirrored17) -> np.ndarray:
    """MoveNet's score on its crop and on the mirrored crop, averaged as logits."""
    z = (_logit(s17) + _logit(mirrored17)) / 2.0
    return 1.0 / (1.0 + np.exp(-z))


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
