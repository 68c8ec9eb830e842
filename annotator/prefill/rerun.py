"""The landmark model run again on other views of each person found: the raw material of the
review signals (annotator.review.suspicion turns these into features and a probability).

Pre-fill calls tta_for_poses in its workers while the image is decoded anyway; `suspicion --tta`
calls compute_tta for people whose features are missing or were made by an older crop set.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from annotator.core import skeleton as sk
from annotator.prefill import estimator as E
from annotator.prefill.blazepose import alignment_roi, aux_from_body, crop_affine, square_roi
from annotator.review.suspicion import _image_ids, load_tta, save_tta, tta_area, tta_features

# Transformed crops for TTA: (name, mirrored, scale factor, rotation in degrees[, shift x, shift y]),
# shifts as fractions of the crop side along the crop's own axes. The four 8% shifts rank the
# needs-fixing points better on both halves of pose-gt-dev (AUC 0.882 -> 0.894 and 0.889 -> 0.908;
# notes/close_issue4.md) for 4 more landmark runs per person. No rotated crops and no zoomed-out
# crop: MediaPipe turns every ROI upright and frames the person at one size, so a crop turned by
# +-15 degrees or holding the person at 1/1.2 of that size measures how the network copes with a
# view it never sees, not how sure it is of a point. Without the rotations the mean ranks the
# needs-fixing points better on both halves of pose-gt-dev and in 5-fold cross-validation; without
# the 1.2x crop too, better again (a nested backward elimination over 5 x 5 folds drops it first
# in 20 of 25): 3 landmark runs fewer a person (notes/close_issue4_s10.md). tta_predictions still
# takes any transform for callers that want them.
TTA_VARIANTS: tuple[tuple, ...] = (
    ("flip", True, 1.0, 0.0),
    ("scale_down", False, 0.85, 0.0),
    ("shift_right", False, 1.0, 0.0, 0.08, 0.0),
    ("shift_left", False, 1.0, 0.0, -0.08, 0.0),
    ("shift_down", False, 1.0, 0.0, 0.0, 0.08),
    ("shift_up", False, 1.0, 0.0, 0.0, -0.08),
)


# Zoomed part crops: the landmark model on a crop PART_SCALE x the ROI's side, centred on one part's
# points (legs and feet; the rest of the body), each part's points read from its own crop and merged
# into one more variant, "parts". A closer, differently framed view is more independent of the
# original run than a whole-body transform: added to the nine crops of then (the six above, a 1.2x
# crop and two rotations) it ranked the needs-fixing points better on both halves of pose-gt-dev and in
# 5-fold cross-validation (recall@20% 0.700 -> 0.717 held-out, 0.659 -> 0.682 swapped, 0.647 ->
# 0.672 5-fold; notes/close_issue4_s9.md) for 2 more landmark runs per person.
PART_SCALE = 0.8


PARTS: tuple[tuple[int, ...], ...] = (tuple(range(0, 23)), tuple(range(23, sk.N)))


def roi_from_points(xy: np.ndarray) -> tuple:
    """MediaPipe's landmarks-to-ROI rule for a stored person (no auxiliary points kept):
    (cx, cy, w, h, rotation in radians) from blazepose.aux_from_body."""
    aux = aux_from_body(np.asarray(xy, np.float64))
    return alignment_roi(aux[0], aux[1])


def tta_predictions(estimator, rgb: np.ndarray, roi: tuple,
                    variants=TTA_VARIANTS, mirrored_rgb: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The landmark model on transformed crops of one person, mapped back to the image's labels.

    estimator: anything with predict_roi(rgb, roi) -> pose with .xy (33, 2) pixels.
    Mirroring flips the image and the ROI, then flips x back and swaps left/right,
    so a consistent model gives the same points as on the original crop.
    """
    h, w = rgb.shape[:2]
    cx, cy, rw, rh, rot = roi
    out = {}
    for name, mirrored, s, deg, *shift in variants:
        dx, dy = (shift[0] * rw, shift[1] * rh) if shift else (0.0, 0.0)
        c, sn = math.cos(rot), math.sin(rot)
        r = (cx + dx * c - dy * sn, cy + dx * sn + dy * c, rw * s, rh * s, rot + math.radians(deg))
        if mirrored:
            if mirrored_rgb is None:
                mirrored_rgb = np.ascontiguousarray(rgb[:, ::-1])
            r = (w - r[0], r[1], r[2], r[3], -r[4])
            xy = np.asarray(estimator.predict_roi(mirrored_rgb, r).xy, np.float64)[:sk.N].copy()
            xy[:, 0] = w - xy[:, 0]
            xy = xy[list(sk.FLIP)]
        else:
            xy = np.asarray(estimator.predict_roi(rgb, r).xy, np.float64)[:sk.N]
        out[name] = xy
    return out


