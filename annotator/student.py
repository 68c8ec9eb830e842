"""Training primitives for the student: MediaPipe's landmark net, fine-tuned on verified points.

Independent of any project store: callers hand in 256x256 crops (float32
NHWC in [0, 1], as MediaPipe's ImageToTensorCalculator makes them), target
points in crop pixels and per-point weights. Weight 0 means "no opinion"
(unlabelled or unverified) and contributes neither loss nor gradient, so a
half-verified person still teaches what was verified.

Two modes: 'head' trains only the landmark output layer on the frozen
network's features (fast, cannot wreck the backbone); 'full' fine-tunes every
layer the landmarks depend on (the TFLite export folded batch-norm into the
convs, so there is nothing to freeze or recalibrate).
"""
from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import skeleton as sk
from .errors import UserError
from .tflite_torch import FEATURES, TFLiteModule, load_pose_landmark

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


# -- augmentation ------------------------------------------------------------
def augment_batch(x: torch.Tensor, xy: torch.Tensor, w: torch.Tensor, gen: torch.Generator,
                  flip: float = 0.5, scale: float = 0.1, rotate: float = 10.0, shift: float = 0.03,
                  color: float = 0.2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random flip (with left/right swap), scale, rotation, shift and colour jitter.

    x: (B, 256, 256, 3) NHWC in [0, 1]; xy: (B, 33, 2) crop pixels; w: (B, 33).
    One affine per sample moves image and points together: a point at crop
    pixel p ends up at c + s*R*F*(p - c) + t (c = crop centre).
    """
    b = x.shape[0]
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(b, generator=gen)  # noqa: E731
    flipped = torch.rand(b, generator=gen) < flip
    s = u(1 - scale, 1 + scale)
    a = u(-rotate, rotate) * math.pi / 180
    t = torch.stack([u(-shift, shift), u(-shift, shift)], 1) * 2   # normalised units span 2
    fx = torch.where(flipped, -1.0, 1.0)
    cos, sin = torch.cos(a), torch.sin(a)
    # forward map A = s R F in normalised coordinates (x right, y down, centre 0)
    A = torch.stack([torch.stack([s * cos * fx, -s * sin], 1),
                     torch.stack([s * sin * fx, s * cos], 1)], 1)           # (B, 2, 2)
    A_inv = torch.linalg.inv(A)
    theta = torch.cat([A_inv, -(A_inv @ t[:, :, None])], 2)               # output -> input
    grid = F.affine_grid(theta, (b, 3, CROP, CROP), align_corners=False)
    img = F.grid_sample(x.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="border",
                        align_corners=False)
    # colour: brightness, contrast, saturation
    br = u(1 - color, 1 + color)[:, None, None, None]
    ct = u(1 - color, 1 + color)[:, None, None, None]
    sat = u(1 - color, 1 + color)[:, None, None, None]
    img = img * br
    mean = img.mean(dim=(1, 2, 3), keepdim=True)
    img = (img - mean) * ct + mean
    gray = (0.299 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3])
    img = ((img - gray) * sat + gray).clamp(0, 1)
    half = CROP / 2
    p = (xy - half) / half
    p = torch.einsum("bij,bnj->bni", A, p) + t[:, None]
    xy2 = p * half + half
    w2 = w.clone()
    if flipped.any():   # the person's left is now on the image's left: swap names
        xy2[flipped] = xy2[flipped][:, _FLIP]
        w2[flipped] = w[flipped][:, _FLIP]
    return img.permute(0, 2, 3, 1).contiguous(), xy2, w2


# -- loss and training ---------------------------------------------------------
def landmark_loss(pred_xy: torch.Tensor, target_xy: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean over points of a Huber (1 px) distance; weight-0 points give exactly zero gradient."""
    mask = (weights > 0)[..., None]
    tgt = torch.where(mask, target_xy, pred_xy.detach())   # NaN targets of unweighted points never enter
    per = F.smooth_l1_loss(pred_xy, tgt, reduction="none", beta=1.0).sum(-1)
    return (per * weights).sum() / weights.sum().clamp(min=1e-6)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero (fine-tuning a converged net wants gentle starts)."""
    return min(1.0, (step + 1) / warmup) * 0.5 * (1.0 + math.cos(math.pi * step / max(total, 1)))


def _check_targets(n: int, targets_xy, weights) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(targets_xy, np.float32)
    w = np.asarray(weights, np.float32)
    if t.shape != (n, N_POINTS, 2):
        raise ValueError(f"targets_xy: expected shape ({n}, {N_POINTS}, 2), got {t.shape}")
    if w.shape != (n, N_POINTS):
        raise ValueError(f"weights: expected shape ({n}, {N_POINTS}), got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights: must be finite and >= 0")
    if not np.isfinite(t[w > 0]).all():
        raise ValueError("targets_xy: points with weight > 0 must have finite coordinates")
    return t, w


def _trainable(student: Student, mode: str) -> list[torch.nn.Parameter]:
    m = student.module
    if mode == "head":
        params = m.head_parameters("landmarks")
    elif mode == "full":
        params = list(m.parameters())
    else:
        raise ValueError(f"mode must be 'full' or 'head', got {mode!r}")
    keep = {id(p) for p in params}
    for p in m.parameters():
        p.requires_grad_(id(p) in keep)
    return params


def evaluate(student: Student, crops, targets_xy, weights, batch_size: int = 16) -> float:
    """The training loss (no augmentation) over a set, weighted like training."""
    a = _check_crops(crops)
    t, w = _check_targets(len(a), targets_xy, weights)
    num = den = 0.0
    with torch.inference_mode():
        for i in range(0, len(a), batch_size):
            pred = student.landmarks(torch.from_numpy(a[i:i + batch_size]))[..., :2]
            wb = torch.from_numpy(w[i:i + batch_size])
            num += float(landmark_loss(pred, torch.from_numpy(t[i:i + batch_size]), wb)) * float(wb.sum())
            den += float(wb.sum())
    return num / den if den > 0 else 0.0


def train(student: Student, crops, targets_xy, weights, epochs: int = 10, lr: float | None = None,
          batch_size: int = 8, augment: bool = True, mode: str = "full",
          progress: Callable[[dict], None] | None = None, stop: Callable[[], bool] | None = None,
          val: tuple | None = None, seed: int = 0, threads: int | None = None) -> list[dict]:
    """Fine-tune `student` in place on weighted 2-D targets; returns one record per epoch.

    crops: float32 (N, 256, 256, 3) in [0, 1]; targets_xy: (N, 33, 2) crop
    pixels; weights: (N, 33) >= 0. lr (Adam, warm-up + cosine decay)
    defaults to 3e-6 ('full': Adam's first steps move every weight by ~lr and
    this net is sensitive) / 1e-2 ('head'). Only x, y of the 33 points are
    supervised: 'head' mode leaves z, visibility and presence exactly as they
    were, 'full' mode lets them drift a little.

    progress(info) runs after every batch with epoch, epochs, step, steps and
    the epoch's running loss (the epoch's last call also carries 'val' when
    `val=(crops, targets_xy, weights)` is given). stop() is asked before
    every batch; True ends training and the partial epoch is recorded with
    'stopped': True. Records: {epoch, loss (px, Huber), val?, seconds, crops}.
    """
    if threads is not None:
        set_threads(threads)
    a = _check_crops(crops)
    t, w = _check_targets(len(a), targets_xy, weights)
    if val is not None:
        va = _check_crops(val[0], "val crops")
        vt, vw = _check_targets(len(va), val[1], val[2])
    if len(a) == 0 or epochs <= 0:
        return []
    params = _trainable(student, mode)
    lr = lr if lr is not None else (3e-6 if mode == "full" else 1e-2)
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    cached = None
    if mode == "head" and not augment:   # the frozen backbone sees the same crops every epoch
        with torch.no_grad():
            cached = torch.cat([student.features(torch.from_numpy(a[i:i + 32])) for i in range(0, len(a), 32)])
    steps = math.ceil(len(a) / batch_size)
    total_steps, warmup, k = steps * epochs, max(1, steps * epochs // 20), 0
    history: list[dict] = []
    student.module.train()
    try:
        for epoch in range(1, epochs + 1):
            t0, total, seen, done, stopped = time.perf_counter(), 0.0, 0.0, 0, False
            order = rng.permutation(len(a))
            for step in range(steps):
                if stop is not None and stop():
                    stopped = True
                    break
                idx = np.sort(order[step * batch_size:(step + 1) * batch_size])
                xy, wb = torch.from_numpy(t[idx]), torch.from_numpy(w[idx])
                if cached is not None:
                    pred = student.raw_from_features(cached[idx])
                else:
                    x = torch.from_numpy(a[idx])
                    if augment:
                        x, xy, wb = augment_batch(x, xy, wb, gen)
                    if mode == "head":
                        with torch.no_grad():
                            feats = student.features(x)
                        pred = student.raw_from_features(feats)
                    else:
                        pred = student.raw(x)
                loss = landmark_loss(pred[:, :N_POINTS, :2], xy, wb)
                for group in opt.param_groups:
                    group["lr"] = lr * _lr_factor(k, total_steps, warmup)
                k += 1
                opt.zero_grad(set_to_none=True)
                if float(wb.sum()) > 0:
                    loss.backward()
                    opt.step()
                done += len(idx)
                total += loss.item() * float(wb.sum())
                seen += float(wb.sum())
                info = {"epoch": epoch, "epochs": epochs, "step": step + 1, "steps": steps,
                        "loss": total / seen if seen else 0.0}
                last = step == steps - 1
                if last and val is not None:
                    student.module.eval()
                    info["val"] = evaluate(student, va, vt, vw)
                    student.module.train()
                if progress is not None:
                    progress(info)
            rec = {"epoch": epoch, "loss": total / seen if seen else 0.0,
                   "seconds": time.perf_counter() - t0, "crops": done}
            if stopped:
                rec["stopped"] = True
            elif val is not None:
                rec["val"] = info["val"]
            history.append(rec)
            if stopped:
                break
    finally:
        student.module.eval()
        for p in student.module.parameters():
            p.requires_grad_(True)
    return history


__all__ = ["Student", "train", "evaluate", "augment_batch", "landmark_loss", "set_threads", "sha256_file",
           "DEFAULT_THREADS"]
