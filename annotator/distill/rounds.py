"""Pseudo-label distillation rounds: a student that learns the project's own poses, guarded by gold.

One round (`run_round`):
1. frozen split: every verified image gets 'gold' or 'train' once and keeps it
   (rounds_registry.assign_split); gold images never train, not even their
   unverified people.
2. data: for each person on a train image, a MediaPipe-style crop from the
   person's labelled points (person_roi: hip centre, 1.25x, rotation from
   hips to shoulders, as MediaPipe's landmarks-to-ROI rule); verified points are targets with weight 1;
   every other point gets the current model's prediction averaged over
   flip and scale copies of the crop (the "data distillation" recipe) and is
   kept, with weight `pseudo_weight`, only where the model is confident
   (visibility x presence >= conf_threshold) and stable (every copy within
   `max_spread` of the person's size from the mean).
3. training starts from the previous accepted round's weights ('head': the
   landmark output layer on frozen features computed once through
   onnxruntime for the crops and `copies` augmented versions of each; 'full':
   student.train with on-the-fly augmentation). The best epoch on a
   held-out slice of the train people is kept.
4. teacher and student predict every gold person from the ROI of its own
   points (as re-prediction does) and metrics.evaluate scores both against
   the gold people's verified points; the decision uses these figures. The
   same comparison through the whole pre-fill path (detector ROIs) is
   recorded beside them (prefill_before/after), for information: the
   detector is shared, so there only detected people can differ. The round is accepted only when a
   paired bootstrap over gold people puts the gain in mean OKS or in
   PCK@0.05 above zero (90% interval) and neither OKS AP nor PCK@0.05 got
   worse; otherwise the teacher stays and the reason is recorded.
5. accepted: the student re-predicts every unverified point
   (Session.repredict_person, provenance 'round K'; verified points are never
   touched) and suspicion scores are recomputed.

Every stage's result is recorded (rounds_registry); an interrupted round
resumes from its last finished stage (data cache, saved weights), and
re-prediction skips people already done.
"""
from __future__ import annotations

import json
import math
import os
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from annotator.distill import registry as reg
from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.model import NOT_LABELLED
from annotator.prefill.student_runtime import make_spec

CROP = 256
# (name, mirrored, scale, degrees) as rerun.tta_predictions takes them: flip and scales
PSEUDO_VARIANTS = (("flip", True, 1.0, 0.0), ("scale_up", False, 1.2, 0.0), ("scale_down", False, 0.85, 0.0))
SUMMARY_KEYS = ("oks_ap", "oks_ap50", "pck_0_05", "pck_0_1", "mean_error_px", "median_error_px",
                "mean_matched_oks", "person_recall", "n_gt_people", "n_gt_points", "n_matched_people")


@dataclass
class Config:
    mode: str = "full"                 # "full" (every layer) or "head" (landmark layer only, fast)
    epochs: int | None = None          # default 40 (head) / 3 (full)
    lr: float | None = None            # default 1e-4 (head weights) / 3e-6 (full)
    bias_lr: float = 0.05              # head mode: the head's bias (crop pixels per step, roughly)
    batch_size: int = 32
    copies: int = 4                    # augmented copies per crop (head mode: features cached once)
    gold_fraction: float = 0.35        # share of verified images frozen as gold
    val_fraction: float = 0.15         # share of train images held out to pick the best epoch
    conf_threshold: float = 0.7        # pseudo-label: visibility x presence of the teacher
    max_spread: float = 0.03           # pseudo-label: TTA spread / person size
    max_teacher_error: float = 0.15    # skip people whose verified points the teacher misses by more (x size)
    pseudo_weight: float = 0.5         # loss weight of an accepted pseudo-label (verified: 1)
    bootstrap: int = 2000
    seed: int = 0
    threads: int = 2
    min_person_px: float = 24.0        # people smaller than this (labelled extent) do not train
    max_people: int | None = None      # cap on training people (tests)
    scramble_labels: bool = False      # deliberately wrong targets (shows the gold guard rejects a bad round)

    def resolved(self) -> "Config":
        c = Config(**asdict(self))
        if c.mode not in ("head", "full"):
            raise UserError(f"--mode must be 'head' or 'full', not {c.mode!r}")
        c.epochs = int(c.epochs if c.epochs is not None else (40 if c.mode == "head" else 3))
        c.lr = float(c.lr if c.lr is not None else (1e-4 if c.mode == "head" else 3e-6))
        if c.epochs < 1:
            raise UserError(f"--epochs must be at least 1, not {c.epochs}")
        return c


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# -- estimators ---------------------------------------------------------------------------
def teacher_spec(project, teacher: str) -> str | None:
    """Student spec of a teacher ('round K'), None for MediaPipe's own network."""
    return None if teacher == "mediapipe" else reg.resolve_model(project, teacher)[0]


def estimator_for(project, teacher: str, threads: int = 1):
    """PoseEstimator with pre-fill's settings and the given landmark model ('mediapipe' or 'round K')."""
    return _student_estimator(project, teacher_spec(project, teacher), threads)


