"""Pre-fill: every person in every not-yet-done image gets 33 predicted points.

Decoding and inference run in worker processes (one model per process, so
both cores work); only the main process writes to the database, one
transaction per image, so a killed run loses at most the images in flight
and a rerun resumes where it stopped. Video frames go to a worker in runs of
consecutive frames so the tracker carries people from frame to frame.

The worker keeps every person's review signals that cost nothing (the engine's
two-model disagreement, its point model, the landmark heatmap); with `prefill.tta`
(default off) it also runs the landmark model on transformed crops of every person
(rerun.tta_for_poses). The main process stores those features in the same
transaction as the points. The new images' suspicion scores are computed in
batches while the workers run (video frames at the end), so the review queue
is ordered right away.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path


from annotator.core.errors import UserError
from annotator.core.project import Project
from annotator.prefill import estimator as E
from annotator.prefill import rerun  # the workers' re-runs; imported here so forked workers inherit it
from annotator.prefill.estimator import default_model_name, estimator_settings, make_estimator, to_person  # noqa: F401
from annotator.prefill.workers import WorkerDied, Workers
from annotator.prefill.workers import results as workers_results

VIDEO_CHUNK = 32
SCORE_BATCH = 32        # photos scored for the review queue together, during the run
TRACK_BLOCK = 1000      # track ids of a tracked run of frames start at (first frame index) * TRACK_BLOCK










# -- worker side --------------------------------------------------------------




def _tta(rgb, poses) -> list | None:
    """The review signals of the poses just found (None when nobody was found): the engine's own,
    free, and with prefill.tta the re-runs on other views too."""
    if not poses:
        return None
    return rerun.tta_for_poses(E._EST, rgb, poses, views=E._TTA)


@dataclass
class Task:
    """image ids with their file: one photo, or consecutive frames of one video."""
    path: str
    kind: str
    items: list[tuple[int, int | None, int | None, int | None]]   # (image id, frame index, w, h)


def _run_task(task: Task) -> list[tuple[int, tuple[int, int] | None, list | None, str | None, list | None]]:
    """(image id, (w, h), poses, error, TTA features per pose or None) per image of the task."""
    from annotator.core import media  # noqa: F401
    if E._INIT_ERROR is not None:
        raise E._INIT_ERROR
    out = []
    if task.kind == "image":
        for image_id, _, _, _ in task.items:
            try:
                rgb = media.load_image(Path(task.path))
                poses = E._EST.predict(rgb)
                out.append((image_id, (rgb.shape[1], rgb.shape[0]), poses, None, _tta(rgb, poses),
                            list(getattr(E._EST, "candidates", []))))
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
                poses = E._EST.track(rgb, prev)
            else:
                # a new tracked run: ids unique within the video (runs in other chunks/workers start
                # elsewhere), so propagation never takes two people of different runs as one
                poses = E._EST.predict(rgb)
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

    tta: also run the re-runs on other views for the review signals (default: project.toml
    prefill.tta, off; the free signals are kept either way).
    """
    kwargs = estimator_settings(project.settings)
    if tta is None:
        tta = bool(project.settings["prefill"]["tta"])
    workers = int(workers or project.settings["prefill"].get("workers", 2))
    from annotator.prefill.models import check_complexity
    check_complexity(kwargs["model_complexity"], legacy=kwargs.get("engine") == "legacy")  # before any worker starts
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
    if force:       # what --force redoes is pending until redone, so a killed run is resumed by `prefill`
        with project.store.tx():
            project.store.db.executemany("UPDATE images SET status='pending' WHERE id=?",
                                         [(it[0],) for t in tasks for it in t.items])
    session = project.session()
    bar = None
    # Photos are scored for the review queue in batches while the workers run (the main process
    # is mostly waiting), video frames at the end (their scores read the neighbouring frames).
    photo_ids = {it[0] for t in tasks if t.kind == "image" for it in t.items}
    unscored: list[int] = []         # photos done since the last batch
    frames: list[int] = []           # video frames done

    def score(ids: list[int]) -> None:
        if ids:
            from annotator.review.suspicion import update_suspicion
            t1 = time.time()
            update_suspicion(project, ids)
            summary["suspicion_seconds"] += time.time() - t1

    def consume(results):
        from annotator.review import missing, suspicion
        if not summary["startup_seconds"]:      # worker start-up + first image, for the bench
            summary["startup_seconds"] = time.time() - t0
        for image_id, size, poses, err, feats, *cands in results:
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
                    if cands:      # person boxes the engine rejected: the queue's missing-people term
                        project.store.set_kv(f"{missing.KV_CANDIDATES}{image_id}", [[round(v, 3) for v in c] for c in cands[0]])
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
            E._init_worker(kwargs, landmark_model, tta)
            results = map(_run_task, tasks)
        else:
            pool = Workers(workers, _run_task, E._init_worker, (kwargs, landmark_model, tta),
                           mp.get_context(E._start_method()))
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
