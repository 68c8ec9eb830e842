"""Which pose estimator a run uses, and the per-process state of the workers that run it.

Shared by the pre-fill run, the re-runs for review signals (rerun.py), distillation, the app's
"add person" and the CVAT function, so they all build the estimator from project.toml the same way.
"""
from __future__ import annotations

import os

import numpy as np

from annotator.core.errors import UserError
from annotator.core.model import NOT_LABELLED, OCCLUDED, VISIBLE, Person, template_person

def to_person(pose, width: int, height: int, vis_threshold: float = 0.5) -> Person:
    """A model's PersonPose -> Person: conf = visibility x presence, vis state thresholded (track id kept).

    A point outside the image, or one the per-box pose model does not see (pose.unseen), is
    stored as not labelled, its guess and confidence kept so the app can bring it back with one
    key: annotators label nothing there, and a confident guess is a click to remove. On
    pose-gt-dev 31 of 33 points off the edge had no label, and hiding MoveNet's points under 0.2
    took the unlabel clicks from 3.2 to 1.2 a person (bench/engine.py).
    """
    vis = np.asarray(pose.visibility, dtype=np.float64)
    pres = np.asarray(pose.presence, dtype=np.float64) if getattr(pose, "presence", None) is not None \
        and len(pose.presence) else np.ones_like(vis)
    conf = np.clip(vis * pres, 0.0, 1.0)
    xy = np.asarray(pose.xy, dtype=np.float64)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    state = np.where(conf >= vis_threshold, VISIBLE, OCCLUDED).astype(np.int8)
    state[~inside] = NOT_LABELLED
    unseen = getattr(pose, "unseen", None)
    if unseen is not None:                  # the per-box pose model sees nothing there (engine "detector")
        state[np.asarray(unseen, bool)] = NOT_LABELLED
    return Person(xy, state, conf, score=float(pose.score), track_id=getattr(pose, "track_id", None))


def person_in_user_box(estimator, rgb: np.ndarray, box_xywh) -> tuple[Person, object | None]:
    """(person, the engine's pose or None) for a box an annotator drew around someone: the engine's
    pose inside it, or, when it sees nobody there, a template of hidden guesses (the annotator said
    a person is there; the template invents no joint they do not have). The app's "add person (box)"
    and bench/add_person.py both call this."""
    pose = estimator.predict_in_box(rgb, box_xywh)
    if pose is None:
        return template_person(box_xywh, guesses=True), None
    return to_person(pose, rgb.shape[1], rgb.shape[0]), pose


def default_model_name(kwargs: dict) -> str:
    from importlib.metadata import version
    variant = {0: "lite", 1: "full", 2: "heavy"}.get(kwargs.get("model_complexity", 1), "full")
    engine = "nanodet+movenet+" if kwargs.get("engine") == "detector" else ""
    return f"{engine}blazepose-{variant}/mediapipe-{version('mediapipe')}"


def estimator_settings(settings: dict) -> dict:
    s = settings["prefill"]
    out = {"engine": s["engine"], "model_complexity": int(s["model_complexity"]),
           "min_detection_confidence": float(s["min_detection_confidence"]),
           "min_pose_presence": float(s["min_pose_presence"]), "max_people": int(s["max_people"])}
    for k in ("min_keypoint_conf", "tiles", "nms_iou"):      # multi-person engine thresholds (blazepose.py)
        if k in s:
            out[k] = float(s[k])
    if out["engine"] == "detector":
        for k in ("box_min_score", "min_person_score", "unseen_below", "fuse_max_term", "pose_flag_weight",
                  "min_person_px"):
            if k in s:
                out[k] = float(s[k])
        if "hide_points" in s:
            out["hide_points"] = str(s["hide_points"])
        if "rerun_complexity" in s:
            out["rerun_complexity"] = int(s["rerun_complexity"])
        for k in ("second_look", "mirror_scores"):
            if k in s:
                out[k] = bool(s[k])
    return out


def make_estimator(kwargs: dict, landmark_model: str | None = None):
    from annotator.prefill.blazepose import PoseEstimator
    est = PoseEstimator(**kwargs)
    if landmark_model:
        from annotator.prefill.student_runtime import attach_student
        attach_student(est, landmark_model)
    return est


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
    from annotator.prefill import blazepose  # noqa: F401  imported once here, inherited by the workers
    from annotator.core import media  # noqa: F401
    from annotator.review import suspicion  # noqa: F401
    import ai_edge_litert.interpreter  # noqa: F401
    return "fork"

