"""Pre-fill: every person in every not-yet-done image gets 33 predicted points.

Decoding and inference run in worker processes (one model per process, so
both cores work); only the main process writes to the database, one
transaction per image, so a killed run loses at most the images in flight
and a rerun resumes where it stopped. Video frames go to a worker in runs of
consecutive frames so the tracker carries people from frame to frame.

With `prefill.tta` (default on), the worker also runs the landmark model on
transformed crops of every person it found (suspicion.tta_for_poses) while the
image is decoded anyway; the main process stores those features in the same
transaction as the points. The new images' suspicion scores are computed in
batches while the workers run (video frames at the end), so the review queue
is ordered right away.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError
from .model import OCCLUDED, VISIBLE, Person
from .project import Project
from .workers import WorkerDied, Workers
from .workers import results as workers_results

VIDEO_CHUNK = 32
SCORE_BATCH = 32        # photos scored for the review queue together, during the run
TRACK_BLOCK = 1000      # track ids of a tracked run of frames start at (first frame index) * TRACK_BLOCK


def to_person(pose, width: int, height: int, vis_threshold: float = 0.5) -> Person:
    """A model's PersonPose -> Person: conf = visibility x presence, vis state thresholded (track id kept)."""
    vis = np.asarray(pose.visibility, dtype=np.float64)
    pres = np.asarray(pose.presence, dtype=np.float64) if getattr(pose, "presence", None) is not None \
        and len(pose.presence) else np.ones_like(vis)
    conf = np.clip(vis * pres, 0.0, 1.0)
    xy = np.asarray(pose.xy, dtype=np.float64)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    state = np.where((conf >= vis_threshold) & inside, VISIBLE, OCCLUDED).astype(np.int8)
    return Person(xy, state, conf, score=float(pose.score), track_id=getattr(pose, "track_id", None))


def default_model_name(kwargs: dict) -> str:
    from importlib.metadata import version
    variant = {0: "lite", 1: "full", 2: "heavy"}.get(kwargs.get("model_complexity", 1), "full")
    return f"blazepose-{variant}/mediapipe-{version('mediapipe')}"


def estimator_settings(settings: dict) -> dict:
    s = settings["prefill"]
    out = {"engine": s["engine"], "model_complexity": int(s["model_complexity"]),
           "min_detection_confidence": float(s["min_detection_confidence"]),
           "min_pose_presence": float(s["min_pose_presence"]), "max_people": int(s["max_people"])}
    for k in ("min_keypoint_conf", "tiles", "nms_iou"):      # multi-person engine thresholds (blazepose.py)
        if k in s:
            out[k] = float(s[k])
    return out


def make_estimator(kwargs: dict, landmark_model: str | None = None):
    from .blazepose import PoseEstimator
    est = PoseEstimator(**kwargs)
    if landmark_model:
        from .student_runtime import attach_student
        attach_student(est, landmark_model)
    return est


# -- worker side --------------------------------------------------------------
_EST = None
_TTA = False
_INIT_ERROR: Exception | None = None


def _init_worker(kwargs: dict, landmark_model: str | None, tta: bool = False) -> None:
    """Never raises: the error is kept and raised by the first task instead, which the main
    process receives and reports as one line (a worker that died in its initializer would be
    replaced and die again)."""
    global _EST, _TTA, _INIT_ERROR
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _INIT_ERROR = None
    try:
        _EST = make_estimator(kwargs, landmark_model)
    except Exception as e:          # noqa: BLE001 - handed to the main process by _run_task
        _INIT_ERROR = e if isinstance(e, UserError) else UserError(f"the pose model did not load: {e}")
    _TTA = bool(tta)


def _tta(rgb, poses) -> list | None:
    """The re-run suspicion signals for the poses just found (None when off or nobody found)."""
    if not _TTA or not poses:
        return None
    from .suspicion import tta_for_poses
    return tta_for_poses(_EST, rgb, poses)


@dataclass
class Task:
    """image ids with their file: one photo, or consecutive frames of one video."""
    path: str
    kind: str
    items: list[tuple[int, int | None, int | None, int | None]]   # (image id, frame index, w, h)


