"""Refit annotator/prefill/point_model.py's MODEL: which of a found person's points to show.

Runs engine "detector" (BlazePose Heavy) on every image of pose-gt-dev with nothing hidden
(hide_points="threshold", unseen_below=0), matches its people to the ground truth as
annotator.review.metrics does, and makes one row per COCO-17 joint of each matched GT person
with >= 5 labelled COCO-17 points, on the joints that person's source labels at all:
point_model.features(...) and two labels, `lab` (the GT labels the point) and `ok` (labelled and
the guess's OKS term >= 0.5). Two logistic models (calibration.fit_logistic, default l2) are fit
on the 'cal' half (calibration.assign_splits over all the GT's images) with the features
standardised by that half's mean/std: P(labelled) on every row, P(right | labelled) on the
labelled rows.

Prints MODEL as JSON (paste it into point_model.py); SHOW_MARGIN's table, clicks out of fold by
5-fold cross-validation over the 'cal' half's images (the margin with the fewest is the one to
ship; the held-out half plays no part); then, on 'cal' and 'held', the three kinds of click --
shown but unlabelled, hidden but labelled, shown and wrong -- for the new fit at that margin
against the shipped MODEL and the threshold rule (MoveNet's score < 0.2 hidden); under all
three, points off the image are hidden, as to_person does.

Run from the repo root (a minute or two of model inference):

    .venv/bin/python tools/fit_point_model.py [--gt ../shared/data/pose-gt-dev/annotations.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from annotator.core import skeleton as sk
from annotator.core.media import load_image
from annotator.prefill import point_model
from annotator.prefill.blazepose import _C17, PoseEstimator
from annotator.prefill.estimator import to_person
from annotator.review import metrics as M
from annotator.review.calibration import assign_splits, fit_logistic

ROOT = Path(__file__).resolve().parents[1]
THRESHOLD = 0.2        # the threshold rule: PoseEstimator's default unseen_below
OK_TERM = M.NEEDS_FIX_OKS   # a labelled point is "right" at this OKS term
MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)   # SHOW_MARGIN: the one with the fewest clicks out of fold


def point_table(gt_path: Path):
    """(file names, F, lab, ok, MoveNet score, inside) over every row, one per point."""
    gt = M.load_gt(gt_path)
    est = PoseEstimator("detector", 2, hide_points="threshold", unseen_below=0.0)
    defined = M.defined_points(gt)
    fns, F, lab, ok, s, inside = [], [], [], [], [], []
    t0 = time.perf_counter()
    for n, im in enumerate(gt.images, 1):
        rgb = load_image(gt_path.parent / "images" / im.file_name)
        H, W = rgb.shape[:2]
        poses = est.predict(rgb)
        preds = [to_person(p, W, H) for p in poses]
        match = M.match_people(M.oks_matrix(im.people, preds))
        for g, j in sorted(match.items()):
            gp, pose = im.people[g], poses[j]
            if gp.n_labelled17 < M.MIN_PEOPLE_POINTS:
                continue
            s17 = pose.label_conf[_C17]                   # the score point_model sees (label_conf = s[TO_COCO17])
            xy17 = pose.xy[_C17]
            f17 = point_model.features(xy17, s17, pose.visibility[_C17], pose.z[_C17], pose.box, W, H,
                                       pose.engine_gap[_C17], pose.mirror_k17)
            terms = M.oks_terms(gp.kps[_C17], gp.area, xy17, np.ones(17, bool), sk.SIGMAS[_C17])
            for c, bp in enumerate(_C17):
                if bp not in defined.get(im.source, ()):
                    continue
                labelled = bool(gp.kps[bp, 2] > 0)
                x, y = xy17[c]
                fns.append(im.file_name)
                F.append(f17[c])
                lab.append(labelled)
                ok.append(labelled and terms[c] >= OK_TERM)
                s.append(s17[c])
                inside.append(0 <= x < W and 0 <= y < H)
        if n % 20 == 0 or n == len(gt.images):
            print(f"# {n}/{len(gt.images)} images, {len(fns)} points, {time.perf_counter() - t0:.0f} s",
                  flush=True)
    return (np.array(fns), np.array(F), np.array(lab), np.array(ok), np.array(s), np.array(inside))


def clicks(show, lab, ok, m) -> tuple[int, int, int]:
    return int((show & ~lab & m).sum()), int((~show & lab & m).sum()), int((show & lab & ~ok & m).sum())


def fit(F, lab, ok, rows) -> dict:
    """point_model.MODEL fit on `rows` (bool mask), features standardised by those rows."""
    mu, sd = F[rows].mean(0), F[rows].std(0) + 1e-9
    Z = (F - mu) / sd
    w1, b1 = fit_logistic(Z[rows], lab[rows])
    w2, b2 = fit_logistic(Z[rows & lab], ok[rows & lab])
    return {"mean": mu.round(6).tolist(), "std": sd.round(6).tolist(),
            "labelled": {"coef": w1.round(6).tolist(), "intercept": round(float(b1), 6)},
            "right": {"coef": w2.round(6).tolist(), "intercept": round(float(b2), 6)}}


def margin_table(fns, F, lab, ok, inside, cal, folds: int = 5, seeds: int = 10) -> list[tuple]:
    """(margin, mean unlabel clicks, mean total clicks) out of fold, 5-fold by image inside `cal`
    only: the margin is chosen without the held-out half."""
    names = np.array(sorted(set(fns[cal])))
    rng = np.random.default_rng(0)
    out = np.zeros((len(MARGINS), 2))
    for _ in range(seeds):
        fold = dict(zip(names[rng.permutation(len(names))], np.arange(len(names)) % folds))
        fo = np.array([fold.get(f, -1) for f in fns])
        show = np.zeros((len(MARGINS), len(fns)), bool)
        for k in range(folds):
            test = cal & (fo == k)
            model = fit(F, lab, ok, cal & (fo != k))
            for i, mg in enumerate(MARGINS):
                show[i, test] = point_model.show(F[test], model, mg)
        for i in range(len(MARGINS)):
            c = clicks(show[i] & inside, lab, ok, cal)
            out[i] += (c[0], sum(c))
    return [(mg, u / seeds, t / seeds) for mg, (u, t) in zip(MARGINS, out)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gt", type=Path, default=ROOT / "../shared/data/pose-gt-dev/annotations.json",
                    help="COCO keypoints file; its images in images/ next to it")
    args = ap.parse_args(argv)
    fns, F, lab, ok, s, inside = point_table(args.gt)
    # split over all the GT's images, as cli/review.py does: splitting only the images that have
    # points (as the scratch fit behind MODEL did) shifts the alternation when one image drops out
    split = assign_splits([im.file_name for im in M.load_gt(args.gt).images])
    cal = np.array([split[f] == "cal" for f in fns])
    model = fit(F, lab, ok, cal)
    print(f"# cal: {len({f for f, c in zip(fns, cal) if c})} images, {int(cal.sum())} points; "
          f"held: {len({f for f, c in zip(fns, cal) if not c})} images, {int((~cal).sum())} points")
    print(json.dumps(model))
    table = margin_table(fns, F, lab, ok, inside, cal)
    margin = min(table, key=lambda row: row[2])[0]
    print("# SHOW_MARGIN, out of fold inside cal (5-fold by image, 10 seeds): unlabel / all clicks")
    for mg, u, t in table:
        print(f"#   {mg:.2f}  {u:6.1f} / {t:6.1f}{'   <- the fewest clicks' if mg == margin else ''}")
    rules = {"model": point_model.show(F, model, margin) & inside, "shipped": point_model.show(F) & inside,
             f"threshold {THRESHOLD}": (s >= THRESHOLD) & inside}
    print("# split  rule           unlabel  hidden-labelled  shown-wrong  total")
    for name, m in (("cal", cal), ("held", ~cal)):
        for rule, show in rules.items():
            c = clicks(show, lab, ok, m)
            print(f"{name:6s} {rule:15s} {c[0]:8d} {c[1]:16d} {c[2]:12d} {sum(c):6d}")


if __name__ == "__main__":
    main()
