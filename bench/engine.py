"""Pose engine benchmark: the multi-person LiteRT engine against MediaPipe's legacy one.

On ../shared/data/pose-gt-dev (COCO-17 ground truth) it prints, for the
engines' settings:
- person recall: GT people with >= 5 labelled COCO-17 points that get a
  prediction with OKS > 0.1 (one-to-one, greedy by OKS), all and by tag,
- false people: people predicted on the 63 images with nobody in them,
- agreement: where legacy finds someone, the multi engine's matching person's
  median point distance to legacy's, over legacy's bbox long side,
- speed on one core: ms per image (and per person for multi).
Images are split in two halves by a hash of the file name: "tune" (used to
choose the defaults) and "check" (reported, never used for choosing).

    python bench/engine.py                 # defaults, both halves, speed
    python bench/engine.py --sweep         # the threshold grid used to choose the defaults
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO / ".." / "shared" / "data"
GT = DATA / "pose-gt-dev" / "annotations.json"
TAGS = ("small_person", "non_upright", "crowd", "occluded_or_truncated")

from annotator.prefill import blazepose as bp  # noqa: E402
from annotator.review import metrics as M  # noqa: E402
from annotator.core.media import load_image  # noqa: E402
from annotator.prefill.run import to_person  # noqa: E402


def half(file_name: str) -> str:
    return "tune" if zlib.crc32(file_name.encode()) % 2 == 0 else "check"


class CachedEstimator(bp.PoseEstimator):
    """Same estimator; detector outputs and landmark runs are memoized per image so a grid
    of thresholds costs one model run per distinct input."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.key = None
        self._dc: dict = {}
        self._lc: dict = {}

    def configure(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)
            self.settings[k] = v

    def _raw_detections(self, rgb, min_score, origin=(0, 0)):
        k = (self.key, tuple(int(v) for v in origin), rgb.shape)
        if k not in self._dc:
            self._dc[k] = super()._raw_detections(rgb, 0.05, origin)
        s, b, kp = self._dc[k]
        m = s >= min_score
        return s[m], b[m], kp[m]

    def _predict_roi(self, rgb, roi, det_score):
        k = (self.key, tuple(round(float(v), 3) for v in roi))
        if k not in self._lc:
            self._lc[k] = super()._predict_roi(rgb, roi, float("nan"))[0]
        return _copy_with_score(self._lc[k], det_score), None      # no heatmap kept: no TTA here


def _copy_with_score(p: bp.PersonPose, det_score: float) -> bp.PersonPose:
    import dataclasses
    q = dataclasses.replace(p, det_score=float(det_score))
    d = 1.0 if np.isnan(q.det_score) else q.det_score
    q.score = d * (1.0 if np.isnan(q.pose_flag) else q.pose_flag)
    return q



def load(limit: int | None = None):
    gt = M.load_gt(GT)
    ims = sorted(gt.images, key=lambda im: im.id)
    return ims[:limit] if limit else ims


def evaluate(images, preds: dict, legacy: dict | None = None) -> dict:
    """Recall / false people / accuracy for predictions {file_name: [PersonPose]}."""
    n_gt = found = 0
    by_tag = {t: [0, 0] for t in TAGS}
    oks_found = []
    false_people = false_images = 0
    n_empty = 0
    extra = 0
    agree = []
    for im in images:
        ps = preds[im.file_name]
        if not im.has_person:
            n_empty += 1
            false_people += len(ps)
            false_images += bool(ps)
            continue
        people = [g for g in im.people if g.n_labelled17 >= M.MIN_PEOPLE_POINTS]
        persons = [to_person(p, im.width, im.height) for p in ps]
        oks = M.oks_matrix(people, persons)
        match = M.match_people(oks, min_oks=M.RECALL_OKS + 1e-12)
        if im.exhaustive:
            # predictions near no annotated person (COCO also boxes people without keypoints: those count as people)
            boxes = [a["bbox"] for a in im.coco_anns]
            for j, p in enumerate(ps):
                if j in match.values():
                    continue
                hx, hy = p.xy[[23, 24]].mean(0)
                if not any(b[0] <= hx <= b[0] + b[2] and b[1] <= hy <= b[1] + b[3] for b in boxes):
                    extra += 1
        for gi, g in enumerate(people):
            hit = gi in match
            n_gt += 1
            found += hit
            if hit:
                oks_found.append(oks[gi, match[gi]])
            for t in TAGS:
                if t in im.tags:
                    by_tag[t][0] += 1
                    by_tag[t][1] += hit
        if legacy is not None and legacy.get(im.file_name) and ps:
            L = legacy[im.file_name][0]
            j = int(np.argmax([bp.pose_similarity(L, p) for p in ps]))
            x, y, w, h = L.bbox()
            agree.append(float(np.median(np.linalg.norm(ps[j].xy - L.xy, axis=1)) / max(w, h, 1.0)))
    out = {"gt_people": n_gt, "recall": found / max(n_gt, 1), "mean_oks_found": float(np.mean(oks_found or [0])),
           "no_person_images": n_empty, "false_people": false_people, "false_images": false_images,
           "extra_people": extra}
    for t, (n, f) in by_tag.items():
        out[f"recall_{t}"] = f / n if n else float("nan")
        out[f"n_{t}"] = n
    if agree:
        out["agreement_median"] = float(np.median(agree))
        out["agreement_p90"] = float(np.percentile(agree, 90))
        out["agreement_images"] = len(agree)
    return out


