"""Suspicion: for every predicted point, the probability that a human will have to fix it.

The annotator's time is the product's cost, so the review queue must put the
wrong points first. No single number knows that: MediaPipe's visibility says
whether a joint is hidden, not whether the guess is good. So several signals
are computed per point and combined by a calibrated logistic model
(calibration.py), fit where the truth is known (verified points, or a GT file):

- model:   1 - confidence (visibility x presence), points outside the image,
           the person's mean confidence, detection score and size;
- re-runs: the landmark model again on mirrored, zoomed-in and shifted crops of
           the same person and on zoomed crops of its parts (TTA): a point it cannot
           place consistently is likely wrong (`tta`, `tta_max`, `flip`); when the mirrored run fits
           the *swapped* labels better, left/right are likely swapped (`swap`);
           and the network's own heatmap at the point: its peak (`heat`) and spread (`heat_spread`);
- shape:   bone lengths against learned statistics (torso-normalised),
           left/right symmetry, joint angles outside their range, limbs
           crossed against the torso's left/right axis, left on top of right;
- crowd:   overlap with the other people in the image;
- time:    jumps between neighbouring video frames of the same person;
- rounds:  disagreement between the current model and the previous round's.

Distances are in "OKS units" d / (2 sigma_i sqrt(A)) (A: the person's area),
the scale of the needs-fixing rule, so a feature means the same for an eye
and a hip, a child and a giant. Which signals enter the combination is chosen
on the calibration data (nested cross-validation), not by hand. Signals the
calibration data cannot weigh (video and round signals on a photo set) enter
as a documented prior: two predictions that cannot both be right make one of
them wrong with probability up to 1/2, combined by noisy-OR.

Re-run signals cost 9 landmark runs per person (8 crops + 1 for the heatmap when pre-fill's own
run is not at hand; ~105-160 ms CPU), so they are computed once
(pre-fill hook tta_for_poses/store_prefill_tta, or `suspicion --tta`) and
kept per person in the project's kv table, tied to the points they judged.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from annotator.core import skeleton as sk
from annotator.review.calibration import Calibration
from annotator.core.model import Person

# Signals, with what they measure (the evaluate report prints these next to their figures).
SIGNALS: dict[str, str] = {
    "conf": "1 - model confidence (visibility x presence)",
    "outside": "how far the point lies outside the image",
    "person_conf": "1 - the person's mean confidence",
    "person_score": "1 - the person's detection score",
    "small": "the person is small in pixels (log of 100 px over its size)",
    "joint_prior": "how often this joint needs fixing (learned base rate)",
    "tta": "mean distance to the predictions on mirrored/rescaled/shifted crops and zoomed part crops",
    "tta_max": "largest distance to a transformed-crop prediction",
    "flip": "distance to the mirrored-crop prediction (left/right swapped back)",
    "swap": "mirrored-crop prediction matches the swapped labels better (per left/right pair)",
    "person_swap": "the same, averaged over the person's limbs",
    "person_tta": "the person's median transformed-crop distance",
    "heat": "1 - the landmark model's heatmap peak at the point (localisation confidence)",
    "heat_spread": "how spread out the point's heatmap is (OKS units): a blurred peak is an unsure one",
    "engine_gap": "distance between BlazePose's point and the per-box pose model's (MoveNet), before fusing",
    "engine_conf": "1 - the per-box pose model's score at the point (its COCO joint)",
    "hidden": "the pre-fill stored the point as not labelled, its guess kept (a human may place it)",
    "label_doubt": "the pre-fill's point model: chance a human leaves this joint unlabelled",
    "point_doubt": "the pre-fill's point model: chance the point's shown/hidden state and place cost a click",
    "bone": "bone lengths against the skeleton's statistics (torso-normalised)",
    "sym": "left/right bone length mismatch",
    "angle": "joint angle outside its plausible range",
    "cross": "limb crossed against the torso's left/right axis",
    "collapse": "left and right point on top of each other",
    "crowd": "the person's box overlaps another person's (largest IoU)",
    "near_other": "another person's point lies close to this one",
    "temporal": "jump against the neighbouring video frames",
    "prev_round": "disagreement with the previous round's model",
}
# One value per person (repeated over its points): these rank whole people.
PERSON_SIGNALS = ("person_conf", "person_score", "person_swap", "person_tta", "small", "crowd")
# Signals only the re-runs on other views make (NaN when pre-fill ran without them, prefill.tta off)
RERUN_SIGNALS = ("tta", "tta_max", "flip", "swap", "person_swap", "person_tta")
# Signals a model or engine may not have (NaN: no say either way): the heatmap, the engine's two models
OPTIONAL_TTA = ("heat", "heat_spread", "engine_gap", "engine_conf", "point_doubt", "label_doubt")
# Signals that need a model's output beyond the points (the rest is arithmetic on stored points),
# stored per person with the points they were made for.
TTA_SIGNALS = RERUN_SIGNALS + OPTIONAL_TTA
# Signals without calibration data on photo sets: noisy-OR prior unless a calibration weighs them.
PRIOR_SIGNALS = ("temporal", "prev_round")

KV_CALIBRATION = "suspicion.calibration"
KV_SIGNALS = "suspicion.signals:"      # + person id: stored TTA features
TTA_VERSION = 8                        # bump when TTA features change: older records count as missing


_HIPS, _SHOULDERS = (23, 24), (11, 12)
_LIMB_PAIRS = tuple((l, r) for l, r in sk.LR_PAIRS if l >= 11)          # arms, hands, legs, feet
_JOINT_ANALOGUE = {  # for the joint prior: non-COCO points borrow a COCO joint's base rate
    **{i: 0 for i in (9, 10)}, 1: 2, 3: 2, 4: 5, 6: 5,
    17: 15, 19: 15, 21: 15, 18: 16, 20: 16, 22: 16, 29: 27, 31: 27, 30: 28, 32: 28,
}


# -- geometry helpers -------------------------------------------------------------------

def person_area(xy: np.ndarray, mask: np.ndarray | None = None) -> float:
    """A stand-in for the person's segment area (COCO's OKS scale): half the points' box."""
    m = np.ones(len(xy), bool) if mask is None else mask
    if m.sum() < 2:
        return 1.0
    w, h = np.ptp(xy[m], axis=0)
    return max(0.5 * float(w * h), 1.0)


