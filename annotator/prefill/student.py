"""The student network: MediaPipe's landmark net as a torch module, and its weights file.

The engine runs a round's weights through this (student_runtime); training is
annotator.distill.training.

Two modes of training share this network: 'head' (only the landmark output layer) and
'full' (every layer the landmarks depend on; the TFLite export folded batch-norm into the convs).
"""
from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.prefill.tflite_torch import FEATURES, TFLiteModule, load_pose_landmark

CROP = 256
N_POINTS = sk.N           # the 33 BlazePose points; the model emits 39 (6 auxiliary)
DEFAULT_THREADS = 2
FORMAT = "pose-annotator-student/1"
_FLIP = torch.tensor(sk.FLIP)


def set_threads(n: int = DEFAULT_THREADS) -> None:
    """CPU threads for torch (other work shares a small machine)."""
    torch.set_num_threads(max(1, int(n)))


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_crops(crops, what: str = "crops") -> np.ndarray:
    a = np.asarray(crops)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[1:] != (CROP, CROP, 3):
        raise ValueError(f"{what}: expected float32 (N, {CROP}, {CROP}, 3) in [0, 1], got shape {a.shape}")
    if a.dtype != np.float32:
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"{what}: expected float32 in [0, 1], got {a.dtype} (divide uint8 by 255)")
        a = a.astype(np.float32)
    return a


class Student:
    """The trainable pose landmark network (starts as an exact copy of MediaPipe's full model)."""

    def __init__(self, module: TFLiteModule | None = None, threads: int = DEFAULT_THREADS):
        set_threads(threads)
        self.threads = threads
        self.module = (module if module is not None else load_pose_landmark()).eval()

    def copy(self) -> "Student":
        return Student(copy.deepcopy(self.module), self.threads)

    # -- inference ------------------------------------------------------
    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable (N, 39, 5): the 33 points then MediaPipe's 6 auxiliary (ROI) points."""
        return self.module(x, ("landmarks",))["landmarks"].view(x.shape[0], -1, 5)

    def raw_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        out = self.module.forward_from(FEATURES, feats, ("landmarks",))["landmarks"]
        return out.view(feats.shape[0], -1, 5)

    def landmarks(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable (N, 33, 5) raw outputs for an NHWC batch tensor."""
        return self.raw(x)[:, :N_POINTS]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x, (FEATURES,))[FEATURES]

    def predict(self, crops, batch_size: int = 1) -> np.ndarray:
        """(N, 33, 5): x, y, z in crop pixels (0..256, as TFLite decodes), visibility and presence logits.

        One crop per call is the fastest on CPU (bigger batches spill the cache).
        """
        a = _check_crops(crops)
        out = []
        with torch.inference_mode():
            for i in range(0, len(a), batch_size):
                out.append(self.landmarks(torch.from_numpy(a[i:i + batch_size])).numpy())
        return np.concatenate(out) if out else np.zeros((0, N_POINTS, 5), np.float32)

    # -- persistence ----------------------------------------------------
    def save(self, path: str | os.PathLike) -> str:
        """Write the weights (state_dict) and return the file's sha256."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"format": FORMAT, "base": _base_sha(self.module.source),
                    "state_dict": self.module.state_dict()}, tmp)
        os.replace(tmp, path)
        return sha256_file(path)

    @classmethod
    def load(cls, path: str | os.PathLike, sha256: str | None = None,
             threads: int = DEFAULT_THREADS) -> "Student":
        """Rebuild from the TFLite graph and load saved weights (checked against `sha256` if given)."""
        path = Path(path)
        if not path.exists():
            raise UserError(f"{path}: no such student weights file")
        if sha256 is not None and sha256_file(path) != sha256:
            raise UserError(f"{path}: sha256 does not match the recorded one (file changed or corrupt)")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many kinds for a bad file
            raise UserError(f"{path}: not a student weights file ({type(e).__name__})") from None
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise UserError(f"{path}: not a {FORMAT} weights file")
        module = load_pose_landmark()
        if blob.get("base") != _base_sha(module.source):
            raise UserError(f"{path}: weights were trained from a different base model than {module.source}")
        try:
            module.load_state_dict(blob["state_dict"])
        except RuntimeError as e:
            raise UserError(f"{path}: weights do not fit the network ({str(e).splitlines()[0]})") from None
        return cls(module, threads)


_BASE_SHA: dict[str, str] = {}


def _base_sha(source: str) -> str:
    if source not in _BASE_SHA:
        _BASE_SHA[source] = sha256_file(source)
    return _BASE_SHA[source]