def _student_estimator(project, spec: str | None, threads: int = 1):
    from annotator.prefill.run import estimator_settings, make_estimator
    return make_estimator(dict(estimator_settings(project.settings), num_threads=threads), spec)


# -- 1. split ---------------------------------------------------------------------------------
def verified_images(store) -> list[int]:
    return [r[0] for r in store.db.execute(
        "SELECT DISTINCT q.image_id FROM persons q JOIN points p ON p.person_id=q.id"
        " WHERE q.deleted=0 AND p.verified=1 ORDER BY q.image_id")]


def frozen_split(project, cfg: Config, k: int | None = None) -> dict[int, str]:
    return reg.assign_split(project.store, verified_images(project.store), cfg.gold_fraction, k)


# -- 2. data -------------------------------------------------------------------------------------
def crop_for(est, rgb: np.ndarray, roi) -> tuple[np.ndarray, np.ndarray]:
    """uint8 crop (256, 256, 3) and the 3x3 image->crop-pixel matrix."""
    x, A = est.crop(rgb, roi)
    M = np.linalg.inv(np.vstack([A, [0.0, 0.0, 1.0]]))
    return np.round(x * 255.0).astype(np.uint8), M


def to_crop(M: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return np.column_stack([xy, np.ones(len(xy))]) @ M[:2].T


def pseudo_labels(est, rgb: np.ndarray, roi, mirrored: np.ndarray | None = None, full: bool = True) -> tuple:
    """Teacher's points averaged over flip/scale copies: (mean xy (33, 2), conf (33,), spread px (33,)).

    full=False: the plain prediction only (spread 0), for people with nothing left to pseudo-label.
    """
    from annotator.prefill.rerun import tta_predictions
    base = est.predict_roi(rgb, roi)
    conf = np.clip(np.asarray(base.visibility) * np.asarray(base.presence), 0, 1)
    if not full:
        return np.asarray(base.xy, np.float64)[:sk.N].copy(), conf, np.zeros(sk.N)
    var = tta_predictions(est, rgb, roi, variants=PSEUDO_VARIANTS, mirrored_rgb=mirrored)
    stack = np.stack([np.asarray(base.xy, np.float64)[:sk.N], *var.values()])
    mean = stack.mean(0)
    spread = np.linalg.norm(stack - mean, axis=-1).max(0)
    return mean, conf, spread


def person_roi(p, verified_only: bool = False) -> tuple | None:
    """MediaPipe's landmarks-to-ROI rule from a stored person's labelled points only.

    Centre at the mid hip (else mid shoulder, else the points' box centre),
    rotation from hips to shoulders, side 2 x 1.25 x the farthest labelled
    point (blazepose.aux_from_body + alignment_roi, without the unlabelled
    points an imported COCO-17 person carries at 0, 0). None below 4 points.
    verified_only: from the verified points alone (gold: the ROI must not move
    when a round re-predicts the person's other points).
    """
    from annotator.prefill.blazepose import alignment_roi
    m = (p.vis != NOT_LABELLED) & np.isfinite(p.xy).all(1)
    if verified_only:
        m &= p.verified
    if m.sum() < 4:
        return None
    xy = p.xy
    both = lambda a, b: m[a] and m[b]  # noqa: E731
    hip = xy[[23, 24]].mean(0) if both(23, 24) else None
    sh = xy[[11, 12]].mean(0) if both(11, 12) else None
    lo, hi = xy[m].min(0), xy[m].max(0)
    centre = hip if hip is not None else (sh if sh is not None else (lo + hi) / 2)
    up = (sh - hip) if (hip is not None and sh is not None) else np.array([0.0, -1.0])
    n = float(np.linalg.norm(up))
    up = up / n if n > 1e-6 else np.array([0.0, -1.0])
    r = max(float(np.linalg.norm(xy[m] - centre, axis=1).max()), 1.0)
    return alignment_roi(centre, centre + up * r)


def person_size(xy: np.ndarray) -> float:
    w, h = np.ptp(xy, axis=0)
    return max(float(max(w, h)), 1.0)


def collect_data(project, est, image_ids: list[int], cfg: Config, progress=None) -> dict:
    """Crops, targets (crop px), weights and counts for the people on `image_ids`."""
    crops, targets, weights, owners = [], [], [], []
    c = {"people": 0, "people_skipped": 0, "verified_points": 0, "pseudo_candidates": 0,
         "pseudo_accepted": 0, "people_teacher_lost": 0, "pseudo_rejected_conf": 0, "pseudo_rejected_spread": 0, "images": 0,
         "images_unreadable": 0}
    for iid in image_ids:
        if cfg.max_people is not None and c["people"] >= cfg.max_people:
            break
        frame = project.store.load_frame(iid)
        people = [p for p in frame.persons if p.labelled.sum() >= 4
                  and person_size(p.xy[p.labelled]) >= cfg.min_person_px]
        c["people_skipped"] += len(frame.persons) - len(people)
        if not people:
            if progress:
                progress(1)
            continue
        try:
            rgb = project.load_rgb(iid)
        except UserError:
            c["images_unreadable"] += 1
            continue
        mirrored = np.ascontiguousarray(rgb[:, ::-1])
        c["images"] += 1
        for p in people:
            if cfg.max_people is not None and c["people"] >= cfg.max_people:
                break
            roi = person_roi(p)
            crop, M = crop_for(est, rgb, roi)
            xy = np.full((sk.N, 2), np.nan)
            w = np.zeros(sk.N)
            ver = p.verified & (p.vis != NOT_LABELLED)
            xy[ver], w[ver] = p.xy[ver], 1.0
            todo = ~p.verified
            mean, conf, spread = pseudo_labels(est, rgb, roi, mirrored, full=todo.any())
            if ver.sum() >= 3:
                # a crowd crop where the teacher follows somebody else: nothing a head can learn from
                err = np.median(np.linalg.norm(mean[ver] - p.xy[ver], axis=1)) / person_size(p.xy[ver])
                if err > cfg.max_teacher_error:
                    c["people_teacher_lost"] += 1
                    continue
            if todo.any():
                rel = spread / person_size(mean)
                ok_conf = conf >= cfg.conf_threshold
                ok_spread = rel <= cfg.max_spread
                take = todo & ok_conf & ok_spread
                c["pseudo_candidates"] += int(todo.sum())
                c["pseudo_accepted"] += int(take.sum())
                c["pseudo_rejected_conf"] += int((todo & ~ok_conf).sum())
                c["pseudo_rejected_spread"] += int((todo & ok_conf & ~ok_spread).sum())
                xy[take], w[take] = mean[take], cfg.pseudo_weight
            c["verified_points"] += int(ver.sum())
            if w.sum() == 0:
                continue
            crops.append(crop)
            targets.append(np.where(w[:, None] > 0, to_crop(M, np.nan_to_num(xy)), 0.0))
            weights.append(w)
            owners.append((iid, p.id))
            c["people"] += 1
        if progress:
            progress(1)
    n = len(crops)
    return {"crops": np.stack(crops) if n else np.zeros((0, CROP, CROP, 3), np.uint8),
            "targets": np.asarray(targets, np.float32).reshape(n, sk.N, 2),
            "weights": np.asarray(weights, np.float32).reshape(n, sk.N),
            "owners": np.asarray(owners, np.int64).reshape(n, 2), "counts": c}


def save_data(path: Path, data: dict, teacher: str) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, crops=data["crops"], targets=data["targets"], weights=data["weights"], owners=data["owners"],
             meta=np.array(json.dumps({"counts": data["counts"], "teacher": teacher})))
    os.replace(tmp, path)


