"""Run a saved student (a distillation round's weights) inside PoseEstimator.

Pre-fill, re-prediction and cvat_function call the landmark network through
`PoseEstimator.landmark_fn`; this module fills that hook with a student.
Inference goes through onnxruntime when it is installed (about 10x faster than
eager torch on CPU: ~25 ms vs ~300 ms a crop), using an ONNX file exported
once next to the weights and checked against torch when it is written.

A spec is "PATH" or "PATH#sha256=HEX" (what rounds_registry.resolve_model
returns); with a hash the weights are refused unless they match it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import UserError

OUTPUTS = ("landmarks", "pose_flag")
ONNX_TOLERANCE_PX = 0.02     # torch vs onnxruntime on a real-size crop, crop pixels
INSTALL_HINT = "install with pip install .[train]"


def parse_spec(spec) -> tuple[Path, str | None]:
    s = str(spec)
    if "#sha256=" in s:
        path, sha = s.split("#sha256=", 1)
        return Path(path), sha.strip().lower() or None
    return Path(s), None


def make_spec(path, sha256: str | None) -> str:
    return f"{path}#sha256={sha256}" if sha256 else str(path)


def _torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError(f"student models need torch ({INSTALL_HINT})") from None


def _ort():
    try:
        import onnxruntime
        return onnxruntime
    except ImportError:
        return None


def load_student(spec, threads: int = 1):
    """Student with its weights checked against the spec's sha256 (UserError if missing/bad)."""
    path, sha = parse_spec(spec)
    if not path.exists():
        raise UserError(f"{path}: no such student weights file")
    _torch()
    from .student import Student
    return Student.load(path, sha256=sha, threads=threads)


def onnx_cache_path(path: Path, sha: str) -> Path:
    return path.with_name(f"{path.name}.{sha[:16]}.onnx")


def export_checked(student, out, outputs=OUTPUTS, crop: np.ndarray | None = None) -> dict:
    """Export to ONNX and check onnxruntime against torch on one crop; returns the differences.

    Raises UserError when onnxruntime is missing or the outputs disagree.
    """
    import torch

    from .tflite_torch import export_onnx
    ort = _ort()
    if ort is None:
        raise UserError(f"ONNX export check needs onnxruntime ({INSTALL_HINT})")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    export_onnx(student.module, tmp, list(outputs))
    if crop is None:
        crop = np.random.default_rng(0).random((1, 256, 256, 3), dtype=np.float32)
    crop = np.asarray(crop, np.float32).reshape(1, 256, 256, 3)
    sess = _session(tmp, 1)
    got = sess.run(None, {"input_1": crop})
    with torch.inference_mode():
        ref = student.module(torch.from_numpy(crop), tuple(outputs))
    diffs = {n: float(np.abs(ref[n].numpy() - g).max()) for n, g in zip(outputs, got)}
    if diffs.get("landmarks", 0.0) > ONNX_TOLERANCE_PX or diffs.get("pose_flag", 0.0) > 1e-3:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{out}: ONNX export disagrees with torch ({diffs})")
    os.replace(tmp, out)
    return diffs


def _session(path, threads: int):
    ort = _ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:   # onnxruntime raises its own exception types for bad files
        raise UserError(f"{path}: not a loadable ONNX model ({type(e).__name__})") from None


class OrtLandmarks:
    """landmark_fn on an ONNX session: crop (256, 256, 3) -> (raw (195,), pose flag, None)."""

    def __init__(self, path, threads: int = 1):
        self.path = str(path)
        self.sess = _session(path, threads)
        self.names = [o.name for o in self.sess.get_outputs()]

    def run(self, batch: np.ndarray, names=None) -> dict:
        out = self.sess.run(names, {"input_1": np.asarray(batch, np.float32)})
        return dict(zip(names or self.names, out))

    def __call__(self, crop: np.ndarray):
        o = self.run(np.asarray(crop, np.float32)[None], list(OUTPUTS))
        # no heatmap: the heatmap branch is not trained, and refining from it would pull the
        # student's points back towards where MediaPipe put them
        return o["landmarks"][0], float(o["pose_flag"].reshape(-1)[0]), None


class TorchLandmarks:
    """landmark_fn on eager torch (when onnxruntime is not installed)."""

    def __init__(self, student):
        self.student = student

    def __call__(self, crop: np.ndarray):
        import torch
        with torch.inference_mode():
            o = self.student.module(torch.from_numpy(np.asarray(crop, np.float32)[None]), OUTPUTS)
        return o["landmarks"][0].numpy(), float(o["pose_flag"].reshape(-1)[0]), None


def landmark_runtime(spec, threads: int = 1):
    """The fastest available landmark_fn for a saved student (weights verified first)."""
    path, sha = parse_spec(spec)
    student = load_student(spec, threads)          # checks existence, torch, hash, format
    if _ort() is None:
        return TorchLandmarks(student)
    cache = onnx_cache_path(path, sha or _sha(path))
    if cache.exists():
        try:
            return OrtLandmarks(cache, threads)
        except UserError:
            cache.unlink(missing_ok=True)          # a broken cache is rebuilt below
    export_checked(student, cache)
    return OrtLandmarks(cache, threads)


def _sha(path: Path) -> str:
    from .student import sha256_file
    return sha256_file(path)


def attach_student(estimator, model_path_or_spec, threads: int | None = None):
    """Make `estimator` (blazepose.PoseEstimator) use a saved student for landmarks."""
    fn = landmark_runtime(model_path_or_spec, threads or getattr(estimator, "num_threads", 1) or 1)
    estimator.landmark_fn = fn
    path, _ = parse_spec(model_path_or_spec)
    estimator.name = f"student:{path.name}"
    return estimator
