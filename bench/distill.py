"""Distillation speed: training throughput (crops/s, head and full) and per-round wall time.

    nice .venv/bin/python bench/distill.py [--project DIR] [--images N] [--full-steps S] [--threads T]

Without --project, a project is built in a temp folder from the first N photos of
../shared/data/pose-gt-dev that have people (pre-filled, COCO-17 ground truth
imported as verified). Prints numbers; asserts nothing (the machine is shared).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GT_DEV = REPO / ".." / "shared" / "data" / "pose-gt-dev"


def build(root: Path, n: int) -> Path:
    from exporters.coco import read_coco

    from annotator.core.importing import import_frames
    from annotator.prefill.run import prefill
    from annotator.core.project import Project
    gt = json.loads((GT_DEV / "annotations.json").read_text())
    with_people = {a["image_id"] for a in gt["annotations"] if a.get("num_keypoints", 0) > 0}
    ims = [im for im in gt["images"] if im["id"] in with_people][:n]
    proj, _ = Project.create(root, [GT_DEV / "images" / im["file_name"] for im in ims])
    prefill(proj, workers=2, progress=False)
    _, frames = read_coco(GT_DEV / "annotations.json")
    names = {im["file_name"] for im in ims}
    import_frames(proj, [f for f in frames if f.file_name in names], "verified", source="import:gt")
    proj.close()
    return root


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--project")
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--full-steps", type=int, default=4, help="batches of 8 for the full-mode throughput")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mode", choices=["head", "full"], default="head", help="mode of the timed round")
    a = ap.parse_args()
    from annotator.distill import rounds as D
    from annotator.distill import training as stu
    from annotator.distill.rounds import peak_rss_mb
    from annotator.core.project import Project
    tmp = Path(tempfile.mkdtemp(prefix="bench-distill-"))
    try:
        if a.project:
            src = Path(a.project)
        else:
            t0 = time.perf_counter()
            src = build(tmp / "src", a.images)
            print(f"built project from {a.images} pose-gt-dev images in {time.perf_counter() - t0:.1f}s")
        work = tmp / "work"
        shutil.copytree(src, work, ignore=shutil.ignore_patterns("models"))
        with Project.open(work) as proj:
            cfg = D.Config(threads=a.threads, mode=a.mode)
            t0 = time.perf_counter()
            row = D.run_round(proj, cfg)
            wall = time.perf_counter() - t0
            rec = row["record"]
            tr = rec.get("train", {})
            print(f"round ({a.mode}, {cfg.resolved().epochs} epochs): {wall:.1f}s wall,"
                  f" status {row['status']}; stages " + ", ".join(f"{k} {v:.1f}s" for k, v in rec["seconds"].items()))
            print(f"  people {rec['counts']['people']}, crops trained {tr.get('train_crops')} x{1 + tr.get('copies', 0)},"
                  f" gold images {rec['counts']['gold_images']}")
            fps = tr.get("feature_crops_per_s", float("nan"))
            print(f"  features + refinement offsets of every crop (onnxruntime): {fps:.1f} crops/s")
            print(f"  {a.mode} training in the round: {tr.get('train_crops_per_s', float('nan')):.1f} crops/s")
            # full mode: forward + backward through the whole network, torch eager on CPU
            est = D.estimator_for(proj, "mediapipe")
            ids = [i for i in rec["train_image_ids"]][:10]
            data = D.collect_data(proj, est, ids, D.Config(max_people=8 * a.full_steps))
            x = data["crops"].astype(np.float32) / 255.0
            n = min(len(x), 8 * a.full_steps)
            for mode, label in (("full", f"full training (torch, {a.threads} threads, with augmentation)"),
                                ("head", "head training through torch features (student.train, no cache)")):
                s = stu.Student(threads=a.threads)
                t0 = time.perf_counter()
                stu.train(s, x[:n], data["targets"][:n], data["weights"][:n], epochs=1, batch_size=8, mode=mode,
                          augment=True, threads=a.threads)
                dt = time.perf_counter() - t0
                print(f"  {label}: {n / dt:.2f} crops/s ({n} crops)")
            print(f"peak RSS {peak_rss_mb():.0f} MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