def load_data(path: Path, teacher: str) -> dict | None:
    try:
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("teacher") != teacher:
                return None
            return {"crops": z["crops"], "targets": z["targets"], "weights": z["weights"],
                    "owners": z["owners"], "counts": meta["counts"]}
    except (OSError, ValueError, KeyError):
        return None


def scramble(data: dict, seed: int) -> dict:
    """Targets handed to the wrong people, left/right swapped: a round that must not pass gold."""
    rng = np.random.default_rng(seed)
    n = len(data["targets"])
    perm = rng.permutation(n) if n > 1 else np.arange(n)
    t = data["targets"][perm][:, list(sk.FLIP)]
    w = data["weights"][perm][:, list(sk.FLIP)]
    return {**data, "targets": t.copy(), "weights": w.copy()}


# -- 3. training ------------------------------------------------------------------------------
def _split_val(owners: np.ndarray, frac: float) -> np.ndarray:
    """Boolean mask of the validation slice: whole images, chosen by a hash of the image id."""
    if len(owners) < 4 or frac <= 0:
        return np.zeros(len(owners), bool)
    u = (owners[:, 0] * 2654435761 % 2 ** 32) / 2 ** 32
    m = u < frac
    return m if 0 < m.sum() < len(m) else np.zeros(len(owners), bool)


def _features(ort_fn, crops_u8: np.ndarray, targets: np.ndarray, batch: int = 8, bar=None):
    """Frozen features of every crop, and its targets minus MediaPipe's refinement offset there
    (the student's head is trained in MediaPipe's pre-refinement space; student_runtime adds it back)."""
    from annotator.prefill.student_runtime import TRAIN_OUTPUTS, refinement_offset
    feats, adj = [], []
    for i in range(0, len(crops_u8), batch):
        x = crops_u8[i:i + batch].astype(np.float32) / 255.0
        o = ort_fn.run(x, list(TRAIN_OUTPUTS))
        feats.append(o["features"])
        for j in range(len(x)):
            off = refinement_offset(o["base_landmarks"][j], o["heatmap"][j])[:sk.N]
            adj.append(targets[i + j] - off)
        if bar:
            bar(len(x))
    if not feats:
        return np.zeros((0,)), targets[:0]
    return np.concatenate(feats), np.asarray(adj, np.float32)