def oks_units(d: np.ndarray, area: float) -> np.ndarray:
    """Distance in units where exp(-u^2/2) is the point's OKS term."""
    return np.asarray(d, np.float64) / (2.0 * sk.SIGMAS * math.sqrt(area))


def torso_length(xy: np.ndarray) -> float:
    """Shoulder-centre to hip-centre distance, floored by the shoulder and hip widths."""
    sh, hp = xy[list(_SHOULDERS)].mean(0), xy[list(_HIPS)].mean(0)
    t = float(np.linalg.norm(sh - hp))
    widths = max(float(np.linalg.norm(xy[11] - xy[12])), float(np.linalg.norm(xy[23] - xy[24])))
    return max(t, 0.7 * widths, 1.0)


@dataclass
class ShapeStats:
    """Robust statistics of log(bone length / torso length) per skeleton edge, and of left/right ratios."""
    edge_mu: np.ndarray
    edge_sd: np.ndarray
    sym_sd: np.ndarray            # per LR edge pair
    n: int = 0

    def to_json(self) -> dict:
        return {"edge_mu": np.round(self.edge_mu, 4).tolist(), "edge_sd": np.round(self.edge_sd, 4).tolist(),
                "sym_sd": np.round(self.sym_sd, 4).tolist(), "n": self.n}

    @classmethod
    def from_json(cls, d: dict) -> "ShapeStats":
        return cls(np.asarray(d["edge_mu"], float), np.asarray(d["edge_sd"], float),
                   np.asarray(d["sym_sd"], float), int(d.get("n", 0)))


def _sym_edge_pairs() -> list[tuple[int, int]]:
    """Pairs of edge indices that mirror each other (left arm bone, right arm bone)."""
    index = {tuple(sorted(e)): k for k, e in enumerate(sk.EDGES)}
    out = []
    for k, (a, b) in enumerate(sk.EDGES):
        m = tuple(sorted((sk.FLIP[a], sk.FLIP[b])))
        j = index.get(m)
        if j is not None and k < j and m != tuple(sorted((a, b))):
            out.append((k, j))
    return out


SYM_EDGES = _sym_edge_pairs()


def _edge_logs(xy: np.ndarray, torso: float | None = None) -> np.ndarray:
    """log(bone length / torso length) per skeleton edge."""
    e = np.asarray(sk.EDGES)
    lens = np.linalg.norm(xy[e[:, 0]] - xy[e[:, 1]], axis=1)
    return np.log(np.maximum(lens, 1e-3) / (torso_length(xy) if torso is None else torso))


def learn_shape_stats(poses: Iterable[np.ndarray]) -> ShapeStats:
    """Median and MAD-based spread from many (33, 2) poses (robust to the wrong ones among them)."""
    logs = np.array([_edge_logs(np.asarray(p, float)) for p in poses])
    if len(logs) < 5:
        raise ValueError(f"need at least 5 poses to learn shape statistics, got {len(logs)}")
    mu = np.median(logs, 0)
    sd = 1.4826 * np.median(np.abs(logs - mu), 0) + 0.05
    sym = np.array([logs[:, a] - logs[:, b] for a, b in SYM_EDGES]).T
    sym_sd = 1.4826 * np.median(np.abs(sym), 0) + 0.05
    return ShapeStats(mu, sd, sym_sd, len(logs))


# -- features -----------------------------------------------------------------------------

@dataclass
class Extras:
    """What a person's features need beyond its own points."""
    tta: dict[str, np.ndarray] | None = None      # stored TTA features (see tta_features)
    temporal: np.ndarray | None = None           # (33,) OKS units, NaN where unknown
    prev_round: np.ndarray | None = None         # (33,) OKS units, NaN where unknown
    joint_prior: np.ndarray | None = None        # (33,) logit base rate
    others: list | None = None                   # (33, 2) points of the other people in the image


def _incidence(groups) -> np.ndarray:
    """(len(groups), 33) 0/1: which points each group (an edge, an angle's two points, ...) touches."""
    m = np.zeros((len(groups), sk.N))
    for k, pts in enumerate(groups):
        m[k, list(pts)] = 1.0
    return m


_EDGE_INC = _incidence(sk.EDGES)
_SYM_INC = _incidence([set(sk.EDGES[ka]) | set(sk.EDGES[kb]) for ka, kb in SYM_EDGES])
_ANG = np.array([(a, v, b) for _, a, v, b in sk.ANGLES])
_ANG_RANGE = np.array([sk.ANGLE_RANGE[name.split("_", 1)[1]] for name, *_ in sk.ANGLES])
_ANG_INC = _incidence([(v, b) for _, _, v, b in sk.ANGLES])
_LIMB = np.array(_LIMB_PAIRS)


