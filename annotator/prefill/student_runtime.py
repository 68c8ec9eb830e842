"""Run a saved student (a distillation round's weights) inside PoseEstimator.

Pre-fill, re-prediction and cvat_function call the landmark network through
`PoseEstimator.landmark_fn`; this module fills that hook with a student.
Inference goes through onnxruntime when it is installed (about 10x faster than
eager torch on CPU: ~25 ms vs ~300 ms a crop), using an ONNX file exported
once next to the weights and checked against torch when it is written.

MediaPipe refines its regressed points from heatmaps (blazepose.refine_from_heatmap),
which is worth more than a small fine-tune can learn back; but the heatmap
branch is not what the student trains. So the runtime network has two heads
on the same features: the student's and MediaPipe's original one, and the
student's points are moved by the refinement offset MediaPipe's own points
get on that crop: student + (refine(mediapipe) - mediapipe). An untrained
student therefore gives exactly MediaPipe's refined points, and training
(distill.py) fits the student's head to targets minus that same offset.

A spec is "PATH" or "PATH#sha256=HEX" (what rounds_registry.resolve_model
returns); with a hash the weights are refused unless they match it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from annotator.core.errors import UserError

RUN_OUTPUTS = ("landmarks", "base_landmarks", "pose_flag", "heatmap")
TRAIN_OUTPUTS = ("features", "base_landmarks", "heatmap")
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
    from annotator.prefill.student import Student
    return Student.load(path, sha256=sha, threads=threads)


def onnx_cache_path(path: Path, sha: str) -> Path:
    return path.with_name(f"{path.name}.{sha[:16]}.rt4.onnx")


def export_checked(student, out, outputs=RUN_OUTPUTS, crop: np.ndarray | None = None) -> dict:
    """Export to ONNX and check onnxruntime against torch on one crop; returns the differences.

    Raises UserError when onnxruntime is missing or the outputs disagree.
    """
    import torch
    ort = _ort()
    if ort is None:
        raise UserError(f"ONNX export check needs onnxruntime ({INSTALL_HINT})")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    from annotator.prefill.tflite_torch import export_tuple_net
    net = runtime_net(student, outputs)
    export_tuple_net(net, list(net.names), tmp)
    if crop is None:
        crop = np.random.default_rng(0).random((1, 256, 256, 3), dtype=np.float32)
    crop = np.asarray(crop, np.float32).reshape(1, 256, 256, 3)
    sess = _session(tmp, 1)
    got = sess.run(None, {"input_1": crop})
    with torch.inference_mode():
        ref = net(torch.from_numpy(crop))
    diffs = {n: float(np.abs(r.numpy() - g).max()) for n, r, g in zip(outputs, ref, got)}
    if max(diffs.get("landmarks", 0.0), diffs.get("base_landmarks", 0.0)) > ONNX_TOLERANCE_PX \
            or diffs.get("pose_flag", 0.0) > 1e-3:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{out}: ONNX export disagrees with torch ({diffs})")
    os.replace(tmp, out)
    return diffs


_BASE = {}


def backbone_is_base(student) -> bool:
    """True when only the landmark head differs from MediaPipe's network (every 'head' round)."""
    import torch
    base = _base()
    head = {id(p) for p in student.module.head_parameters("landmarks")}
    bp = dict(base.named_parameters())
    for name, p in student.module.named_parameters():
        if id(p) not in head and (name not in bp or not torch.equal(p.detach(), bp[name].detach())):
            return False
    return True


def _base():
    from annotator.prefill.tflite_torch import load_pose_landmark
    if "base" not in _BASE:
        _BASE["base"] = load_pose_landmark().eval()
    return _BASE["base"]


def runtime_net(student, outputs=RUN_OUTPUTS):
    """torch module: NHWC crop -> tuple of `outputs`.

    'landmarks' and 'features' are the student's; 'base_landmarks',
    'pose_flag' and 'heatmap' are MediaPipe's own on the same crop: its
    original head on the student's features when the backbone is unchanged
    (one pass), else the whole original network beside the student (two
    passes), so which detections count as people and how far refinement
    moves a point stay exactly MediaPipe's (a fine-tuned backbone's
    unsupervised pose flag and heatmaps drift).
    """
    import torch

    from annotator.prefill.tflite_torch import FEATURES
    base = _base()
    names = tuple(outputs)
    shared = backbone_is_base(student)

    class RuntimeNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.student, self.base = student.module, base
            self.names = names
            self.shared = shared

        def forward(self, x):
            mine = {"landmarks", FEATURES} & set(names)
            if self.shared:
                mine |= {FEATURES} | ({"pose_flag", "heatmap"} & set(names))
            out = self.student(x, tuple(sorted(mine)))
            if self.shared:
                if "base_landmarks" in names:
                    out["base_landmarks"] = self.base.forward_from(FEATURES, out[FEATURES], ("landmarks",))["landmarks"]
            else:
                want = {"pose_flag", "heatmap", "base_landmarks"} & set(names)
                if want:
                    b = self.base(x, tuple(sorted({"landmarks" if n == "base_landmarks" else n for n in want})))
                    if "base_landmarks" in want:
                        b["base_landmarks"] = b.pop("landmarks")
                    out.update(b)
            return tuple(out[n] for n in names)

    return RuntimeNet().eval()


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