def _augmented(crops_u8, targets, weights, copies: int, seed: int, bar=None):
    """`copies` random flip/scale/rotate/colour versions of every crop (student.augment_batch)."""
    import torch

    from annotator.distill.training import augment_batch
    g = torch.Generator().manual_seed(seed)
    xs, ts, ws = [], [], []
    for _ in range(copies):
        for i in range(0, len(crops_u8), 16):
            x = torch.from_numpy(crops_u8[i:i + 16].astype(np.float32) / 255.0)
            xa, ta, wa = augment_batch(x, torch.from_numpy(targets[i:i + 16]), torch.from_numpy(weights[i:i + 16]), g)
            xs.append(np.round(xa.numpy() * 255).astype(np.uint8))
            ts.append(ta.numpy())
            ws.append(wa.numpy())
            if bar:
                bar(len(x))
    if not xs:
        return crops_u8[:0], targets[:0], weights[:0]
    return np.concatenate(xs), np.concatenate(ts), np.concatenate(ws)


def train_head(student, feats, targets, weights, val, cfg: Config, progress=None) -> list[dict]:
    """Adam on the landmark head over cached features; keeps the best epoch on `val` (if any)."""
    import torch

    from annotator.distill.training import _lr_factor, _trainable, landmark_loss
    params = _trainable(student, "head")
    # the head's bias is where a labelling convention lives (COCO's hips sit lower than MediaPipe's):
    # Adam moves every parameter by about lr a step, so the bias gets a step in pixels and the
    # 1152-wide weights a small one (each of them moves all outputs at once)
    groups = [{"params": [p for p in params if p.dim() > 1], "lr": cfg.lr, "base": cfg.lr},
              {"params": [p for p in params if p.dim() <= 1], "lr": cfg.bias_lr, "base": cfg.bias_lr}]
    opt = torch.optim.Adam([g for g in groups if g["params"]])
    f, t, w = (torch.from_numpy(np.ascontiguousarray(a)) for a in (feats, targets, weights))
    rng = np.random.default_rng(cfg.seed)
    steps = math.ceil(len(f) / cfg.batch_size)
    total, warm, k = steps * cfg.epochs, max(1, steps * cfg.epochs // 20), 0

    def val_loss():
        if val is None:
            return None
        with torch.no_grad():
            vf, vt, vw = val
            pred = student.raw_from_features(vf)[:, :sk.N, :2]
            return float(landmark_loss(pred, vt, vw))

    curve = [{"epoch": 0, "loss": None, "val": val_loss()}]
    best = (curve[0]["val"], 0, [p.detach().clone() for p in params])
    try:
        for epoch in range(1, cfg.epochs + 1):
            t0, num, den = time.perf_counter(), 0.0, 0.0
            order = rng.permutation(len(f))
            for s in range(steps):
                idx = torch.from_numpy(order[s * cfg.batch_size:(s + 1) * cfg.batch_size])
                pred = student.raw_from_features(f[idx])[:, :sk.N, :2]
                loss = landmark_loss(pred, t[idx], w[idx])
                for g in opt.param_groups:
                    g["lr"] = g["base"] * _lr_factor(k, total, warm)
                k += 1
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                num += float(loss.detach()) * float(w[idx].sum())
                den += float(w[idx].sum())
            rec = {"epoch": epoch, "loss": num / max(den, 1e-9), "val": val_loss(),
                   "seconds": time.perf_counter() - t0, "crops": len(f)}
            curve.append(rec)
            if rec["val"] is not None and rec["val"] < best[0]:
                best = (rec["val"], epoch, [p.detach().clone() for p in params])
            if progress:
                progress(rec)
    finally:
        for p in student.module.parameters():
            p.requires_grad_(True)
    if val is not None:
        with torch.no_grad():
            for p, b in zip(params, best[2]):
                p.copy_(b)
        curve.append({"best_epoch": best[1], "best_val": best[0]})
    return curve


def train_student(project, start_spec: str | None, data: dict, cfg: Config, bar_factory=None) -> tuple:
    """Train from `start_spec` (None = MediaPipe's weights); returns (student, curve, stats)."""
    import torch

    from annotator.distill import training as stu
    from annotator.prefill.student_runtime import TRAIN_OUTPUTS, OrtLandmarks, export_checked, load_student
    stu.set_threads(cfg.threads)
    student = load_student(start_spec, cfg.threads) if start_spec else stu.Student(threads=cfg.threads)
    crops, targets, weights = data["crops"], data["targets"], data["weights"]
    vmask = _split_val(data["owners"], cfg.val_fraction)
    tr = ~vmask
    stats = {"train_crops": int(tr.sum()), "val_crops": int(vmask.sum()), "copies": cfg.copies}
    t0 = time.perf_counter()
    copies = cfg.copies if cfg.mode == "head" else min(cfg.copies, 1)   # full mode: every crop costs a backward pass
    stats["copies"] = copies
    feat_onnx = Path(project.root) / "models" / f".features-{os.getpid()}.onnx"
    export_checked(student, feat_onnx, outputs=TRAIN_OUTPUTS,
                   crop=crops[:1].astype(np.float32) / 255.0 if len(crops) else None)
    try:
        fn = OrtLandmarks(feat_onnx, cfg.threads)
        n_aug = int(tr.sum()) * copies
        bar = _bar(bar_factory, int(tr.sum()) + n_aug + int(vmask.sum()), "features", "crop")
        ax, at, aw = _augmented(crops[tr], targets[tr], weights[tr], copies, cfg.seed, None)
        x = np.concatenate([crops[tr], ax])
        t = np.concatenate([targets[tr], at])
        w = np.concatenate([weights[tr], aw])
        del ax
        feats, t = _features(fn, x, t, bar=bar.update if bar else None)
        vf = vt = None
        if vmask.any():
            vf, vt = _features(fn, crops[vmask], targets[vmask], bar=bar.update if bar else None)
        if bar:
            bar.close()
    finally:
        feat_onnx.unlink(missing_ok=True)
    stats["feature_seconds"] = time.perf_counter() - t0
    stats["feature_crops_per_s"] = len(feats) / max(stats["feature_seconds"], 1e-9)
    t1 = time.perf_counter()
    if cfg.mode == "head":
        del x
        val = None if vf is None else (torch.from_numpy(vf), torch.from_numpy(vt), torch.from_numpy(weights[vmask]))
        bar = _bar(bar_factory, cfg.epochs, "train head", "epoch")
        curve = train_head(student, feats, t, w, val, cfg,
                           progress=(lambda r: (bar.update(1), bar.set_postfix(loss=f"{r['loss']:.2f}"))) if bar
                           else None)
    else:
        del feats
        f32 = x.astype(np.float32) / 255.0
        del x
        val = None if vf is None else (crops[vmask].astype(np.float32) / 255.0, vt, weights[vmask])
        bar = _bar(bar_factory, math.ceil(len(f32) / 8) * cfg.epochs, "train full", "batch")
        # like head mode: keep the epoch (0 = the starting weights) that does best on the held-out images
        v0 = stu.evaluate(student, *val) if val is not None else None
        best = {"epoch": 0, "val": v0, "state": None}
        if val is not None:
            best["state"] = {k: v.detach().clone() for k, v in student.module.state_dict().items()}

        def on_batch(info):
            if bar:
                bar.update(1)
            if "val" in info and info["val"] < best["val"]:
                best.update(epoch=info["epoch"], val=info["val"],
                            state={k: v.detach().clone() for k, v in student.module.state_dict().items()})
        curve = stu.train(student, f32, t, w, epochs=cfg.epochs, lr=cfg.lr, batch_size=8, augment=False,
                          mode="full", val=val, seed=cfg.seed, threads=cfg.threads, progress=on_batch)
        if val is not None:
            student.module.load_state_dict(best["state"])
            curve = [{"epoch": 0, "loss": None, "val": v0}] + curve
            curve.append({"best_epoch": best["epoch"], "best_val": best["val"]})
    if bar:
        bar.close()
    n = len(t)
    stats["train_seconds"] = time.perf_counter() - t1
    stats["train_crops_per_s"] = n * cfg.epochs / max(stats["train_seconds"], 1e-9)
    return student, curve, stats


def _bar(factory, total, desc, unit):
    return factory(total=total, desc=desc, unit=unit) if factory else None


# -- 4. gold ----------------------------------------------------------------------------------
def gold_gt(project, gold_ids: list[int]) -> dict:
    """The gold people's verified points as a 33-point COCO dict (metrics.evaluate's input)."""
    images, anns = [], []
    for iid in gold_ids:
        f = project.store.load_frame(iid)
        images.append({"id": iid, "file_name": f.file_name, "width": f.width, "height": f.height,
                       "exhaustive_person_annotation": f.review_state == "verified", "visibility_known": True})
        for p in f.persons:
            m = p.verified & (p.vis != NOT_LABELLED)
            if m.sum() < 1:
                continue
            kp = np.zeros((sk.N, 3))
            kp[m, :2], kp[m, 2] = p.xy[m], p.vis[m]
            x0, y0 = p.xy[m].min(0)
            x1, y1 = p.xy[m].max(0)
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": 1, "iscrowd": 0,
                         "keypoints": kp.reshape(-1).round(3).tolist(), "num_keypoints": int(m.sum()),
                         "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                         "area": float(max((x1 - x0) * (y1 - y0), 1.0)), "person_id": p.id})
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(sk.NAMES)}]}


