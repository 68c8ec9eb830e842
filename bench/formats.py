"""Export seconds for N people (default 10,000) in every export format.

    python bench/formats.py [--people 10000] [--formats coco,slp,...]

A real SQLite project in a temporary folder: the pose-gt-dev photos and the frames of
media/videos/openpose_video.avi, with synthetic people spread evenly over them (60 % fully
verified, 40 % predicted with confidences; random occluded and unlabelled points; track ids on
the video frames). Each figure is one `export` as the CLI runs it: reading the frames from the
store, building the format, writing it (yolo and dlc also write every image; dlc as PNG).
The sleap-io formats are skipped when the 'sleap' extra is not installed.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO / ".." / "shared" / "data"
FORMATS = ("coco", "coco17", "yolo", "cvat-xml", "slp", "dlc", "labelstudio", "nwb")
OUT = {"coco": "x.json", "coco17": "x.json", "yolo": "x", "cvat-xml": "x.xml", "slp": "x.slp", "dlc": "x",
       "labelstudio": "x.json", "nwb": "x.nwb"}


def fill(proj, n_people: int, seed: int = 0) -> None:
    from annotator.core import skeleton as sk
    from annotator.core.model import Person
    rng = np.random.default_rng(seed)
    rows = proj.store.images()
    per = np.full(len(rows), n_people // len(rows))
    per[: n_people % len(rows)] += 1
    for row, k in zip(rows, per):
        changes = []
        for j in range(k):
            w, h = row.width or 640, row.height or 480
            xy = rng.uniform([0, 0], [w, h], (sk.N, 2))
            vis = rng.choice([0, 1, 2], sk.N, p=[0.1, 0.2, 0.7])
            verified = rng.random() < 0.6
            p = Person(xy, vis, conf=None if verified else rng.uniform(0, 1, sk.N),
                       verified=np.full(sk.N, verified) & (vis > 0),
                       source=["annotator:bench" if verified else "blazepose-full/mediapipe-0.10.21"] * sk.N,
                       score=None if verified else float(rng.uniform(0.3, 1)),
                       track_id=j if row.kind == "video" else None)
            changes.append((None, row.id, None, p))
        proj.store.apply_changes(changes, "bench", "bench_fill")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=10_000)
    ap.add_argument("--formats", default=",".join(FORMATS))
    a = ap.parse_args()
    from annotator.cli.base import main as cli
    from annotator.core.project import Project
    try:
        import sleap_io  # noqa: F401
        have_sio = True
    except ImportError:
        have_sio = False
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        t0 = time.perf_counter()
        proj, s = Project.create(d / "p", [DATA / "pose-gt-dev" / "images",
                                           DATA / "media" / "videos" / "openpose_video.avi"])
        with proj:
            fill(proj, a.people)
            n_img = proj.store.count_images()
        print(f"project: {n_img} images ({s['video_frames']} video frames), {a.people} people,"
              f" made in {time.perf_counter() - t0:.1f}s")
        print(f"{'format':<12} {'seconds':>8} {'people/s':>9} {'output MB':>10}")
        for fmt in a.formats.split(","):
            if fmt in ("slp", "dlc", "labelstudio", "nwb") and not have_sio:
                print(f"{fmt:<12} {'skipped: the sleap extra is not installed':>30}")
                continue
            out = d / f"out-{fmt}" / OUT[fmt]
            t = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                rc = cli(["export", str(d / "p"), "--format", fmt, "--out", str(out)])
            sec = time.perf_counter() - t
            size = sum(f.stat().st_size for f in out.parent.rglob("*") if f.is_file()) / 1e6
            print(f"{fmt:<12} {sec:8.2f} {a.people / sec:9.0f} {size:10.1f}" + ("" if rc == 0 else f"  (exit {rc})"))
            shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
