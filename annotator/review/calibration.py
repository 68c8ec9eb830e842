"""Turning suspicion signals into a probability that a point is wrong.

A small L2-regularised logistic regression (Newton steps in numpy, no
scikit-learn) maps per-point signal features to P(point needs fixing). It is
fit on points whose truth is known (verified points of the project, or a
ground-truth file). Which signals enter is decided by cross-validation
grouped by image (a person's points are not independent): forward selection
scored by review-queue recall, guarded by a paired log-loss test, and the
selection strategy itself picked by nested cross-validation, because on a
few hundred points free selection overfits. The fitted model is plain JSON:
stored in the project or shipped as the package default. The cal/held split
of a ground-truth file (assign_splits) lives here too, so calibration and
report agree on it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

FORMAT = "pose-annotator-suspicion/1"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50,
                 weight: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """(coef, intercept) minimising weighted log-loss + l2/2 |coef|^2 (intercept not penalised)."""
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64)
    n, d = X.shape
    w = np.ones(n) if weight is None else np.asarray(weight, np.float64)
    A = np.hstack([X, np.ones((n, 1))])
    beta = np.zeros(d + 1)
    p0 = np.clip(np.average(y, weights=w), 1e-4, 1 - 1e-4)
    beta[-1] = np.log(p0 / (1 - p0))
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0
    for _ in range(iters):
        p = _sigmoid(A @ beta)
        g = A.T @ (w * (p - y)) + reg * beta
        H = (A * (w * p * (1 - p))[:, None]).T @ A + np.diag(reg + 1e-9)
        step = np.linalg.solve(H, g)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta[:-1], float(beta[-1])


def recall_at(scores: np.ndarray, y: np.ndarray, fraction: float = 0.2) -> float:
    """Share of the positives among the first `fraction` of items, highest score first
    (ties at their expected value: metrics.queue_recall, the number evaluate reports)."""
    from annotator.review.metrics import queue_recall
    return queue_recall(scores, y, (fraction,))[fraction]


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC by ranks (ties averaged)."""
    y = np.asarray(y, bool)
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    s = np.asarray(scores, np.float64)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - npos * (npos + 1) / 2) / (npos * nneg))


@dataclass
class Calibration:
    """Standardise features, then logistic regression. predict() -> P(needs fixing)."""
    features: list[str]
    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray
    intercept: float
    meta: dict = field(default_factory=dict)

    def predict(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(feats.values())))
        if not self.features:
            return np.full(n, _sigmoid(np.array(self.intercept)))
        X = np.column_stack([np.asarray(feats[f], np.float64) for f in self.features])
        X = np.where(np.isnan(X), self.mean, X)          # unknown signal: no say either way
        return _sigmoid(((X - self.mean) / self.std) @ self.coef + self.intercept)

    def to_json(self) -> dict:
        return {"format": FORMAT, "features": list(self.features), "mean": np.round(self.mean, 6).tolist(),
                "std": np.round(self.std, 6).tolist(), "coef": np.round(self.coef, 6).tolist(),
                "intercept": round(float(self.intercept), 6), "meta": self.meta}

    @classmethod
    def from_json(cls, d: dict, where: str = "calibration") -> "Calibration":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{where}: not a {FORMAT} calibration")
        k = len(d["features"])
        arrs = [np.asarray(d[key], np.float64) for key in ("mean", "std", "coef")]
        if any(a.shape != (k,) for a in arrs):
            raise ValueError(f"{where}: mean/std/coef must each have {k} values")
        return cls(list(d["features"]), *arrs, float(d["intercept"]), dict(d.get("meta", {})))


def fit(feats: dict[str, np.ndarray], y: np.ndarray, names: list[str], l2: float = 1.0,
        meta: dict | None = None) -> Calibration:
    """Logistic fit on standardised features; a signal that comes out with a negative weight is dropped.

    Every signal is oriented "higher = more suspicious", so a negative weight
    can only be noise (or a correlated partner taking over); keeping it would
    rank points backwards on new data.
    """
    y = np.asarray(y, np.float64)
    names = list(names)
    while True:
        X = np.column_stack([np.asarray(feats[f], np.float64) for f in names]) if names else np.zeros((len(y), 0))
        mean = np.nan_to_num(np.nanmean(X, 0)) if names else np.zeros(0)
        X = np.where(np.isnan(X), mean, X)                   # unknown values sit at the mean
        std = X.std(0) + 1e-6 if names else np.zeros(0)
        if not names:
            b = float(np.log(max(y.mean(), 1e-4) / max(1 - y.mean(), 1e-4))) if len(y) else 0.0
            return Calibration([], mean, std, np.zeros(0), b, dict(meta or {}))
        coef, b = fit_logistic((X - mean) / std, y, l2=l2)
        if coef.min() >= 0:
            return Calibration(names, mean, std, coef, b, dict(meta or {}))
        names.pop(int(np.argmin(coef)))