def gold_predictions(project, est, gold_ids: list[int], progress=None) -> dict:
    """What pre-fill with this estimator would put on each gold image."""
    from annotator.prefill.run import to_person
    out = {}
    for iid in gold_ids:
        row = project.store.image(iid)
        try:
            rgb = project.load_rgb(row)
        except UserError:
            continue
        h, w = rgb.shape[:2]
        out[row.file_name] = [to_person(p, w, h) for p in est.predict(rgb)]
        if progress:
            progress(1)
    return out


def gold_roi_predictions(project, est, gold_ids: list[int], progress=None) -> dict:
    """Each gold person predicted from the ROI of its own points (what re-prediction does for a
    person already in the project): measures the landmark model itself, on every gold person,
    including those the detector misses (where the pre-fill figures cannot tell models apart)."""
    from annotator.prefill.run import to_person
    out = {}
    for iid in gold_ids:
        f = project.store.load_frame(iid)
        people = [p for p in f.persons if (p.verified & (p.vis != NOT_LABELLED)).any()]
        rois = [person_roi(p, verified_only=True) for p in people]
        if not any(r is not None for r in rois):
            out[f.file_name] = []
            continue
        try:
            rgb = project.load_rgb(iid)
        except UserError:
            continue
        h, w = rgb.shape[:2]
        out[f.file_name] = [to_person(est.predict_roi(rgb, r), w, h) for r in rois if r is not None]
        if progress:
            progress(1)
    return out