def shape_features(xy: np.ndarray, stats: ShapeStats) -> dict[str, np.ndarray]:
    """bone, sym, angle, cross, collapse for one 33-point pose (each point: the worst of the edges,
    edge pairs, angles or limb pairs it belongs to; array operations, as update_suspicion runs it
    for every person of a project)."""
    t = torso_length(xy)
    logs = _edge_logs(xy, t)
    z = np.abs(logs - stats.edge_mu) / stats.edge_sd
    bone = (z[:, None] * _EDGE_INC).max(0)
    ka, kb = np.array(SYM_EDGES).T
    sym = ((np.abs(logs[ka] - logs[kb]) / stats.sym_sd)[:, None] * _SYM_INC).max(0)
    u, w = xy[_ANG[:, 0]] - xy[_ANG[:, 1]], xy[_ANG[:, 2]] - xy[_ANG[:, 1]]
    nu, nw = np.sqrt((u * u).sum(1)), np.sqrt((w * w).sum(1))
    ok = (nu >= 1e-6) & (nw >= 1e-6)
    with np.errstate(invalid="ignore", divide="ignore"):
        deg = np.degrees(np.arccos(np.clip((u * w).sum(1) / (nu * nw), -1, 1)))
    out = np.where(ok, np.maximum(np.maximum(_ANG_RANGE[:, 0] - deg, deg - _ANG_RANGE[:, 1]), 0.0) / 30.0, 0.0)
    angle = (out[:, None] * _ANG_INC).max(0)
    # left/right axis of the torso: from the right to the left shoulder/hip
    axis = (xy[11] - xy[12] + xy[23] - xy[24]) / 2.0
    an = np.linalg.norm(axis)
    d = xy[_LIMB[:, 0]] - xy[_LIMB[:, 1]]
    cross, collapse = np.zeros(sk.N), np.zeros(sk.N)
    if an > 1e-6:
        c = np.maximum(-(d @ axis / an) / t, 0.0)
        cross[_LIMB[:, 0]], cross[_LIMB[:, 1]] = c, c
    col = np.exp(-np.sqrt((d * d).sum(1)) / (0.1 * t))
    collapse[_LIMB[:, 0]], collapse[_LIMB[:, 1]] = col, col
    return {"bone": np.log1p(bone), "sym": np.log1p(sym), "angle": angle, "cross": cross, "collapse": collapse}


def torso_area(xy: np.ndarray) -> float:
    """The person's OKS scale from its torso ((2.2 torso)^2 ~ a standing person's box / 2).

    The points' box shrinks and grows with the very points being judged (a
    folded arm, a missed leg); the torso does not. On pose-gt-dev it ranks
    the TTA disagreement a little better on both halves (recall@20% 0.648 /
    0.615 against 0.614 / 0.585 with the box; notes/close_issue4.md).
    """
    return (2.2 * torso_length(np.asarray(xy, float))) ** 2


def tta_area(xy: np.ndarray, width: int, height: int) -> float:
    """The OKS scale the re-run distances are measured in: the geometric mean of the torso's
    (torso_area) and of the box of the points inside the image (person_area, clipped to it).

    Ground truth judges a point against the person's *visible* segment area: a person cut by the
    image border or half hidden gets a small area, so a few pixels are already too many. The
    torso alone misses that; the box alone moves with the very points being judged. The clipped
    box follows pose-gt-dev's areas closer (log-ratio sd 0.53 against the torso's 0.66), and the
    mean of the two ranks the needs-fixing points better than the torso alone on the swapped half
    and in 5-fold cross-validation, the same on the held-out half (notes/close_issue4_s10.md).
    """
    xy = np.asarray(xy, np.float64)[:sk.N]
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    box = person_area(np.clip(xy, 0.0, [float(width), float(height)]), inside if inside.sum() >= 3 else None)
    return math.sqrt(torso_area(xy) * box)


