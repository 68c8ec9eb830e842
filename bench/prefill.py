"""Pre-fill throughput: our pipeline (2 worker processes, multi-person, writes to
SQLite) against a plain single-process `mp.solutions.pose` loop over the same
files, measured in the same run. Prints images/s and peak memory, and what the
re-run suspicion signals computed during pre-fill (prefill.tta, on by default)
cost per image: the same pre-fill once more with --no-tta.

    python bench/prefill.py [--limit N] [--workers 2] [--skip-no-tta]
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO / ".." / "shared" / "data"


def photos(limit: int | None) -> list[Path]:
    from annotator.media import IMAGE_EXT
    files = sorted(p for d in (DATA / "pose-gt-dev" / "images", DATA / "media" / "images")
                   for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXT)
    return files[:limit] if limit else files


def plain_loop(files: list[Path]) -> tuple[float, int]:
    """What a user would write: one process, the legacy solution, one person per image."""
    import cv2
    import mediapipe as mp
    t0 = time.perf_counter()
    found = 0
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1) as pose:
        for f in files:
            bgr = cv2.imread(str(f))
            if bgr is None:
                continue
            res = pose.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            found += res.pose_landmarks is not None
    return time.perf_counter() - t0, found


def ours(files: list[Path], workers: int, tta: bool = True) -> tuple[float, dict]:
    from annotator.prefill import prefill
    from annotator.project import Project
    with tempfile.TemporaryDirectory() as d:
        proj, _ = Project.create(Path(d) / "bench", files)
        with proj:
            t0 = time.perf_counter()
            s = prefill(proj, workers=workers, progress=False, tta=tta)
            return time.perf_counter() - t0, s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-no-tta", action="store_true", help="do not measure the pre-fill without TTA")
    a = ap.parse_args()
    files = photos(a.limit)
    print(f"{len(files)} photos from {DATA.resolve()}")
    t_plain, found = plain_loop(files)
    rss_main = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t_ours, s = ours(files, a.workers)
    rss_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    n = len(files)
    print(f"plain mp.solutions.pose loop, 1 process : {n / t_plain:6.1f} images/s  ({t_plain:.1f}s,"
          f" {found} people: one per image at most)")
    print(f"pose-annotator prefill, {a.workers} workers     : {n / t_ours:6.1f} images/s  ({t_ours:.1f}s incl."
          f" worker start-up, {s['people']} people, {s['failed']} failed, written to SQLite)")
    steady = (n - 1) / max(s["seconds"] - s["startup_seconds"], 1e-9)
    print(f"  after the first image (worker start-up {s['startup_seconds']:.1f}s): {steady:6.1f} images/s")
    print(f"speed-up: {t_plain / t_ours:.2f}x  (suspicion scoring at the end: {s['suspicion_seconds']:.2f}s)")
    if not a.skip_no_tta:
        t_fast, s2 = ours(files, a.workers, tta=False)
        print(f"pose-annotator prefill --no-tta          : {n / t_fast:6.1f} images/s  ({t_fast:.1f}s, {s2['people']} people)")
        steady2 = (n - 1) / max(s2["seconds"] - s2["startup_seconds"], 1e-9)
        print(f"  after the first image (worker start-up {s2['startup_seconds']:.1f}s): {steady2:6.1f} images/s;"
              f" speed-up {t_plain / t_fast:.2f}x")
        extra = (t_ours - t_fast) * a.workers
        print(f"re-run suspicion signals in pre-fill: +{1000 * (t_ours - t_fast) / n:.0f} ms/image wall clock with"
              f" {a.workers} workers (~{1000 * extra / n:.0f} ms/image, ~{1000 * extra / max(s['people'], 1):.0f}"
              f" ms/person of CPU)")
    print(f"peak RSS: main process {rss_main:.0f} MB, largest worker {rss_child:.0f} MB")


if __name__ == "__main__":
    main()