def summarize(res: dict) -> dict:
    d = {k: res.get(k) for k in SUMMARY_KEYS}
    d["per_joint_error_px"] = res.get("per_joint_error_px", {})
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def paired_bootstrap(gt: dict, before: dict, after: dict, n: int, seed: int) -> dict:
    """90% intervals of after - before over gold people resampled with replacement: mean OKS, PCK@0.05."""
    from annotator.review.metrics import point_table
    ra = point_table(gt, before, keypoints="all")
    rb = point_table(gt, after, keypoints="all")
    if len(ra) != len(rb) or not ra:
        return {"n_people": 0}
    people: dict = {}
    for i, (a, b) in enumerate(zip(ra, rb)):
        key = (a["image_id"], a["gt_ann_id"])
        d = people.setdefault(key, {"oks": (a["person_oks"], b["person_oks"]), "rows": []})
        d["rows"].append(i)
    hit = lambda rows: np.array([np.isfinite(r["err_rel"]) and r["err_rel"] < 0.05 for r in rows], float)  # noqa
    ha, hb = hit(ra), hit(rb)
    keys = list(people)
    oks = np.array([[np.nan_to_num(people[k]["oks"][0]), np.nan_to_num(people[k]["oks"][1])] for k in keys])
    pa = np.array([ha[people[k]["rows"]].sum() for k in keys])
    pb = np.array([hb[people[k]["rows"]].sum() for k in keys])
    npts = np.array([len(people[k]["rows"]) for k in keys], float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(keys), (n, len(keys)))
    d_oks = (oks[idx, 1] - oks[idx, 0]).mean(1)
    d_pck = (pb[idx].sum(1) - pa[idx].sum(1)) / npts[idx].sum(1)
    return {"n_people": len(keys), "d_mean_oks": float((oks[:, 1] - oks[:, 0]).mean()),
            "d_mean_oks_lo": float(np.percentile(d_oks, 5)), "d_mean_oks_hi": float(np.percentile(d_oks, 95)),
            "d_pck_0_05": float((pb.sum() - pa.sum()) / npts.sum()),
            "d_pck_0_05_lo": float(np.percentile(d_pck, 5)), "d_pck_0_05_hi": float(np.percentile(d_pck, 95))}


def decide(before: dict, after: dict, boot: dict) -> tuple[bool, str]:
    """Accept only a gain beyond noise that does not cost OKS AP or PCK@0.05."""
    if not boot.get("n_people"):
        return False, "no gold people to judge on (verify more images)"
    ap0, ap1 = before.get("oks_ap") or 0.0, after.get("oks_ap") or 0.0
    p0, p1 = before.get("pck_0_05") or 0.0, after.get("pck_0_05") or 0.0
    head = f"OKS AP {ap0:.3f}->{ap1:.3f}, PCK@0.05 {p0:.3f}->{p1:.3f}"
    if ap1 < ap0:
        return False, f"OKS AP got worse ({head})"
    if p1 < p0:
        return False, f"PCK@0.05 got worse ({head})"
    if boot["d_mean_oks_lo"] > 0 or boot["d_pck_0_05_lo"] > 0:
        return True, (f"better beyond noise ({head}; 90% interval of gain over {boot['n_people']} gold people:"
                      f" mean OKS [{boot['d_mean_oks_lo']:+.4f}, {boot['d_mean_oks_hi']:+.4f}],"
                      f" PCK@0.05 [{boot['d_pck_0_05_lo']:+.4f}, {boot['d_pck_0_05_hi']:+.4f}])")
    return False, (f"gain within noise ({head}; 90% interval over {boot['n_people']} gold people:"
                   f" mean OKS [{boot['d_mean_oks_lo']:+.4f}, {boot['d_mean_oks_hi']:+.4f}],"
                   f" PCK@0.05 [{boot['d_pck_0_05_lo']:+.4f}, {boot['d_pck_0_05_hi']:+.4f}])")