def run(est, images, rgbs) -> dict:
    out = {}
    for im in images:
        if hasattr(est, "key"):
            est.key = im.file_name
        out[im.file_name] = est.predict(rgbs[im.file_name])
    return out


def fmt(r: dict) -> str:
    s = (f"recall {r['recall']:.3f} ({r['gt_people']} GT)  small {r['recall_small_person']:.2f}"
         f" (n={r['n_small_person']})  non_upright {r['recall_non_upright']:.2f} (n={r['n_non_upright']})"
         f"  crowd {r['recall_crowd']:.2f}  occl {r['recall_occluded_or_truncated']:.2f}"
         f"  | false people {r['false_people']} on {r['false_images']}/{r['no_person_images']} empty imgs"
         f" (+{r['extra_people']} off-GT)"
         f"  | OKS(found) {r['mean_oks_found']:.3f}")
    if "agreement_median" in r:
        s += (f"  | vs legacy median {r['agreement_median']:.4f} p90 {r['agreement_p90']:.3f}"
              f" (n={r['agreement_images']})")
    return s


CONFIGS = {"multi (defaults)": {}, "multi TUNED": bp.TUNED, "multi SMALL_PEOPLE": bp.SMALL_PEOPLE}


def speed(images, rgbs) -> dict:
    """ms per image on one core (this process pinned to one CPU, one LiteRT thread)."""
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    except (AttributeError, OSError):
        pass
    files = [im.file_name for im in images]
    ests = {"legacy": bp.PoseEstimator("legacy")}
    ests.update({k: bp.PoseEstimator(**v) for k, v in CONFIGS.items()})
    res = {}
    for name, e in ests.items():
        e.predict(rgbs[files[0]])                       # warm up
        t_img, n_people = [], 0
        for f in files:
            t0 = time.perf_counter()
            n_people += len(e.predict(rgbs[f]))
            t_img.append(time.perf_counter() - t0)
        res[name] = {"ms_per_image": 1000 * float(np.mean(t_img)), "ms_median": 1000 * float(np.median(t_img)),
                     "people_per_image": n_people / len(t_img)}
    # the two networks alone
    multi = ests["multi (defaults)"]
    x, _ = bp.detector_input(rgbs[files[0]])
    crop = np.zeros((256, 256, 3), np.float32)
    for label, fn in (("detector_ms", lambda: multi._det(x, ("Identity", "Identity_1"))),
                      ("landmark_ms_per_person", lambda: multi.run_landmark_model(crop))):
        fn()
        t0 = time.perf_counter()
        for _ in range(30):
            fn()
        res[label] = 1000 * (time.perf_counter() - t0) / 30
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", action="store_true", help="print the threshold grid (tune and check halves)")
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--no-speed", action="store_true")
    a = ap.parse_args(argv)
    images = load(a.limit)
    rgbs = {im.file_name: load_image(GT.parent / "images" / im.file_name) for im in images}
    halves = {"tune": [im for im in images if half(im.file_name) == "tune"],
              "check": [im for im in images if half(im.file_name) == "check"], "all": images}
    print(f"pose-gt-dev: {len(images)} images (tune {len(halves['tune'])}, check {len(halves['check'])})")

    lp = run(bp.PoseEstimator("legacy"), images, rgbs)
    est = CachedEstimator(engine="multi")
    keys = ("min_detection_confidence", "min_pose_presence", "nms_iou", "tiles", "max_people", "min_keypoint_conf")
    defaults = {k: v for k, v in est.settings.items() if k in keys}
    for h in ("tune", "check", "all"):
        print(f"[{h:5s}] {'legacy':20s}: {fmt(evaluate(halves[h], lp))}")
    for name, cfg in CONFIGS.items():
        est.configure(**dict(defaults, **cfg))
        p = run(est, images, rgbs)
        print(f"\n{name}: {dict(defaults, **cfg)}")
        for h in ("tune", "check", "all"):
            print(f"[{h:5s}] {name:20s}: {fmt(evaluate(halves[h], p, lp))}")

    if a.sweep:
        print("\nsweep (det = min_detection_confidence, pres = min_pose_presence, kp = min_keypoint_conf):")
        grid = itertools.product((0.0, 0.5), (0.3, 0.5), (0.5, 0.4, 0.3, 0.2), (0.5, 0.8), (0.0, 0.45, 0.5))
        for tiles, iou, det, pres, hm in grid:
            est.configure(tiles=tiles, nms_iou=iou, min_detection_confidence=det, min_pose_presence=pres,
                          min_keypoint_conf=hm)
            p = run(est, images, rgbs)
            for h in ("tune", "check"):
                print(f"tiles {tiles:.1f} iou {iou:.1f} det {det:.2f} pres {pres:.2f} kp {hm:.2f} [{h:5s}] "
                      f"{fmt(evaluate(halves[h], p, lp))}")

    if not a.no_speed:
        sp = speed(halves["all"], rgbs)
        print(f"\nspeed, one core, {len(images)} images: detector {sp['detector_ms']:.1f} ms/run, "
              f"landmark model {sp['landmark_ms_per_person']:.1f} ms/person")
        for name in ["legacy", *CONFIGS]:
            r = sp[name]
            print(f"  {name:20s} {r['ms_per_image']:6.1f} ms/image (median {r['ms_median']:.1f}), "
                  f"{r['people_per_image']:.2f} people/image")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