def refinement_offset(base_raw, heatmap, size: int = 256) -> np.ndarray:
    """(K, 2) crop pixels: how far MediaPipe's heatmap refinement moves its own regressed points."""
    from annotator.prefill.blazepose import refine_from_heatmap
    b = np.asarray(base_raw, np.float64).reshape(-1, 5)
    ref = refine_from_heatmap(b[:, :2] / size, heatmap) * size
    return ref - b[:, :2]


def with_refinement(raw, base_raw, heatmap, size: int = 256) -> np.ndarray:
    """The student's raw landmarks (K*5,) moved by MediaPipe's refinement offset on this crop."""
    r = np.array(raw, np.float64).reshape(-1, 5)
    r[:, :2] += refinement_offset(base_raw, heatmap, size)
    return r.reshape(-1)


def _gated(raw, flag: float, heatmap, min_keypoint_conf: float | None):
    """(raw, flag, None): the refinement is already in `raw`, so no heatmap goes to decode_landmarks;
    but PoseEstimator also drops a detection whose heatmaps are unsure (mean
    peak below min_keypoint_conf), and without a heatmap that check would
    pass everybody. So the check is applied here: such a crop gets pose flag 0.
    """
    if heatmap is not None and min_keypoint_conf is not None:
        hm = np.asarray(heatmap, np.float32).reshape(-1, np.shape(heatmap)[-1])[:, :33]
        hconf = float((1.0 / (1.0 + np.exp(-hm.max(0)))).mean())
        if hconf < min_keypoint_conf:
            flag = 0.0
    return raw, flag, None


class OrtLandmarks:
    """landmark_fn on an ONNX session: crop (256, 256, 3) -> (raw (195,), pose flag, None)."""

    def __init__(self, path, threads: int = 1, min_keypoint_conf: float | None = None):
        self.path = str(path)
        self.sess = _session(path, threads)
        self.names = [o.name for o in self.sess.get_outputs()]
        self.min_keypoint_conf = min_keypoint_conf

    def run(self, batch: np.ndarray, names=None) -> dict:
        out = self.sess.run(names, {"input_1": np.asarray(batch, np.float32)})
        return dict(zip(names or self.names, out))

    def __call__(self, crop: np.ndarray):
        o = self.run(np.asarray(crop, np.float32)[None], list(RUN_OUTPUTS))
        raw = with_refinement(o["landmarks"][0], o["base_landmarks"][0], o["heatmap"][0])
        return _gated(raw, float(o["pose_flag"].reshape(-1)[0]), o["heatmap"], self.min_keypoint_conf)


class TorchLandmarks:
    """landmark_fn on eager torch (when onnxruntime is not installed)."""

    def __init__(self, student, min_keypoint_conf: float | None = None):
        self.student = student
        self.min_keypoint_conf = min_keypoint_conf
        self.net = None

    def __call__(self, crop: np.ndarray):
        import torch
        if self.net is None:
            self.net = runtime_net(self.student, RUN_OUTPUTS)
        with torch.inference_mode():
            lm, base, flag, hm = (t.numpy() for t in self.net(torch.from_numpy(np.asarray(crop, np.float32)[None])))
        raw = with_refinement(lm[0], base[0], hm[0])
        return _gated(raw, float(flag.reshape(-1)[0]), hm, self.min_keypoint_conf)


def landmark_runtime(spec, threads: int = 1, min_keypoint_conf: float | None = None):
    """The fastest available landmark_fn for a saved student (weights verified first)."""
    path, sha = parse_spec(spec)
    student = load_student(spec, threads)          # checks existence, torch, hash, format
    if _ort() is None:
        return TorchLandmarks(student, min_keypoint_conf)
    cache = onnx_cache_path(path, sha or _sha(path))
    if cache.exists():
        try:
            fn = OrtLandmarks(cache, threads, min_keypoint_conf)
            if set(RUN_OUTPUTS) <= set(fn.names):
                return fn
        except UserError:
            pass
        cache.unlink(missing_ok=True)              # a broken or outdated cache is rebuilt below
    try:
        export_checked(student, cache, RUN_OUTPUTS)
    except OSError:                                # read-only model folder: a private temp copy
        import tempfile
        cache = Path(tempfile.mkdtemp(prefix="pose-student-")) / cache.name
        export_checked(student, cache, RUN_OUTPUTS)
    return OrtLandmarks(cache, threads, min_keypoint_conf)


def _sha(path: Path) -> str:
    from annotator.prefill.student import sha256_file
    return sha256_file(path)


def attach_student(estimator, model_path_or_spec, threads: int | None = None):
    """Make `estimator` (blazepose.PoseEstimator) use a saved student for landmarks."""
    fn = landmark_runtime(model_path_or_spec, threads or getattr(estimator, "num_threads", 1) or 1,
                          getattr(estimator, "min_keypoint_conf", None))
    estimator.landmark_fn = fn
    path, _ = parse_spec(model_path_or_spec)
    estimator.name = f"student:{path.name}"
    return estimator
