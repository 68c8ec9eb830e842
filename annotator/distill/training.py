"""Training the student: augmentation, loss, the optimiser loop (torch; the `train` extra).

The network itself and its file format are annotator.prefill.student, so the engine can run a
round's weights without this module. Independent of any project store: callers hand in
256x256 crops (float32 NHWC in [0, 1]), target points in crop pixels and per-point weights.
Weight 0 means "no opinion" (unlabelled or unverified) and contributes neither loss nor gradient.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from annotator.prefill.student import _FLIP, CROP, N_POINTS, Student, _check_crops, set_threads

__all__ = ["Student", "augment_batch", "landmark_loss", "evaluate", "train", "set_threads"]

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