# -- 5. apply ------------------------------------------------------------------------------------
def repredict_all(project, est, name: str, progress=None) -> dict:
    """The student's guess for every unverified point (people fully done with `name` are skipped)."""
    from annotator.prefill.run import to_person
    store = project.store
    session = project.session()
    ids = [r[0] for r in store.db.execute(
        "SELECT DISTINCT q.image_id FROM persons q JOIN points p ON p.person_id=q.id"
        " WHERE q.deleted=0 AND p.verified=0 ORDER BY q.image_id")]
    c = {"images": 0, "people": 0, "points": 0, "skipped_done": 0}
    for iid in ids:
        frame = store.load_frame(iid)
        todo = [p for p in frame.persons if not p.fully_verified
                and not all(s == name for s, v in zip(p.source, p.verified) if not v)]
        c["skipped_done"] += sum(1 for p in frame.persons if not p.fully_verified) - len(todo)
        if todo:
            try:
                rgb = project.load_rgb(iid)
            except UserError:
                continue
            h, w = rgb.shape[:2]
            with store.tx():
                for p in todo:
                    roi = person_roi(p)
                    if roi is None:
                        continue
                    pose = est.predict_roi(rgb, roi)
                    session.repredict_person(p.id, to_person(pose, w, h), name)
                    c["people"] += 1
                    c["points"] += int((~p.verified).sum())
            c["images"] += 1
        if progress:
            progress(1)
    c["image_ids"] = ids
    return c


# -- a round --------------------------------------------------------------------------------------
def _tqdm(quiet: bool):
    if quiet:
        return None
    from tqdm import tqdm
    return lambda **kw: tqdm(leave=False, dynamic_ncols=True, **kw)