def cross_val_scores(feats: dict[str, np.ndarray], y: np.ndarray, groups: np.ndarray, names: list[str],
                     folds: int = 5, l2: float = 1.0, seed: int = 0) -> np.ndarray:
    """Out-of-fold P(needs fixing) with folds made of whole groups (images); seed reshuffles the folds."""
    groups = np.asarray(groups)
    uniq = np.unique(groups)
    fold_of = {g: int(hashlib.sha1(f"{seed}:{g}".encode()).hexdigest(), 16) % folds for g in uniq}
    fold = np.array([fold_of[g] for g in groups])
    out = np.zeros(len(y))
    for k in range(folds):
        test = fold == k
        if not test.any():
            continue
        train = ~test
        if not train.any():
            out[test] = float(np.mean(y))
            continue
        cal = fit({f: np.asarray(feats[f])[train] for f in names}, y[train], names, l2)
        out[test] = cal.predict({f: np.asarray(feats[f])[test] for f in names} if names
                                else {"_": np.zeros(int(test.sum()))})
    return out


def _oof(feats, y, groups, names, l2: float, repeats: int) -> np.ndarray:
    """Out-of-fold probabilities averaged over `repeats` fold shufflings."""
    return np.mean([cross_val_scores(feats, y, groups, names, l2=l2, seed=r) for r in range(repeats)], axis=0)


def _score(p: np.ndarray, y: np.ndarray, fractions=(0.1, 0.2, 0.3)) -> float:
    """Mean recall over several review depths plus half the AUC (recall at one depth is jumpy)."""
    return float(np.mean([recall_at(p, y, f) for f in fractions])) + 0.5 * auc(p, y)


def _group_gain(p_old: np.ndarray, p_new: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """Log-loss improvement summed per group (image): mean and standard error over groups."""
    eps = 1e-6

    def ll(p):
        p = np.clip(p, eps, 1 - eps)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))
    d = ll(p_old) - ll(p_new)
    uniq, inv = np.unique(groups, return_inverse=True)
    per = np.bincount(inv, weights=d, minlength=len(uniq))
    if len(per) < 2:
        return float(per.mean()), float("inf")
    return float(per.mean()), float(per.std(ddof=1) / np.sqrt(len(per)))


def select_features(feats: dict[str, np.ndarray], y: np.ndarray, groups: np.ndarray, candidates: list[str],
                    always: tuple[str, ...] = (), min_gain: float = 0.004, z: float = 1.0,
                    l2: float = 1.0, repeats: int = 3) -> tuple[list[str], list[dict]]:
    """Greedy forward selection, cautious enough for a few hundred points.

    A signal is added when it raises the cross-validated queue score (_score)
    by min_gain AND lowers the out-of-fold log-loss by more than z standard
    errors, paired by image: with few images, a lucky split otherwise lets in
    person-level signals that do not carry over. Returns the chosen names and
    the trace [{added, recall, auc}] so a report can show what each bought.
    """
    y = np.asarray(y, float)
    chosen = list(always)
    trace = []
    p_cur = _oof(feats, y, groups, chosen, l2, repeats)
    best = _score(p_cur, y) if chosen else -1.0
    left = [c for c in candidates if c not in chosen]
    while left:
        trial = {c: _oof(feats, y, groups, chosen + [c], l2, repeats) for c in left}
        ranked = sorted(left, key=lambda c: -_score(trial[c], y))
        added = None
        for c in ranked:
            sc = _score(trial[c], y)
            if sc < best + min_gain:
                break
            mean, se = _group_gain(p_cur, trial[c], y, groups)
            if chosen and mean <= z * se:
                continue
            added = c
            break
        if added is None:
            break
        chosen.append(added)
        left.remove(added)
        p_cur = trial[added]
        best = _score(p_cur, y)
        trace.append({"added": added, "recall": recall_at(p_cur, y, 0.2), "auc": auc(p_cur, y)})
    return chosen, trace


