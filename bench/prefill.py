"""Pre-fill throughput: images/s and people found per second, in one run, for
- the plain single-process `mp.solutions.pose` loop a user would write (one person per image),
- the default pre-fill (engine "detector": NanoDet -> MoveNet -> BlazePose Heavy, with the
  review queue's free signals), 2 worker processes, written to SQLite,
- the same with the re-runs on 8 other views (--tta, the default before),
- a fast setting (engine "detector" with BlazePose Full, --no-tta),
- the previous default (engine "multi", MediaPipe's face-based detector, --no-tta).

    python bench/prefill.py [--limit N] [--workers 2] [--repeat 3]

Each setting runs --repeat times in a fresh process, alternated so a busy moment hits all of
them; medians are printed. People found per second is what the issue's 4 people/s target counts.
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


SETTINGS = {
    "default": ({}, False),
    "tta": ({}, True),
    "fast": ({"model_complexity": 1}, False),
    "multi": ({"engine": "multi", "model_complexity": 1}, False),
    "nomirror": ({"mirror_scores": False}, False),   # the default without MoveNet's mirrored look (what it costs)
}


def ours(files: list[Path], workers: int, setting: str) -> tuple[float, dict]:
    import ai_edge_litert.interpreter  # noqa: F401  imports outside the timing, as the plain loop's mediapipe
    import annotator.prefill.blazepose  # noqa: F401
    from annotator.prefill.run import prefill
    from annotator.core.project import Project
    over, tta = SETTINGS[setting]
    with tempfile.TemporaryDirectory() as d:
        proj, _ = Project.create(Path(d) / "bench", files)
        with proj:
            proj.settings["prefill"].update(over)
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
    for c in (1, 2):
        PoseEstimator(model_complexity=c)._lm()


def after_start_up(n: int, s: dict) -> float:
    """images/s after the first result (the workers' start-up and first image excluded)."""
    return (n - 1) / max(s["seconds"] - s["startup_seconds"], 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each setting, alternated; medians")
    ap.add_argument("--settings", default="default,tta,fast,multi", help="which of " + ", ".join(SETTINGS))
    a = ap.parse_args()
    fresh(first_run)
    files = photos(a.limit)
    n = len(files)
    names = [s for s in a.settings.split(",") if s]
    print(f"{n} photos from {DATA.resolve()}; {a.workers} workers; {os.cpu_count()} CPUs")
    rates: dict[str, list[float]] = {k: [] for k in ["plain"] + names}
    people: dict[str, int] = {}
    rss = {}
    for r in range(a.repeat):
        (t_plain, found), rss["plain"], _ = fresh(plain_loop, files)
        rates["plain"].append(n / t_plain)
        people["plain"] = found
        line = [f"plain {n / t_plain:5.1f}"]
        for k in names:
            (t, s), rss_main, rss_worker = fresh(ours, files, a.workers, k)
            rates[k].append(n / t)
            people[k] = s["people"]
            rss[k] = (rss_main, rss_worker)
            line.append(f"{k} {n / t:5.1f}")
        print(f"  run {r + 1} (images/s): " + ", ".join(line))
    med = statistics.median
    base = med(rates["plain"])
    label = {"plain": "plain mp.solutions.pose loop, 1 process", "default": "prefill (default: detector + Heavy + signals)",
             "tta": "prefill --tta, the same + re-runs on Full",
             "fast": "prefill --no-tta, detector + Full", "multi": "prefill --no-tta, engine multi + Full",
             "nomirror": "prefill, without MoveNet's mirrored look"}
    print(f"{'':48s} images/s   people/s  people found  vs plain")
    for k in ["plain"] + names:
        m = med(rates[k])
        print(f"{label[k]:48s} {m:8.1f} {m * people[k] / n:10.1f} {people[k]:13d} {m / base:8.2f}x")
    print(f"peak RSS MB: plain loop {rss['plain']:.0f}; " + "; ".join(
        f"{k} main {rss[k][0]:.0f}, worker {rss[k][1]:.0f}" for k in names))


if __name__ == "__main__":
    main()