def _run_task(task: Task) -> list[tuple[int, tuple[int, int] | None, list | None, str | None, list | None]]:
    """(image id, (w, h), poses, error, TTA features per pose or None) per image of the task."""
    from . import media
    if _INIT_ERROR is not None:
        raise _INIT_ERROR
    out = []
    if task.kind == "image":
        for image_id, _, _, _ in task.items:
            try:
                rgb = media.load_image(Path(task.path))
                poses = _EST.predict(rgb)
                out.append((image_id, (rgb.shape[1], rgb.shape[0]), poses, None, _tta(rgb, poses)))
            except UserError as e:
                out.append((image_id, None, None, str(e), None))
        return out
    try:
        reader = media.VideoReader(Path(task.path))
    except UserError as e:
        return [(i, None, None, str(e), None) for i, _, _, _ in task.items]
    prev: list = []
    last = None
    for image_id, fi, _, _ in task.items:
        try:
            rgb = reader.read(fi)
            contiguous = last is not None and fi - last <= 5
            if contiguous and prev:
                poses = _EST.track(rgb, prev)
            else:
                # a new tracked run: ids unique within the video (runs in other chunks/workers start
                # elsewhere), so propagation never takes two people of different runs as one
                poses = _EST.predict(rgb)
                for k, p in enumerate(poses):
                    p.track_id = fi * TRACK_BLOCK + k
            prev, last = poses, fi
            out.append((image_id, (rgb.shape[1], rgb.shape[0]), poses, None, _tta(rgb, poses)))
        except UserError as e:
            out.append((image_id, None, None, str(e), None))
            prev, last = [], None
    reader.close()
    return out


# -- main side -----------------------------------------------------------------
_NO_FORK = ("torch", "dearpygui", "onnxruntime", "mediapipe")


def _start_method() -> str:
    """'fork' when it is safe, else 'spawn'.

    Forked workers inherit the modules this process imported (numpy, OpenCV, LiteRT: ~0.35 s
    a spawned worker spends importing before its first image). Forking is unsafe with other
    threads running (a lock they hold stays locked in the child) or with torch's OpenMP pool,
    MediaPipe's graph runtime (measured: a forked child of a process that ran mp.solutions
    corrupts its heap and hangs) or a Dear PyGui/GL context loaded, so those processes (tests,
    the app, distillation) spawn. The children never touch the parent's SQLite connection and
    leave with os._exit.
    """
    import sys
    import threading
    if threading.active_count() > 1 or any(m in sys.modules for m in _NO_FORK):
        return "spawn"
    from . import blazepose, media, suspicion  # noqa: F401  imported once here, inherited by the workers
    import ai_edge_litert.interpreter  # noqa: F401
    return "fork"


def _lost(task: Task, err: WorkerDied) -> list:
    """The images of a task whose worker died (a crash in native code, the OOM killer): failed,
    naming the file (for video, every frame of the run: which one did it is not known).
    `prefill --retry-failed` tries them again."""
    if task.kind == "image":
        where = task.path
    else:
        where = f"{task.path} (frames {task.items[0][1]}-{task.items[-1][1]}, one of them)"
    return [(i, None, None, f"{where}: {err}", None) for i, _, _, _ in task.items]


def plan(project: Project, force: bool = False, limit: int | None = None, retry_failed: bool = False) -> list[Task]:
    st = project.store
    statuses = ("pending", "done", "failed") if force else ("pending", "failed") if retry_failed else ("pending",)
    where = f"i.status IN ({', '.join(repr(x) for x in statuses)})"
    where += (" AND NOT EXISTS (SELECT 1 FROM persons q JOIN points p ON p.person_id=q.id"
              " WHERE q.image_id=i.id AND q.deleted=0 AND p.verified=1)")
    rows = st.images(where)
    if limit is not None:
        rows = rows[:limit]
    tasks: list[Task] = []
    for r in rows:
        path = str(project.source_path(r))
        if r.kind == "image":
            tasks.append(Task(path, "image", [(r.id, None, r.width, r.height)]))
        else:
            t = tasks[-1] if tasks else None
            if t and t.kind == "video" and t.path == path and len(t.items) < VIDEO_CHUNK:
                t.items.append((r.id, r.frame_index, r.width, r.height))
            else:
                tasks.append(Task(path, "video", [(r.id, r.frame_index, r.width, r.height)]))
    return tasks