def tta_features(xy: np.ndarray, variants: dict[str, np.ndarray], heat: np.ndarray | None = None,
                 area: float | None = None, heat_spread_px: np.ndarray | None = None,
                 engine_gap_px: np.ndarray | None = None, engine_conf: np.ndarray | None = None,
                 point_doubt: np.ndarray | None = None, label_doubt: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Disagreement of `xy` with each transformed-crop prediction (already mapped back, labels unswapped).

    Returns per-point tta, tta_max, flip, swap, heat (1 - heatmap peak, NaN when
    unknown) and per-person person_tta, person_swap (repeated over the 33
    points): the form stored per person. No variants (pre-fill without the re-runs): the re-run
    signals are NaN (unknown, not "no disagreement") and only the free ones are filled.
    """
    area = torso_area(xy) if area is None else area
    units = {k: oks_units(np.linalg.norm(np.asarray(v) - xy, axis=1), area) for k, v in variants.items()}
    stack = np.array(list(units.values())) if units else np.zeros((1, sk.N))
    out = {"tta": np.log1p(stack.mean(0)), "tta_max": np.log1p(stack.max(0))}
    flip = variants.get("flip")
    swap = np.zeros(sk.N)
    if flip is not None:
        flip = np.asarray(flip)
        out["flip"] = np.log1p(units["flip"])
        for l, r in sk.LR_PAIRS:
            same = np.linalg.norm(xy[l] - flip[l]) + np.linalg.norm(xy[r] - flip[r])
            cross = np.linalg.norm(xy[l] - flip[r]) + np.linalg.norm(xy[r] - flip[l])
            swap[l] = swap[r] = (same - cross) / (same + cross + 1e-6)
    else:
        out["flip"] = np.zeros(sk.N)
    out["swap"] = swap
    limbs = [l for l, _ in _LIMB_PAIRS]
    out["person_swap"] = np.full(sk.N, float(np.mean(swap[limbs])))
    out["person_tta"] = np.full(sk.N, float(np.median(out["tta"])))
    if not units:
        out.update({k: np.full(sk.N, np.nan) for k in RERUN_SIGNALS})
    out["heat"] = np.full(sk.N, np.nan) if heat is None else 1.0 - np.asarray(heat, float)
    out["heat_spread"] = np.full(sk.N, np.nan) if heat_spread_px is None else \
        np.log1p(oks_units(np.asarray(heat_spread_px, float), area))
    # two independent models disagreeing on a point is a reason to look at it
    out["engine_gap"] = np.full(sk.N, np.nan) if engine_gap_px is None else \
        np.log1p(oks_units(np.asarray(engine_gap_px, float), area))
    out["engine_conf"] = np.full(sk.N, np.nan) if engine_conf is None else 1.0 - np.asarray(engine_conf, float)
    out["point_doubt"] = np.full(sk.N, np.nan) if point_doubt is None else np.asarray(point_doubt, float)
    out["label_doubt"] = np.full(sk.N, np.nan) if label_doubt is None else np.asarray(label_doubt, float)
    return out


def features(p: Person, width: int, height: int, stats: ShapeStats, extras: Extras | None = None) -> dict[str, np.ndarray]:
    """Every signal of SIGNALS for one person, as (33,) arrays (0 = no evidence of a problem)."""
    extras = extras or Extras()
    xy = p.xy
    conf = np.where(np.isfinite(p.conf), p.conf, 0.0)
    area = person_area(xy, p.labelled if p.labelled.sum() >= 2 else None)
    f: dict[str, np.ndarray] = {"conf": 1.0 - conf}
    dx = np.maximum(np.maximum(-xy[:, 0], xy[:, 0] - width), 0.0) if width else np.zeros(sk.N)
    dy = np.maximum(np.maximum(-xy[:, 1], xy[:, 1] - height), 0.0) if height else np.zeros(sk.N)
    f["outside"] = np.log1p(oks_units(np.hypot(dx, dy), area))
    f["hidden"] = (~p.labelled & np.isfinite(p.conf)).astype(np.float64)
    f["person_conf"] = np.full(sk.N, 1.0 - float(conf.mean()))
    score = p.score if p.score is not None and np.isfinite(p.score) else float(conf.mean())
    f["person_score"] = np.full(sk.N, 1.0 - float(score))
    f["small"] = np.full(sk.N, math.log(100.0 / math.sqrt(area)))
    f["joint_prior"] = np.zeros(sk.N) if extras.joint_prior is None else np.asarray(extras.joint_prior, float)
    tta = extras.tta or {}
    for k in TTA_SIGNALS:
        f[k] = np.asarray(tta[k], float) if k in tta else np.zeros(sk.N)
    f.update(shape_features(xy, stats))
    f.update(crowd_features(xy, extras.others or []))
    for k in PRIOR_SIGNALS:
        v = getattr(extras, k)
        f[k] = np.zeros(sk.N) if v is None else np.log1p(np.nan_to_num(np.asarray(v, float), nan=0.0))
    return f


def _box(xy: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0 = xy.min(0)
    x1, y1 = xy.max(0)
    return float(x0), float(y0), float(x1), float(y1)


def crowd_features(xy: np.ndarray, others: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Overlap with other people: in a crowd the model's points wander to the neighbour."""
    crowd = 0.0
    near = np.zeros(sk.N)
    if others:
        a = _box(xy)
        area_a = max((a[2] - a[0]) * (a[3] - a[1]), 1.0)
        t = torso_length(xy)
        for o in others:
            b = _box(o)
            iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
            inter = max(iw, 0.0) * max(ih, 0.0)
            union = area_a + max((b[2] - b[0]) * (b[3] - b[1]), 1.0) - inter
            crowd = max(crowd, inter / union)
            d = np.linalg.norm(xy[:, None, :] - np.asarray(o)[None, :, :], axis=2).min(1)
            near = np.maximum(near, np.exp(-d / (0.1 * t)))
    return {"crowd": np.full(sk.N, crowd), "near_other": near}


def prior_probability(units: np.ndarray) -> np.ndarray:
    """P(wrong) from a disagreement with another prediction that the calibration could not weigh.

    Two guesses u OKS units apart cannot both be within OKS 0.5 of the truth
    once u is large; we do not know which one is wrong, hence at most 1/2.
    """
    u = np.nan_to_num(np.asarray(units, float), nan=0.0)
    return 0.5 * (1.0 - np.exp(-(u / 2.0) ** 2 / 2.0))


def combine(feats: dict[str, np.ndarray], cal: Calibration) -> np.ndarray:
    """P(needs fixing) per point: calibrated model, noisy-OR with uncalibrated prior signals."""
    p = cal.predict(feats)
    for k in PRIOR_SIGNALS:
        if k in cal.features or k not in feats:
            continue
        q = prior_probability(np.expm1(feats[k]))
        p = 1.0 - (1.0 - p) * (1.0 - q)
    return p


# -- test-time augmentation -----------------------------------------------------------------











def save_tta(store, person_id: int, xy: np.ndarray, feats: dict[str, np.ndarray]) -> None:
    """Keep a person's TTA features with the points they were computed for (1 px grid)."""
    d = {"v": TTA_VERSION, "xy": np.round(np.asarray(xy, float)).astype(int).tolist()}
    for k in TTA_SIGNALS:
        v = np.asarray(feats[k], float)
        if np.isnan(v).all():
            continue
        d[k] = round(float(v[0]), 4) if k.startswith("person_") else np.round(v, 3).tolist()
    store.set_kv(KV_SIGNALS + str(int(person_id)), d)


def tta_coverage(store) -> dict[str, int]:
    """People by the version of their stored re-run features: `tta_current`, `tta_older` (made by
    an earlier TTA_VERSION: those people are scored without them until `suspicion --tta`
    recomputes them), `tta_none` (pre-filled with --no-tta, imported, drawn by hand). Current
    features whose points have moved since are not used either (load_tta); `suspicion --tta`
    remakes those too, and they are not counted apart here."""
    out = {"tta_current": 0, "tta_older": 0, "tta_none": 0}
    for v, n in store.db.execute(
            "SELECT json_extract(k.value, '$.v'), count(*) FROM persons q LEFT JOIN kv k ON k.key = ? || q.id"
            " WHERE q.deleted = 0 GROUP BY 1", (KV_SIGNALS,)):
        out["tta_none" if v is None else "tta_current" if v == TTA_VERSION else "tta_older"] += n
    return out


def load_tta(store, person_id: int, xy: np.ndarray, verified: np.ndarray | None = None) -> dict[str, np.ndarray] | None:
    """Stored TTA features, or None when missing or stale.

    Stale: an unverified point moved since (a new prediction, a moved person);
    points a human verified may differ, they leave the queue anyway.
    """
    d = store.get_kv(KV_SIGNALS + str(int(person_id)))
    if not d or d.get("v") != TTA_VERSION or "xy" not in d:
        return None
    base = np.asarray(d["xy"], float)
    todo = np.ones(sk.N, bool) if verified is None else ~np.asarray(verified, bool)
    if base.shape != (sk.N, 2) or (todo.any() and np.abs(base[todo] - np.asarray(xy)[todo]).max() > 1.0):
        return None
    out = {}
    views = "tta" in d            # False: pre-fill without the re-runs (prefill.tta off) kept the free signals
    for k in TTA_SIGNALS:
        v = d.get(k)
        if v is None:
            if k in OPTIONAL_TTA or not views:   # no heatmaps, no per-box pose model, no re-runs (RERUN_SIGNALS)
                out[k] = np.full(sk.N, np.nan)
                continue
            return None
        out[k] = np.full(sk.N, float(v)) if k.startswith("person_") else np.asarray(v, float)
    return out


# -- the fitted model ------------------------------------------------------------------------------

@dataclass
class SuspicionModel:
    """Everything scoring needs: two calibrations (with and without TTA), shape stats, joint base rates."""
    full: Calibration
    cheap: Calibration
    stats: ShapeStats
    joint_prior: np.ndarray
    meta: dict = field(default_factory=dict)

    def score(self, feats: dict[str, np.ndarray], has_tta: bool) -> np.ndarray:
        """With the re-run features, the full calibration, unless one of its signals is unknown for
        the whole person (an engine without a per-box pose model, features recomputed by
        `suspicion --tta`): it would have no say and leave every point alike, so the cheap one scores."""
        usable = has_tta and all(np.isfinite(np.asarray(feats.get(k, np.nan), float)).any()
                                 for k in self.full.features)
        return combine(feats, self.full if usable else self.cheap)

    def uses_tta(self) -> bool:
        return any(f in TTA_SIGNALS for f in self.full.features)

    def to_json(self) -> dict:
        return {"format": "pose-annotator-suspicion-model/1", "full": self.full.to_json(),
                "cheap": self.cheap.to_json(), "stats": self.stats.to_json(),
                "joint_prior": np.round(self.joint_prior, 4).tolist(), "meta": self.meta}

    @classmethod
    def from_json(cls, d: dict, where: str = "suspicion model") -> "SuspicionModel":
        if not isinstance(d, dict) or d.get("format") != "pose-annotator-suspicion-model/1":
            raise ValueError(f"{where}: not a pose-annotator suspicion model")
        return cls(Calibration.from_json(d["full"], where), Calibration.from_json(d["cheap"], where),
                   ShapeStats.from_json(d["stats"]), np.asarray(d["joint_prior"], float), dict(d.get("meta", {})))


def default_model() -> SuspicionModel:
    """The model shipped with the package (fit on the calibration half of pose-gt-dev)."""
    from annotator.review.default_model import MODEL
    return SuspicionModel.from_json(MODEL, "annotator/suspicion_default.py")


def load_model(store) -> SuspicionModel:
    """The project's own calibration when it has one, else the shipped default."""
    d = store.get_kv(KV_CALIBRATION)
    if d:
        try:
            return SuspicionModel.from_json(d, f"{store.path}: kv {KV_CALIBRATION}")
        except (ValueError, KeyError) as e:
            from annotator.core.errors import UserError
            raise UserError(str(e)) from None
    return default_model()


def save_model(store, model: SuspicionModel) -> None:
    store.set_kv(KV_CALIBRATION, model.to_json())


# -- per-project signals -------------------------------------------------------------------------------

def _video_neighbours(store, image_ids: set[int] | None = None, max_gap: int = 10) -> dict[int, tuple]:
    """image id -> ((prev id, gap) | None, (next id, gap) | None) for video frames."""
    rows = store.db.execute("SELECT id, source_id, frame_index FROM images WHERE frame_index IS NOT NULL"
                            " AND status='done' ORDER BY source_id, frame_index").fetchall()
    out = {}
    for k, (iid, src, fi) in enumerate(rows):
        if image_ids is not None and iid not in image_ids:
            continue
        prev = rows[k - 1] if k > 0 and rows[k - 1][1] == src and fi - rows[k - 1][2] <= max_gap else None
        nxt = rows[k + 1] if k + 1 < len(rows) and rows[k + 1][1] == src and rows[k + 1][2] - fi <= max_gap else None
        out[iid] = ((prev[0], fi - prev[2]) if prev else None, (nxt[0], nxt[2] - fi) if nxt else None)
    return out


def _same_person(p: Person, others: list[Person], min_oks: float = 0.3) -> Person | None:
    if p.track_id is not None:
        for q in others:
            if q.track_id == p.track_id:
                return q
    from annotator.core.importing import oks
    best = max(others, key=lambda q: oks(p, q), default=None)
    return best if best is not None and oks(p, best) >= min_oks else None


def temporal_units(p: Person, prev: tuple[Person, int] | None, nxt: tuple[Person, int] | None) -> np.ndarray | None:
    """OKS-unit distance of each point from where its neighbours in time put it.

    With frames on both sides: linear interpolation between them. With one:
    that frame's point moved by the person's median motion (a walking person
    is not suspicious, one wrist jumping away is).
    """
    if prev is None and nxt is None:
        return None
    area = person_area(p.xy)
    if prev is not None and nxt is not None:
        (a, ga), (b, gb) = prev, nxt
        expect = a.xy + (b.xy - a.xy) * (ga / (ga + gb))
    else:
        q = (prev or nxt)[0]
        shift = np.median(p.xy - q.xy, axis=0)
        expect = q.xy + shift
    return oks_units(np.linalg.norm(p.xy - expect, axis=1), area)


def previous_round(store, person: Person) -> np.ndarray | None:
    """OKS-unit distance between each unverified point and the previous model run's guess.

    The previous guess is the state a model's latest action replaced: the
    person's own state before a re-prediction, or (for a fresh pre-fill that
    replaced everybody) the best-matching person the run deleted.
    """
    r = store.db.execute(
        "SELECT a.id, a.command FROM changes c JOIN actions a ON a.id=c.action_id"
        " WHERE c.person_id=? AND a.actor LIKE 'model:%' ORDER BY a.id DESC LIMIT 1", (person.id,)).fetchone()
    if r is None:
        return None
    from annotator.core.store import _unpack
    aid, command = r
    if command == "repredict":
        b = store.db.execute("SELECT before FROM changes WHERE action_id=? AND person_id=?",
                             (aid, person.id)).fetchone()
        prev = _unpack(b[0]) if b and b[0] else None
    else:
        olds = [_unpack(b) for (b,) in store.db.execute(
            "SELECT before FROM changes WHERE action_id=? AND after IS NULL AND before IS NOT NULL", (aid,))]
        prev = _same_person(person, olds) if olds else None
    if prev is None:
        return None
    d = oks_units(np.linalg.norm(person.xy - prev.xy, axis=1), person_area(person.xy))
    return np.where(person.verified | prev.verified, np.nan, d)


def _image_ids(store, image_ids) -> list[int]:
    if image_ids is None:
        return [r[0] for r in store.db.execute(
            "SELECT DISTINCT q.image_id FROM persons q WHERE q.deleted=0 ORDER BY q.image_id")]
    return [int(i) for i in image_ids]


def update_suspicion(project, image_ids: Iterable[int] | None = None, model: SuspicionModel | None = None,
                     progress=None, chunk: int = 500) -> dict:
    """Recompute and store every point's suspicion (after a pre-fill, a new model, or edits).

    Uses the stored TTA features (compute_tta makes missing ones); people
    without them are scored by the calibration fit without those signals.
    Verified points get 0: nothing left to find there.
    """
    store = project.store
    model = model or load_model(store)
    ids = _image_ids(store, image_ids)
    t0 = time.perf_counter()
    summary = {"images": len(ids), "people": 0, "people_with_tta": 0, "seconds": 0.0}
    for k in range(0, len(ids), chunk):
        part = ids[k:k + chunk]
        cands = collect(project, part, include_empty=False)
        rows = []
        for people, cs in zip(featurize(cands, model).values(), cands.values()):
            for p, c in zip(people, cs):
                rows.extend((p.id, i, float(p.suspicion[i])) for i in range(sk.N))
                summary["people"] += 1
                summary["people_with_tta"] += int(c.extras.tta is not None)
        store.set_suspicion(rows)
        if progress:
            progress(len(part))
    from annotator.review.missing import update_missing
    summary["images_maybe_missing_people"] = update_missing(store, None if image_ids is None else ids)
    summary["seconds"] = time.perf_counter() - t0
    return summary


class Rescore:
    """Scores the images the watched sessions commit to, when finish() is called.

    Points that change outside pre-fill and distillation (an import, a CVAT
    pull) keep the queue right: the changed images are re-scored with the
    project's model (people whose points moved lose their re-run features,
    which were made for the old points, and are scored without them).
    """

    def __init__(self, project):
        self.project = project
        self.images: set[int] = set()

    def watch(self, session):
        session.listeners.append(self.images.update)
        return session

    def finish(self) -> dict | None:
        if not self.images:
            return None
        images, self.images = sorted(self.images), set()
        return update_suspicion(self.project, images)












# -- calibration against known truth ---------------------------------------------------------------

@dataclass
class Candidate:
    """A predicted person with what its features need (before any model is applied)."""
    person: Person
    extras: Extras
    width: int
    height: int


def collect(project, image_ids: Iterable[int] | None = None, include_empty: bool = True) -> dict[str, list[Candidate]]:
    """file name -> the image's current people with their stored extras (for evaluate/calibrate).

    Images never pre-filled are left out (no prediction to judge); pre-filled
    images where nobody was found are kept with an empty list.
    """
    store = project.store
    if image_ids is None:
        ids = [r.id for r in store.images() if r.status == "done" or store.person_ids(r.id)]
    else:
        ids = list(image_ids)
    neighbours = _video_neighbours(store, set(ids))
    cache: dict = {}
    out: dict[str, list[Candidate]] = {}
    for iid in ids:
        frame = store.load_frame(iid)
        if not frame.persons and not include_empty:
            continue
        nb = neighbours.get(iid)
        near = []
        if nb:
            for side in nb:
                if side is None:
                    near.append(None)
                    continue
                if side[0] not in cache:
                    cache[side[0]] = store.load_frame(side[0]).persons
                near.append((cache[side[0]], side[1]))
        cands = []
        for p in frame.persons:
            temporal = None
            if near:
                sides = []
                for s in near:
                    q = _same_person(p, s[0]) if s else None
                    sides.append((q, s[1]) if q is not None else None)
                temporal = temporal_units(p, sides[0], sides[1])
            ex = Extras(tta=load_tta(store, p.id, p.xy, p.verified), temporal=temporal,
                        prev_round=previous_round(store, p))
            cands.append(Candidate(p, ex, frame.width, frame.height))
        out[frame.file_name] = cands
    return out


def featurize(cands: dict[str, list[Candidate]], model: SuspicionModel, score: bool = True) -> dict[str, list[Person]]:
    """Persons carrying every signal in person.meta (what metrics.point_table reports as sig_<name>),
    and, with score=True, the model's suspicion in person.suspicion."""
    out = {}
    for name, cs in cands.items():
        people = []
        for k, c in enumerate(cs):
            others = [o.person.xy for j, o in enumerate(cs) if j != k]
            ex = Extras(c.extras.tta, c.extras.temporal, c.extras.prev_round, model.joint_prior, others)
            f = features(c.person, c.width, c.height, model.stats, ex)
            p = c.person.copy()
            p.meta = dict(f)
            p.meta["has_tta"] = np.full(sk.N, float(c.extras.tta is not None))
            if score:
                p.suspicion = np.where(p.verified, 0.0, model.score(f, c.extras.tta is not None))
            people.append(p)
        out[name] = people
    return out


def _joint_prior_from_rows(rows: list[dict], strength: float = 10.0) -> np.ndarray:
    """Logit of the smoothed needs-fixing rate per joint; non-COCO points borrow a neighbour's."""
    y = np.array([r["needs_fix"] for r in rows], float)
    base = float(y.mean()) if len(y) else 0.3
    rate = np.full(sk.N, base)
    for bp in range(sk.N):
        v = [r["needs_fix"] for r in rows if r["bp"] == bp]
        if v:
            rate[bp] = (sum(v) + strength * base) / (len(v) + strength)
    for bp, src in _JOINT_ANALOGUE.items():
        if not any(r["bp"] == bp for r in rows):
            rate[bp] = rate[src]
    rate = np.clip(rate, 1e-3, 1 - 1e-3)
    return np.log(rate / (1 - rate))


def _out_of_fold_prior(rows: list[dict], groups: np.ndarray, folds: int = 5) -> np.ndarray:
    import hashlib
    fold = np.array([int(hashlib.sha1(f"prior:{g}".encode()).hexdigest(), 16) % folds for g in groups])
    out = np.zeros(len(rows))
    for k in range(folds):
        te = fold == k
        if not te.any():
            continue
        prior = _joint_prior_from_rows([r for r, f in zip(rows, fold) if f != k])
        out[te] = prior[[r["bp"] for r, t in zip(rows, te) if t]]
    return out


def fit_model(gt, cands: dict[str, list[Candidate]], select: bool = True, meta: dict | None = None,
              l2: float = 1.0, keypoints: str = "coco17") -> tuple[SuspicionModel, dict]:
    """Fit a suspicion model on predictions whose truth is in `gt` (COCO keypoints dict or path).

    Shape statistics come from the predicted poses themselves (robust median/MAD:
    the model's hip is not COCO's hip, so GT bone lengths would flag every hip);
    joint base rates and the logistic weights from the ground truth. Which
    signals enter is itself chosen by nested, image-grouped cross-validation
    (calibration.choose_signals) among: the designed default (TTA disagreement,
    or MediaPipe's confidence without TTA), the best single signal, and forward
    selection; on a few hundred points free selection overfits, on thousands
    it can win, and the data decides which case this is. The points are every one
    the review queue shows (metrics.point_table(unlabelled=True)): a joint the human
    left unlabelled is wrong when shown and right when hidden, so a model fit on the
    labelled points alone learns that a hidden guess is always wrong.
    """
    from annotator.review import metrics
    from annotator.review.calibration import choose_signals, fit
    poses = [c.person.xy for cs in cands.values() for c in cs]
    stats = learn_shape_stats(poses)
    base = SuspicionModel(Calibration([], np.zeros(0), np.zeros(0), np.zeros(0), 0.0),
                          Calibration([], np.zeros(0), np.zeros(0), np.zeros(0), 0.0), stats, np.zeros(sk.N))
    rows = metrics.queue_rows(metrics.point_table(gt, featurize(cands, base, score=False), keypoints=keypoints,
                                                      unlabelled=True))
    if len(rows) < 50:
        raise ValueError(f"only {len(rows)} matched ground-truth points to calibrate on; need at least 50")
    prior = _joint_prior_from_rows(rows)
    base.joint_prior = prior
    rows = metrics.queue_rows(metrics.point_table(gt, featurize(cands, base, score=False), keypoints=keypoints,
                                                      unlabelled=True))
    y = np.array([r["needs_fix"] for r in rows], float)
    groups = np.array([r["image_id"] for r in rows])
    names = [k for k in SIGNALS if k not in PRIOR_SIGNALS]
    feats = {k: np.array([r["sig_" + k] for r in rows], float) for k in names}
    has_tta = np.array([r["sig_has_tta"] > 0 for r in rows])
    usable = [k for k in names if np.isfinite(feats[k]).sum() >= 50
              and np.nanmax(feats[k]) - np.nanmin(feats[k]) > 1e-9]
    report = {"n_points": len(rows), "n_needs_fix": int(y.sum()), "n_with_tta": int(has_tta.sum()),
              "n_images": int(len(np.unique(groups)))}
    # the joint base rate is learned from these very labels: give each row the rate
    # learned without its image's fold, or cross-validation would flatter it
    feats["joint_prior"] = _out_of_fold_prior(rows, groups)
    cheap_names = [k for k in usable if k not in TTA_SIGNALS]
    full_names = list(usable)

    def choose(cands, mask, designed):
        F = {k: v[mask] for k, v in feats.items()}
        if not select:
            return cands, {}
        point = [k for k in cands if k not in PERSON_SIGNALS]
        fixed = [k for k in designed if k in cands]
        return choose_signals(F, y[mask], groups[mask], {
            f"designed default ({' + '.join(designed)})": ("fixed", fixed if designed[0] in cands else []),
            "single best signal": ("single", cands),
            "forward selection, per-point signals": ("select", point),
            "forward selection, all signals": ("select", cands)})

    all_rows = np.ones(len(y), bool)
    cheap_sel, report["cheap_choice"] = choose(cheap_names, all_rows, ["conf"])
    cheap = fit(feats, y, cheap_sel, l2)
    full = cheap
    if has_tta.sum() >= 50 and any(k in usable for k in TTA_SIGNALS):
        # the re-runs' disagreement, and where the engine has a second model, its doubt and the two
        # models' disagreement: signals that stay meaningful for people scored without one of them
        full_sel, report["full_choice"] = choose(full_names, has_tta, ["point_doubt", "engine_conf", "engine_gap", "tta"])
        full = fit({k: v[has_tta] for k, v in feats.items()}, y[has_tta], full_sel, l2)
    # the stored model scores with the prior learned from all rows
    info = dict(meta or {}, n_points=len(rows), fitted_at=time.strftime("%Y-%m-%d %H:%M:%S"))
    full.meta, cheap.meta = dict(info, which="with TTA"), dict(info, which="without TTA")
    return SuspicionModel(full, cheap, stats, prior, info), report


def signal_figures(rows: list[dict], names: Iterable[str], fractions=(0.1, 0.2, 0.3)) -> dict[str, dict]:
    """Queue recall (and AUC) when a single signal orders the queue, for a side-by-side table."""
    from annotator.review import metrics
    from annotator.review.calibration import auc
    q = metrics.queue_rows(rows)
    y = np.array([r["needs_fix"] for r in q], bool)
    out = {}
    for name in names:
        key = name if name in ("suspicion", "conf") else "sig_" + name
        if q and key not in q[0]:
            continue
        s = np.array([metrics._row_score(r, key) for r in q], float)
        fig = metrics.queue_figures(rows, scores=s, fractions=fractions)
        fig["auc"] = auc(s, y)
        out[name] = fig
    return out


# -- pre-fill hook ------------------------------------------------------------------------------------



def store_prefill_tta(store, person_ids: list[int], persons: list[Person], feats: list[dict]) -> None:
    """In the pre-fill main process, after set_predictions(): keep the new people's TTA features."""
    with store.tx():
        for pid, p, f in zip(person_ids, persons, feats):
            save_tta(store, pid, p.xy, f)


# -- the project's own truth ---------------------------------------------------------------------------

def project_truth(project, min_points: int = 5) -> tuple[dict, dict[str, list[Candidate]]]:
    """What the annotators verified, as (33-point COCO ground truth, the model's predictions for it).

    For every person with at least `min_points` verified points, the truth is
    the verified points and the prediction is what the model had written
    there (points.pred_x/pred_y, kept since schema 2). This is the data the
    suspicion model should be calibrated on once a project has some.
    """
    store = project.store
    rows = store.db.execute(
        "SELECT q.image_id, q.id FROM persons q WHERE q.deleted=0 AND (SELECT count(*) FROM points p"
        " WHERE p.person_id=q.id AND p.verified=1 AND p.vis>0 AND p.pred_x IS NOT NULL) >= ?"
        " ORDER BY q.image_id, q.id", (min_points,)).fetchall()
    images, anns = {}, []
    cands: dict[str, list[Candidate]] = {}
    for image_id, pid in rows:
        im = store.image(image_id)
        p = store.load_person(pid)
        pred = {r[0]: (r[1], r[2]) for r in store.db.execute(
            "SELECT idx, pred_x, pred_y FROM points WHERE person_id=? AND pred_x IS NOT NULL", (pid,))}
        truth = p.verified & (p.vis > 0) & np.array([i in pred for i in range(sk.N)])
        if image_id not in images:
            images[image_id] = {"id": image_id, "file_name": im.file_name, "width": im.width or 0,
                                "height": im.height or 0, "exhaustive_person_annotation": False}
        kps = np.zeros((sk.N, 3))
        kps[truth, :2] = p.xy[truth]
        kps[truth, 2] = p.vis[truth]
        x0, y0 = p.xy[truth].min(0)
        x1, y1 = p.xy[truth].max(0)
        anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                     "keypoints": kps.reshape(-1).tolist(), "num_keypoints": int(truth.sum()),
                     "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                     "area": 0.53 * float((x1 - x0) * (y1 - y0))})      # COCO segment area ~ 0.53 x box
        q = p.copy()
        for i, xy in pred.items():
            q.xy[i] = xy
        q.verified[:] = False
        tta = load_tta(store, pid, q.xy, np.zeros(sk.N, bool))
        cands.setdefault(im.file_name, []).append(
            Candidate(q, Extras(tta=tta, prev_round=None), im.width or 0, im.height or 0))
    gt = {"images": list(images.values()), "annotations": anns,
          "categories": [{"id": 1, "name": "person", "keypoints": list(sk.NAMES),
                          "skeleton": [[a + 1, b + 1] for a, b in sk.EDGES]}]}
    return gt, cands