def run_round(project, cfg: Config, quiet: bool = True, log: Callable[[str], None] | None = None) -> dict:
    """Run (or resume) one round; returns its registry row."""
    log = log or (lambda s: None)
    bars = _tqdm(quiet)
    cfg = cfg.resolved()
    store = project.store
    reg.ensure_tables(store)
    t_start = time.perf_counter()
    cur = reg.unfinished(store)
    if cur is not None:
        k, teacher = cur["k"], cur["teacher"]
        saved = cur["record"].get("config")
        if saved:   # resume with the round's own settings, not today's flags
            cfg = Config(**{**asdict(Config()), **saved}).resolved()
        log(f"resuming round {k} (stage: {cur['stage'] or 'start'})")
        reg.update_round(store, k, status="running")
    else:
        k = reg.next_k(store)
        # a project that cannot run a round yet gets an error, not a failed round in its record
        if not verified_images(store):
            raise UserError(f"{project.root}: no verified points yet; verify (or import --as verified) some "
                            f"people first: {cfg.gold_fraction:.0%} of verified images become gold, the rest train")
        if not any(s == "gold" for s in frozen_split(project, cfg, k).values()):
            raise UserError(f"{project.root}: none of the verified images fell in the gold set yet; verify more "
                            f"images (or use a larger --gold-fraction the first time)")
        last = reg.latest_accepted(store)
        teacher = reg.model_name(last["k"]) if last else "mediapipe"
        reg.start_round(store, k, teacher, cfg.mode, {"config": asdict(cfg)})
        cur = reg.get_round(store, k)
    rec = dict(cur["record"])
    times = dict(rec.get("seconds", {}))
    try:
        # 1. split
        split = frozen_split(project, cfg, k)
        gold = sorted(i for i, s in split.items() if s == "gold")
        if not gold:
            raise UserError(f"{project.root}: no gold images (verify some people first; "
                            f"{cfg.gold_fraction:.0%} of verified images become gold)")
        gold_set = set(gold)
        train_ids = [r[0] for r in store.db.execute(
            "SELECT DISTINCT q.image_id FROM persons q WHERE q.deleted=0 ORDER BY q.image_id")
            if r[0] not in gold_set]
        start_spec = teacher_spec(project, teacher)
        teacher_est = _student_estimator(project, start_spec, cfg.threads)
        student_est = None      # built once, for gold and re-prediction
        models = Path(project.root) / "models"
        models.mkdir(exist_ok=True)
        data_path = models / f"round-{k}.data.npz"
        # 2. data
        data = load_data(data_path, teacher) if cur["stage"] in ("data", "trained", "evaluated", "applying") \
            else None
        if data is None:
            t0 = time.perf_counter()
            bar = _bar(bars, len(train_ids), "pseudo-labels", "img")
            data = collect_data(project, teacher_est, train_ids, cfg, bar.update if bar else None)
            if bar:
                bar.close()
            save_data(data_path, data, teacher)
            times["data"] = time.perf_counter() - t0
            rec.update(counts={**data["counts"], "gold_images": len(gold), "train_images": len(train_ids),
                               "crops": int(len(data["crops"]))},
                       thresholds={"conf": cfg.conf_threshold, "max_spread": cfg.max_spread,
                                   "max_teacher_error": cfg.max_teacher_error,
                                   "pseudo_weight": cfg.pseudo_weight, "gold_fraction": cfg.gold_fraction},
                       train_image_ids=sorted({int(i) for i in data["owners"][:, 0]}), gold_image_ids=gold,
                       seconds=times)
            reg.update_round(store, k, stage="data", record=rec)
            log(f"round {k}: {len(data['crops'])} training people, {data['counts']['verified_points']} verified"
                f" + {data['counts']['pseudo_accepted']} pseudo-label points")
        if not len(data["crops"]):
            raise UserError(f"{project.root}: nothing to train on (no people outside the gold images)")
        if cfg.scramble_labels:
            data = scramble(data, cfg.seed)
        # 3. train
        mfile = reg.model_file(project, k)
        row = reg.get_round(store, k)
        if row["stage"] in ("trained", "evaluated", "applying") and row["model_sha256"] and mfile.exists():
            sha = row["model_sha256"]
        else:
            t0 = time.perf_counter()
            student, curve, stats = train_student(project, start_spec, data, cfg, bars)
            sha = student.save(mfile)
            times["train"] = time.perf_counter() - t0
            rec.update(curve=curve, train=stats, seconds=times)
            reg.update_round(store, k, stage="trained", model_path=str(mfile.relative_to(project.root)),
                             model_sha256=sha, record=rec)
            del student
        spec = make_spec(mfile, sha)
        # 4. gold
        if "decision" not in rec:
            t0 = time.perf_counter()
            gt = gold_gt(project, gold)
            bar = _bar(bars, 4 * len(gold), "gold", "img")
            up = bar.update if bar else None
            if student_est is None:
                student_est = _student_estimator(project, spec, cfg.threads)
            before = gold_roi_predictions(project, teacher_est, gold, up)
            after = gold_roi_predictions(project, student_est, gold, up)
            pf_before = gold_predictions(project, teacher_est, gold, up)
            pf_after = gold_predictions(project, student_est, gold, up)
            if bar:
                bar.close()
            from annotator.review.metrics import evaluate
            mb = evaluate(gt, before, keypoints="all", bootstrap=0)
            ma = evaluate(gt, after, keypoints="all", bootstrap=0)
            boot = paired_bootstrap(gt, before, after, cfg.bootstrap, cfg.seed)
            ok, why = decide(mb, ma, boot)
            rec.update(prefill_before=summarize(evaluate(gt, pf_before, keypoints="all", bootstrap=0)),
                       prefill_after=summarize(evaluate(gt, pf_after, keypoints="all", bootstrap=0)))
            times["gold"] = time.perf_counter() - t0
            rec.update(gold_before=summarize(mb), gold_after=summarize(ma), bootstrap=boot,
                       decision="accepted" if ok else "rejected", seconds=times)
            reg.update_round(store, k, stage="evaluated", reason=why, record=rec)
            log(f"round {k}: {'ACCEPTED' if ok else 'rejected'}: {why}")
        ok = rec["decision"] == "accepted"
        # 5. apply
        if ok:
            t0 = time.perf_counter()
            reg.update_round(store, k, stage="applying")
            if student_est is None:
                student_est = _student_estimator(project, spec, cfg.threads)
            n_img = store.db.execute("SELECT count(DISTINCT q.image_id) FROM persons q JOIN points p ON"
                                     " p.person_id=q.id WHERE q.deleted=0 AND p.verified=0").fetchone()[0]
            bar = _bar(bars, n_img, f"re-predict (round {k})", "img")
            applied = repredict_all(project, student_est, reg.model_name(k), bar.update if bar else None)
            if bar:
                bar.close()
            from annotator.review.suspicion import update_suspicion
            sus = update_suspicion(project, applied.pop("image_ids"))
            times["apply"] = time.perf_counter() - t0
            rec.update(applied=applied, suspicion={k2: v for k2, v in sus.items() if k2 != "seconds"})
        times["total"] = times.get("total", 0.0) + time.perf_counter() - t_start
        rec.update(seconds=times, peak_rss_mb=peak_rss_mb())
        reg.update_round(store, k, status="accepted" if ok else "rejected", stage="done",
                         finished_at=time.time(), record=rec)
        data_path.unlink(missing_ok=True)
    except KeyboardInterrupt:
        times["total"] = times.get("total", 0.0) + time.perf_counter() - t_start
        reg.update_round(store, k, status="interrupted", record={"seconds": times})
        raise
    except UserError as e:
        reg.update_round(store, k, status="failed", stage="done", reason=str(e), finished_at=time.time())
        raise
    return reg.get_round(store, k)


def run_rounds(project, n: int, cfg: Config, quiet: bool = False, log=print) -> list[dict]:
    """Up to n rounds; a rejected round ends the series (the next one would start from the same teacher)."""
    out = []
    for _ in range(max(1, int(n))):
        r = run_round(project, cfg, quiet=quiet, log=log)
        out.append(r)
        if r["status"] != "accepted":
            break
    return out
