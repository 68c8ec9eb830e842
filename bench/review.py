"""Cost of the review-queue machinery: the extra suspicion signals and `evaluate`.

    python bench/review.py [--project DIR] [--limit N]

Without --project, a project is made from pose-gt-dev's images in a temporary
folder and pre-filled first (that pre-fill is not part of the figures). The
re-run signals run the landmark model on the transformed crops of rerun.TTA_VARIANTS and the
zoomed part crops of rerun.PARTS per person, and once more for its heatmap; the rest is
arithmetic on stored points. Prints ms per image and per person (one core; other processes may
share it).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GT = REPO / ".." / "shared" / "data" / "pose-gt-dev"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--project", help="an existing pre-filled project (copied, not modified)")
    ap.add_argument("--limit", type=int, help="images to use for the TTA timing")
    a = ap.parse_args()
    from annotator.prefill import rerun as R
    from annotator.review import suspicion as S
    from annotator.prefill.run import estimator_settings, make_estimator, prefill
    from annotator.core.project import Project
    from annotator.cli.review import run_evaluate

    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "p"
        if a.project:
            shutil.copytree(a.project, root)
            proj = Project.open(root)
        else:
            proj, _ = Project.create(root, [GT / "images"])
            print("pre-filling pose-gt-dev (not timed) ...")
            prefill(proj, progress=False)
        with proj:
            st = proj.store
            ids = S._image_ids(st, None)[: a.limit] if a.limit else S._image_ids(st, None)
            n_people = sum(len(st.person_ids(i)) for i in ids)
            print(f"{len(ids)} images with people, {n_people} people")

            t0 = time.perf_counter()
            est = make_estimator(estimator_settings(proj.settings))
            t_load = time.perf_counter() - t0
            t0 = time.perf_counter()
            s = R.compute_tta(proj, ids, estimator=est, force=True)
            t_tta = time.perf_counter() - t0
            print(f"re-run signals ({len(R.TTA_VARIANTS)} transformed crops + {len(R.PARTS)} part crops"
                  f" + 1 heatmap run per person): "
                  f"{1000 * t_tta / max(len(ids), 1):.0f} ms/image, {1000 * t_tta / max(s['people'], 1):.0f} ms/person"
                  f" (+{t_load:.1f}s model load once)")

            all_ids = S._image_ids(st, None)
            t0 = time.perf_counter()
            u = S.update_suspicion(proj, all_ids)
            t_upd = time.perf_counter() - t0
            print(f"cheap signals + combination + store (update_suspicion): "
                  f"{1000 * t_upd / max(len(all_ids), 1):.1f} ms/image, {u['people']} people")

            gt = GT / "annotations.json"
            from annotator.review import metrics
            t0 = time.perf_counter()
            _, rep = S.fit_model(metrics.load_gt(gt), S.collect(proj, include_empty=False))
            print(f"calibration (fit + choice of signals by nested CV, once per project): "
                  f"{time.perf_counter() - t0:.1f}s for {rep['n_points']} points")
            t0 = time.perf_counter()
            r, _ = run_evaluate(proj, gt, "all", signals=False)
            t_ev = time.perf_counter() - t0
            t0 = time.perf_counter()
            r, _ = run_evaluate(proj, gt, "all", signals=True)
            t_ev2 = time.perf_counter() - t0
            print(f"evaluate on {r['n_images']} images: {t_ev:.2f}s ({1000 * t_ev / r['n_images']:.1f} ms/image),"
                  f" with the per-signal queue table {t_ev2:.2f}s")


if __name__ == "__main__":
    main()
