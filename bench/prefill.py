"""Pre-fill throughput: our pipeline (2 worker processes, multi-person, writes to
SQLite) against a plain single-process `mp.solutions.pose` loop over the same
files, measured in the same run. Prints images/s and peak memory, and what the
re-run suspicion signals computed during pre-fill (prefill.tta, on by default)
cost per image: the same pre-fill once more with --no-tta.

    python bench/prefill.py [--limit N] [--workers 2] [--repeat 3] [--skip-tta]

The plain loop and the pre-fill without TTA are alternated --repeat times and
the median ratio is the speed-up (one run of 169 photos is ~5 s; a single run
swings by +-10% on a shared machine).
"""
from __future__ import annotations

import argparse
import compileall
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO / ".." / "shared" / "data"


def photos(limit: int | None) -> list[Path]:
    from annotator.core.media import IMAGE_EXT
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


def ours(files: list[Path], workers: int, tta: bool = True, engine: str | None = None) -> tuple[float, dict]:
    import ai_edge_litert.interpreter  # noqa: F401  imports outside the timing, as the plain loop's mediapipe
    import annotator.prefill.blazepose  # noqa: F401
    from annotator.prefill.run import prefill
    from annotator.core.project import Project
    with tempfile.TemporaryDirectory() as d:
        proj, _ = Project.create(Path(d) / "bench", files)
        with proj:
            if engine:          # the plain loop's pipeline and thresholds (mp.solutions.pose defaults)
                proj.settings["prefill"].update(engine=engine, min_detection_confidence=0.5, min_pose_presence=0.5)
            t0 = time.perf_counter()
            s = prefill(proj, workers=workers, progress=False, tta=tta)
            return time.perf_counter() - t0, s


def _child(q, fn, args) -> None:
    out = fn(*args)
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    q.put((out, self_mb, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024))


def fresh(fn, *args):
    """fn(*args) in a new Python process, as a user's command line would run it (nothing else
    loaded: the pre-fill may fork its workers, which it never does from a process that has run
    MediaPipe's graph). Returns (result, peak RSS MB of that process, of its largest child)."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, fn, args))
    p.start()
    out = q.get()
    p.join()
    return out


def first_run() -> None:
    """What a user has after the first run, made before any timing (in a child process, so this
    one stays as small as a command line and the children's peak memory is theirs):
    - bytecode for our modules. An editable install compiles nothing, and with
      PYTHONDONTWRITEBYTECODE set (as on this machine) every run would compile the modules
      pre-fill imports inside the timing; mediapipe's came compiled from its wheel.
    - the lean model files in the user's cache (mp_models.lean_model)."""
    compileall.compile_dir(REPO / "annotator", quiet=1)
    from annotator.prefill.blazepose import PoseEstimator
    PoseEstimator()._lm()


def after_start_up(n: int, s: dict) -> float:
    """images/s after the first result (the workers' start-up and first image excluded)."""
    return (n - 1) / max(s["seconds"] - s["startup_seconds"], 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3,
                    help="alternate the plain loop and the pre-fill without TTA this many times; medians")
    ap.add_argument("--skip-legacy", action="store_true", help="do not measure the legacy engine in the pool")
    ap.add_argument("--skip-tta", action="store_true", help="do not measure the default pre-fill with TTA")
    a = ap.parse_args()
    fresh(first_run)
    files = photos(a.limit)
    n = len(files)
    print(f"{n} photos from {DATA.resolve()}; {a.workers} workers; {os.cpu_count()} CPUs")
    ratios, plain_rates, fast_rates, steady_rates = [], [], [], []
    for r in range(a.repeat):        # alternated back to back, so a busy moment hits both
        (t_plain, found), rss_plain, _ = fresh(plain_loop, files)
        (t_fast, s2), rss_main, rss_worker = fresh(ours, files, a.workers, False)
        steady = after_start_up(n, s2)
        ratios.append(t_plain / t_fast)
        plain_rates.append(n / t_plain)
        fast_rates.append(n / t_fast)
        steady_rates.append(steady)
        print(f"  run {r + 1}: plain loop {n / t_plain:5.1f} images/s ({found} people, one per image at most);"
              f" prefill --no-tta {n / t_fast:5.1f} images/s ({s2['people']} people, start-up"
              f" {s2['startup_seconds']:.2f}s, then {steady:5.1f} images/s) -> {t_plain / t_fast:.2f}x")
    med = statistics.median
    print(f"plain mp.solutions.pose loop, 1 process  : {med(plain_rates):6.1f} images/s (median of {a.repeat})")
    print(f"pose-annotator prefill --no-tta          : {med(fast_rates):6.1f} images/s incl. worker start-up,"
          f" {med(steady_rates):.1f} after the first image; written to SQLite")
    print(f"speed-up, points only: {med(ratios):.2f}x median (runs: {', '.join(f'{x:.2f}' for x in ratios)})")
    print(f"people per second: plain loop {med(plain_rates) * found / n:.1f}, prefill --no-tta"
          f" {med(fast_rates) * s2['people'] / n:.1f}")
    if not a.skip_legacy:     # where the gap comes from: the same pool and store with the plain loop's pipeline
        (t_leg, s3), _, _ = fresh(ours, files, a.workers, False, "legacy")
        print(f"pose-annotator prefill --no-tta, the plain loop's pipeline (engine = \"legacy\", detector 0.5):"
              f" {n / t_leg:6.1f} images/s = {(n / t_leg) / med(plain_rates):.2f}x, {s3['people']} people"
              f" (start-up {s3['startup_seconds']:.2f}s: the workers import mediapipe, then"
              f" {after_start_up(n, s3):.1f} images/s)")
    if not a.skip_tta:
        (t_ours, s), _, _ = fresh(ours, files, a.workers)
        print(f"pose-annotator prefill (default: + re-run review signals): {n / t_ours:6.1f} images/s"
              f" = {(n / t_ours) / med(plain_rates):.2f}x the plain loop's median;"
              f" +{1000 * (t_ours - n / med(fast_rates)) / n:.0f} ms/image wall clock,"
              f" ~{1000 * (t_ours - n / med(fast_rates)) * a.workers / max(s['people'], 1):.0f} ms/person of CPU"
              f" (review-queue scoring {s['suspicion_seconds']:.2f}s, mostly while the workers run)")
    print(f"peak RSS: plain loop {rss_plain:.0f} MB; pre-fill main process {rss_main:.0f} MB,"
          f" largest worker {rss_worker:.0f} MB")


if __name__ == "__main__":
    main()