def best_single(feats, y, groups, candidates: list[str], l2: float = 1.0, repeats: int = 3) -> list[str]:
    """The one signal with the best cross-validated queue score."""
    y = np.asarray(y, float)
    return [max(candidates, key=lambda c: _score(_oof(feats, y, groups, [c], l2, repeats), y))]


def _bootstrap_se(p: np.ndarray, y: np.ndarray, groups: np.ndarray, n: int = 100, seed: int = 0) -> float:
    """Standard error of _score over images resampled with replacement."""
    uniq, inv = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inv == k) for k in range(len(uniq))]
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        pick = np.concatenate([members[k] for k in rng.integers(0, len(uniq), len(uniq))])
        if 0 < y[pick].sum() < len(pick):
            vals.append(_score(p[pick], y[pick]))
    return float(np.std(vals)) if len(vals) > 1 else float("inf")


def choose_signals(feats: dict[str, np.ndarray], y: np.ndarray, groups: np.ndarray,
                   strategies: dict[str, tuple[str, list[str]]], l2: float = 1.0,
                   folds: int = 5) -> tuple[list[str], dict]:
    """Pick how to choose signals by nested cross-validation, then apply it to all the data.

    strategies: name -> (kind, signals), simplest first; kind "fixed" uses the
    signals as given, "single" the best one of them, "select" runs forward
    selection over them. Each strategy runs inside every outer training fold
    and is scored on the outer test fold (images its choice never saw). The
    simplest strategy within one standard error (image bootstrap) of the best
    wins: on a few hundred points the differences between strategies are
    mostly noise, and the plainer model is the one that carries over.
    Returns the chosen signals and a report {strategy: {recall_at_0_2, auc,
    score, se}, "chosen": name}.
    """
    y = np.asarray(y, float)
    groups = np.asarray(groups)
    uniq = np.unique(groups)
    strategies = {k: v for k, v in strategies.items() if v[1]}

    def run(kind, cands, F, yy, gg):
        if kind == "fixed":
            return list(cands)
        if kind == "single":
            return best_single(F, yy, gg, cands, l2)
        return select_features(F, yy, gg, cands, l2=l2)[0]

    if not strategies:
        return [], {"chosen": "none (no usable signal)"}
    if len(uniq) < 2 * folds:         # too few images to hold any out twice over: the plainest choice
        name, (kind, cands) = next(iter(strategies.items()))
        return (list(cands) if kind == "fixed" else best_single(feats, y, groups, cands, l2)), {
            "chosen": f"{name} (too few images to cross-validate)"}
    fold_of = {g: int(hashlib.sha1(f"outer:{g}".encode()).hexdigest(), 16) % folds for g in uniq}
    fold = np.array([fold_of[g] for g in groups])
    report: dict = {}
    for name, (kind, cands) in strategies.items():
        p = np.zeros(len(y))
        for k in range(folds):
            te, tr = fold == k, fold != k
            if not te.any() or not tr.any():
                continue
            Ftr = {f: np.asarray(v)[tr] for f, v in feats.items()}
            names = run(kind, cands, Ftr, y[tr], groups[tr])
            p[te] = fit(Ftr, y[tr], names, l2).predict({f: np.asarray(v)[te] for f, v in feats.items()})
        report[name] = {"recall_at_0_2": recall_at(p, y, 0.2), "auc": auc(p, y), "score": _score(p, y),
                        "se": _bootstrap_se(p, y, groups)}
    best = max(report, key=lambda n: report[n]["score"])
    bar = report[best]["score"] - report[best]["se"]
    chosen = next(n for n in strategies if report[n]["score"] >= bar)
    report["chosen"] = chosen
    kind, cands = strategies[chosen]
    return run(kind, cands, feats, y, groups), report


def assign_splits(file_names: list[str]) -> dict[str, str]:
    """'cal' or 'held' per image: alternate within each folder, in hash order.

    Deterministic and balanced per source, so calibration and report agree
    on which images are which without sharing a list.
    """
    by_folder: dict[str, list[str]] = {}
    for f in file_names:
        by_folder.setdefault(_folder(f), []).append(f)
    out = {}
    for folder, names in by_folder.items():
        names.sort(key=lambda n: hashlib.sha1(PurePosixPath(n).name.encode()).hexdigest())
        for k, n in enumerate(names):
            out[n] = "cal" if k % 2 == 0 else "held"
    return out


def _folder(f: str) -> str:
    parts = PurePosixPath(f.replace("\\", "/")).parts
    return parts[-2] if len(parts) >= 2 else ""