def part_predictions(estimator, rgb: np.ndarray, roi: tuple, xy: np.ndarray, scale: float = PART_SCALE,
                     parts=PARTS) -> dict[str, np.ndarray]:
    """{"parts": (33, 2)}: each part's points as the landmark model places them on a crop `scale` x
    the ROI's side (same rotation), centred on the box of that part's points in `xy`."""
    _, _, side, _, rot = square_roi(roi)
    xy = np.asarray(xy, np.float64)[:sk.N]
    out = xy.copy()
    for idx in parts:
        idx = list(idx)
        c = (xy[idx].min(0) + xy[idx].max(0)) / 2.0
        pred = np.asarray(estimator.predict_roi(rgb, (float(c[0]), float(c[1]), side * scale, side * scale, rot)).xy,
                          np.float64)
        out[idx] = pred[idx]
    return {"parts": out}


def heat_stats(estimator, rgb: np.ndarray, roi: tuple, xy: np.ndarray, window: int = 7,
               hm: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(heatmap peak near each point, spread of each heatmap in image pixels), or None without heatmaps.

    MediaPipe's visibility says "is the joint hidden"; the heatmap peak (sigmoid, in a
    `window` of cells around the point) says how sure the network is that the joint is *here*.
    Spread: the probability-weighted radius of the heatmap's cells above half
    its maximum (a sharp peak is ~1 cell; a smeared or two-peaked map is wide).
    hm: the heatmap of the crop of `roi` when the caller has it (else the landmark model runs).
    """
    if hm is None:
        crop, _ = estimator.crop(rgb, roi)
        _, _, hm = estimator.run_landmark_model(crop)
    if hm is None:
        return None
    hm = np.asarray(hm, np.float32)
    hm = hm.reshape(hm.shape[-3:])
    hh, hw = hm.shape[:2]
    prob = 0.5 * (1.0 + np.tanh(0.5 * hm[:, :, :sk.N]))       # the sigmoid, without overflow on big logits
    A = np.vstack([crop_affine(roi, hw), [0.0, 0.0, 1.0]])
    uv = np.column_stack([np.asarray(xy, float)[:sk.N], np.ones(sk.N)]) @ np.linalg.inv(A)[:2].T
    r = window // 2
    out = np.zeros(sk.N)
    spread = np.zeros(sk.N)
    cell = float(np.linalg.norm(A[:2, 0]))                 # image pixels per heatmap cell
    yy, xx = np.mgrid[0:hh, 0:hw] + 0.5
    for i in range(sk.N):
        u, v = int(math.floor(uv[i, 0])), int(math.floor(uv[i, 1]))
        win = prob[max(v - r, 0):max(v + r + 1, 0), max(u - r, 0):max(u + r + 1, 0), i]
        out[i] = float(win.max()) if win.size else 0.0
        m = prob[:, :, i]
        m = np.where(m > 0.5 * m.max(), m, 0.0)
        tot = float(m.sum())
        if tot > 0:
            mx, my = float((m * xx).sum()) / tot, float((m * yy).sum()) / tot
            spread[i] = math.sqrt(float((m * ((xx - mx) ** 2 + (yy - my) ** 2)).sum()) / tot) * cell
    return out, spread


def person_tta_features(estimator, rgb: np.ndarray, xy: np.ndarray, roi: tuple | None = None,
                        mirrored_rgb: np.ndarray | None = None, hm: np.ndarray | None = None,
                        pose=None, views: bool = True) -> dict[str, np.ndarray]:
    """Everything the extra model runs say about one person: the transformed crops, the part crops
    and the heatmap (hm: the crop of `roi`'s heatmap when already computed).

    views=False: no landmark runs at all, only what is free: the engine's own signals (pose) and
    the heatmap when `hm` is given. Pre-fill's default (prefill.tta off): on pose-gt-dev the eight
    re-runs add nothing to the queue at 20% next to the engine's two-model signals (docs/review.md)."""
    xy = np.asarray(xy, np.float64)[:sk.N]
    roi = tuple(roi) if roi is not None else roi_from_points(xy)
    variants = {}
    if views:
        variants = tta_predictions(estimator, rgb, roi, mirrored_rgb=mirrored_rgb)
        variants.update(part_predictions(estimator, rgb, roi, xy))
    hs = heat_stats(estimator, rgb, roi, xy, hm=hm) if views or hm is not None else None
    return tta_features(xy, variants, None if hs is None else hs[0], area=tta_area(xy, rgb.shape[1], rgb.shape[0]),
                        heat_spread_px=None if hs is None else hs[1],
                        engine_gap_px=getattr(pose, "engine_gap", None), engine_conf=getattr(pose, "engine_conf", None),
                        point_doubt=getattr(pose, "point_doubt", None), label_doubt=getattr(pose, "label_doubt", None))


@dataclass
class TtaJob:
    """The people of one image whose re-run features are to be made (suspicion --tta)."""
    image_id: int
    path: str
    frame_index: int | None            # None: a photo
    people: list[tuple[int, np.ndarray]]   # (person id, points)


def run_tta_job(estimator, job: TtaJob, videos: dict) -> tuple[int, list | None]:
    """(image id, [(person id, points, features)]), or None for the people when the image no
    longer reads (it is skipped, as before). `videos` caches open video readers by path."""
    from pathlib import Path

    from annotator.core import media
    from annotator.core.errors import UserError
    try:
        if job.frame_index is None:
            rgb = media.load_image(Path(job.path))
        else:
            if job.path not in videos:
                for old in videos.values():
                    old.close()
                videos.clear()
                videos[job.path] = media.VideoReader(Path(job.path))
            rgb = videos[job.path].read(job.frame_index)
    except UserError:
        return job.image_id, None
    mirrored = np.ascontiguousarray(rgb[:, ::-1])
    runner = getattr(estimator, "rerun", estimator)
    return job.image_id, [(pid, xy, person_tta_features(runner, rgb, xy, mirrored_rgb=mirrored))
                          for pid, xy in job.people]


_WORKER_VIDEOS: dict = {}


def _tta_task(job: TtaJob):
    """run_tta_job in a pre-fill worker process, with the estimator prefill._init_worker made."""
    if E._INIT_ERROR is not None:
        raise E._INIT_ERROR
    return run_tta_job(E._EST, job, _WORKER_VIDEOS)


def compute_tta(project, image_ids: Iterable[int] | None = None, estimator=None, force: bool = False,
                progress=None, workers: int = 1) -> dict:
    """Run the TTA predictions for people that lack current ones; store their features.

    workers > 1 (and no estimator given): in that many processes, as pre-fill does, since
    after a change of the re-run crops every person of a project needs them again.
    """
    store = project.store
    ids = _image_ids(store, image_ids)
    t0 = time.perf_counter()
    jobs = []
    for iid in ids:
        frame = store.load_frame(iid)
        todo = [p for p in frame.persons if p.id is not None and not p.fully_verified
                and (force or load_tta(store, p.id, p.xy, p.verified) is None)]
        if todo:
            row = store.image(iid)
            jobs.append(TtaJob(iid, str(project.source_path(row)), row.frame_index if row.kind == "video" else None,
                               [(p.id, p.xy) for p in todo]))
        elif progress:
            progress(1)
    done = 0
    pool = None
    try:
        if estimator is None and workers > 1 and len(jobs) > 1:
            import multiprocessing as mp

            from annotator.prefill.workers import Workers
            from annotator.prefill.workers import results as workers_results
            pool = Workers(workers, _tta_task, E._init_worker, (E.estimator_settings(project.settings), None, False),
                           mp.get_context(E._start_method()))
            # an image whose worker died is skipped, like one that no longer reads
            results = workers_results(pool.run(jobs), lambda job, err: (job.image_id, None), "suspicion --tta")
        else:
            if estimator is None and jobs:
                estimator = E.make_estimator(E.estimator_settings(project.settings))
            videos: dict = {}
            results = (run_tta_job(estimator, job, videos) for job in jobs)
        for _, people in results:
            if people:
                with store.tx():
                    for pid, xy, feats in people:
                        save_tta(store, pid, xy, feats)
                done += len(people)
            if progress:
                progress(1)
    finally:
        if pool is not None:
            pool.close()
    return {"images": len(ids), "people": done, "seconds": time.perf_counter() - t0}


def tta_for_poses(estimator, rgb: np.ndarray, poses: list, views: bool = True) -> list[dict[str, np.ndarray]]:
    """In a pre-fill worker, right after predict(): every found person's TTA features, on the
    ROI the engine used (pose.roi), while the image is decoded anyway (8 landmark runs a person
    with views, none without; the heatmap of predict()'s own run on that ROI is reused when the
    estimator kept it)."""
    mirrored = np.ascontiguousarray(rgb[:, ::-1]) if views else None
    heat = getattr(estimator, "heatmap_of", lambda pose: None)
    runner = getattr(estimator, "rerun", estimator)     # a cheaper landmark model when the engine has one
    return [person_tta_features(runner, rgb, pose.xy, getattr(pose, "roi", None), mirrored, heat(pose), pose, views)
            for pose in poses]