def prefill(project: Project, workers: int | None = None, force: bool = False, limit: int | None = None,
            landmark_model: str | None = None, model_name: str | None = None, progress: bool = True,
            tta: bool | None = None, retry_failed: bool = False) -> dict:
    """Pre-fill pending images, then score their suspicion; returns counts. Safe to interrupt and rerun.

    tta: also compute the re-run suspicion signals (default: project.toml prefill.tta).
    """
    kwargs = estimator_settings(project.settings)
    if tta is None:
        tta = bool(project.settings["prefill"].get("tta", True))
    workers = int(workers or project.settings["prefill"].get("workers", 2))
    from .mp_models import check_complexity
    check_complexity(kwargs["model_complexity"])       # before any worker starts: one clear line
    tasks = plan(project, force, limit, retry_failed)
    total = sum(len(t.items) for t in tasks)
    summary = {"images": total, "done": 0, "failed": 0, "people": 0, "seconds": 0.0, "tta": bool(tta),
               "suspicion_seconds": 0.0, "startup_seconds": 0.0}
    if not total:
        return summary
    # The name recorded as provenance: engine model (+ student round when used).
    if model_name is None:
        model_name = default_model_name(kwargs)
    settings = dict(kwargs, landmark_model=landmark_model, workers=workers, tta=bool(tta))
    run_id = project.store.start_run("prefill", model_name, settings)
    session = project.session()
    bar = None
    # Photos are scored for the review queue in batches while the workers run (the main process
    # is mostly waiting), video frames at the end (their scores read the neighbouring frames).
    photo_ids = {it[0] for t in tasks if t.kind == "image" for it in t.items}
    unscored: list[int] = []         # photos done since the last batch
    frames: list[int] = []           # video frames done

    def score(ids: list[int]) -> None:
        if ids:
            from .suspicion import update_suspicion
            t1 = time.time()
            update_suspicion(project, ids)
            summary["suspicion_seconds"] += time.time() - t1

    def consume(results):
        from . import suspicion
        if not summary["startup_seconds"]:      # worker start-up + first image, for the bench
            summary["startup_seconds"] = time.time() - t0
        for image_id, size, poses, err, feats in results:
            if err:
                project.store.set_image_status(image_id, "failed", err, run_id)
                summary["failed"] += 1
                if bar:
                    bar.write(f"skipped: {err}")
            else:
                w, h = size
                persons = [to_person(p, w, h) for p in poses]
                if project.store.has_verified(image_id):   # a human got there first: keep theirs
                    continue
                with project.store.tx():
                    ids = session.set_predictions(image_id, persons, model_name)
                    if feats:
                        suspicion.store_prefill_tta(project.store, ids, persons, feats)
                    project.store.set_image_status(image_id, "done", None, run_id, size=size)
                (unscored if image_id in photo_ids else frames).append(image_id)
                summary["done"] += 1
                summary["people"] += len(persons)
            if bar:
                bar.update(1)
        if len(unscored) >= SCORE_BATCH:
            score(unscored)
            unscored.clear()

    pool = None
    t0 = time.time()
    try:
        if workers <= 1:
            _init_worker(kwargs, landmark_model, tta)
            results = map(_run_task, tasks)
        else:
            pool = Workers(workers, _run_task, _init_worker, (kwargs, landmark_model, tta),
                           mp.get_context(_start_method()))
            results = workers_results(pool.run(tasks), _lost, "pre-fill")
        if progress:
            from tqdm import tqdm
            tqdm.monitor_interval = 0       # no monitor thread: a replacement worker may still fork
            bar = tqdm(total=total, unit="img", desc="pre-fill", smoothing=0.1)
        for res in results:
            consume(res)
    except BaseException:
        with contextlib.suppress(Exception):
            score(unscored + frames)    # interrupted (Ctrl+C): what was saved is scored all the same
        raise
    finally:
        if pool is not None:
            pool.close()
        if bar:
            bar.close()
        summary["seconds"] = time.time() - t0
    project.store.finish_run(run_id)
    score(unscored + frames)         # the queue is ordered right after pre-fill
    return summary
