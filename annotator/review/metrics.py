"""Evaluation against keypoint ground truth: COCO AP, PCK, errors, review-queue recall.

Pure functions over a COCO person-keypoints dict (17 COCO or 33 BlazePose
points) and predictions as `model.Person` lists keyed by file name, so the
CLI's `evaluate`, the distillation gold check and the suspicion calibration
all score the same way. No project store is touched.

Conventions (one place, so every figure agrees):
- OKS is COCO's: per point exp(-d^2 / (2 * s^2 * k^2)) with s^2 the GT area
  (bbox area, then keypoint extent, when missing) and k = 2 * sigma (sigma as
  listed in skeleton.COCO17_SIGMAS, exactly as pycocotools uses them); the
  person OKS is the mean over the GT's labelled points. A predicted point with
  vis 0 ("not labelled") counts as missing: term 0, a PCK miss, needs fixing.
- People are matched per image greedily by OKS on the COCO-17 mapping
  (highest first, one-to-one, pairs below `min_match_oks` never match: a
  prediction that far from every GT person is somebody else).
- `exhaustive_person_annotation` other than true: unmatched predictions on
  that image are dropped before COCOeval (and from every count), so an
  unannotated bystander is not a false positive. "partial" images with
  `ignore_regions_x/_y` polygons are exhaustive outside them: an unmatched
  prediction is dropped only when most of its points lie inside a region.
- `visibility_known` false: GT v is ignored for the occlusion figures
  (`occlusion_accuracy`, `pck_0_1_visible/_occluded`); it still marks
  which points are labelled.
- The review queue is the matched people's unverified points on GT-labelled
  keypoints; a point needs fixing when its OKS term is below 0.5. Recall at a
  fraction f reviews f * N points (fractional last point, ties in the score
  taken at their expected value), so random order scores exactly f.
  `all_queue_recall_at_*` is the same over every point the queue shows: also
  the joints the GT leaves unlabelled (on joints the source labels at all)
  where the prediction is shown (needs fixing: an unlabel click) or holds a
  hidden guess (needs nothing). The labelled-only figure cannot see either,
  so a queue that puts every hidden guess first looks better there than it is.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.commands import CROWD_SHARE
from annotator.core.media import export_name
from annotator.core.model import OCCLUDED, VISIBLE, Person

NEEDS_FIX_OKS = 0.5
FRACTIONS = (0.1, 0.2, 0.3)
PCK_THRESHOLDS = (0.05, 0.1)
MIN_PEOPLE_POINTS = 5          # person_recall counts GT people with at least this many labelled points
RECALL_OKS = 0.1               # ... that got a prediction with OKS above this
MIN_MATCH_OKS = 0.01
_EPS = np.spacing(1)           # pycocotools adds this to the area
_FAR = -1.0e4                  # where a missing predicted point goes for pycocotools (term ~0)
_COCO_POS = {bp: c for c, bp in enumerate(sk.COCO17_FROM_BP)}


def _key(f: float) -> str:
    """0.1 -> '0_1', 0.05 -> '0_05' (flat-dict key suffix)."""
    return f"{f:g}".replace(".", "_")


# -- ground truth ---------------------------------------------------------------

@dataclass
class GtPerson:
    ann_id: int
    kps: np.ndarray            # (33, 3) in BlazePose order; v=0 where the GT has no such point
    area: float
    bbox: tuple[float, float, float, float]

    @property
    def k17(self) -> np.ndarray:
        return self.kps[list(sk.COCO17_FROM_BP)]

    @property
    def n_labelled17(self) -> int:
        return int((self.k17[:, 2] > 0).sum())

    @property
    def long_side(self) -> float:
        return float(max(self.bbox[2], self.bbox[3]))


@dataclass
class GtImage:
    id: int
    file_name: str
    width: int
    height: int
    exhaustive: bool
    ignore_polys: list[np.ndarray]
    vis_known: bool
    tags: tuple[str, ...]
    source: str
    people: list[GtPerson] = field(default_factory=list)   # non-crowd, >= 1 labelled COCO-17 point
    coco_anns: list[dict] = field(default_factory=list)    # every annotation, COCO-17, for COCOeval
    crowd_boxes: list[tuple[float, float, float, float]] = field(default_factory=list)   # iscrowd bboxes

    @property
    def has_person(self) -> bool:
        return bool(self.coco_anns)


@dataclass
class GroundTruth:
    name: str
    n_keypoints: int           # 17 or 33
    images: list[GtImage]


def _bbox_of(kps: np.ndarray) -> tuple[float, float, float, float]:
    m = kps[:, 2] > 0
    if not m.any():
        return (0.0, 0.0, 0.0, 0.0)
    x0, y0 = kps[m, :2].min(0)
    x1, y1 = kps[m, :2].max(0)
    return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def _tags(v) -> tuple[str, ...]:
    if isinstance(v, dict):
        return tuple(sorted(k for k, x in v.items() if x is True))
    if isinstance(v, (list, tuple)):
        return tuple(sorted(str(x) for x in v))
    return ()


def _polys(im: dict) -> list[np.ndarray]:
    xs, ys = im.get("ignore_regions_x") or [], im.get("ignore_regions_y") or []
    out = []
    for x, y in zip(xs, ys):
        if len(x) >= 3 and len(x) == len(y):
            out.append(np.column_stack([np.asarray(x, float), np.asarray(y, float)]))
    return out


def _norm_name(n) -> str:
    return str(n).strip().lower().replace(" ", "_").replace("-", "_")


def load_gt(gt: dict | str | Path, *, assume_exhaustive: bool = False) -> GroundTruth:
    """Parse and check a COCO keypoints dict or file (17 COCO or 33 BlazePose points).

    assume_exhaustive: treat images without `exhaustive_person_annotation` as
    exhaustive (a project's own gold set); by default missing means "not".
    """
    if isinstance(gt, GroundTruth):
        return gt
    from exporters.coco import check_coco_shape, load_coco_json
    name = "ground truth"
    if isinstance(gt, (str, Path)):
        name = str(gt)
        gt = load_coco_json(gt)
    check_coco_shape(gt, name)
    try:
        return _parse_gt(gt, name, assume_exhaustive)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError, IndexError) as e:
        # a record of the wrong type somewhere (a string for a number, a list for an id): one line
        raise UserError(f"{name}: a record has a value of the wrong type or range ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:150] if str(e) else ''})") from None


def _parse_gt(gt: dict, name: str, assume_exhaustive: bool) -> GroundTruth:
    cats = {c.get("id"): c for c in gt.get("categories") or [] if isinstance(c, dict) and c.get("keypoints")}
    if not cats:
        raise UserError(f"{name}: no category with keypoints")
    counts = {len(c["keypoints"]) for c in cats.values()}
    if len(counts) != 1 or next(iter(counts)) not in (17, 33):
        raise UserError(f"{name}: categories have {sorted(counts)} keypoints; expected 17 (COCO) or 33 (BlazePose)")
    k = next(iter(counts))
    # keypoints are found by name (so a file in another order still works), then put on BlazePose indices
    names = [_norm_name(n) for n in next(iter(cats.values()))["keypoints"]]
    expected = sk.COCO17_NAMES if k == 17 else sk.NAMES
    unknown = [n for n in names if n not in expected]
    if unknown or len(set(names)) != k:
        raise UserError(f"{name}: keypoint names do not match {'COCO-17' if k == 17 else 'BlazePose-33'}"
                        f" (unknown or repeated: {(unknown or names)[:3]})")
    to_bp = [sk.INDEX[n] for n in names]
    images: dict[int, GtImage] = {}
    for n, im in enumerate(gt["images"]):
        try:
            iid, fn = im["id"], str(im["file_name"])
        except (KeyError, TypeError) as e:
            raise UserError(f"{name}: image record {n} without {e}") from None
        if isinstance(iid, bool) or not isinstance(iid, (int, str)) or (images and type(iid) is not type(next(iter(images)))):
            raise UserError(f"{name}: image record {n} has id {iid!r:.40}; expected integers (all of one kind)")
        if iid in images:
            raise UserError(f"{name}: image id {iid} appears twice")
        ex = im.get("exhaustive_person_annotation")
        polys = _polys(im)
        exhaustive = ex is True or (ex is None and assume_exhaustive) \
            or (isinstance(ex, str) and ex.startswith("partial") and bool(polys))
        images[iid] = GtImage(iid, fn, int(im.get("width") or 0), int(im.get("height") or 0), exhaustive,
                              polys, im.get("visibility_known", True) is not False, _tags(im.get("tags")),
                              str(im.get("source", "")))
    for n, a in enumerate(gt["annotations"]):
        if a.get("category_id") not in cats:
            continue
        aid = a.get("id", n)
        kp = a.get("keypoints")
        if not isinstance(kp, list) or len(kp) != 3 * k:
            got = len(kp) if isinstance(kp, list) else "no"
            raise UserError(f"{name}: annotation {aid} has {got} keypoint values; expected {3 * k}")
        im = images.get(a.get("image_id"))
        if im is None:
            raise UserError(f"{name}: annotation {aid} refers to unknown image {a.get('image_id')}")
        kps = np.zeros((sk.N, 3))
        kps[to_bp] = np.asarray(kp, dtype=np.float64).reshape(k, 3)
        kps[kps[:, 2] <= 0] = 0.0
        if not np.isfinite(kps).all() or np.abs(kps[:, :2]).max() > 1e6:
            raise UserError(f"{name}: annotation {aid} has a keypoint that is not a finite number of pixels")
        bbox = a.get("bbox")
        bbox = tuple(float(x) for x in bbox) if isinstance(bbox, list) and len(bbox) == 4 else _bbox_of(kps)
        area = a.get("area")
        area = float(area) if area else float(bbox[2] * bbox[3])
        crowd = int(bool(a.get("iscrowd", 0)))
        p = GtPerson(aid, kps, area, bbox)
        k17 = p.k17
        im.coco_anns.append({"image_id": im.id, "category_id": 1, "iscrowd": crowd, "area": area,
                             "bbox": list(bbox), "keypoints": k17.reshape(-1).tolist(),
                             "num_keypoints": int((k17[:, 2] > 0).sum()), "orig_id": aid})
        if not crowd and p.n_labelled17 > 0:
            im.people.append(p)
        if crowd and bbox[2] > 0 and bbox[3] > 0:
            im.crowd_boxes.append(bbox)
    return GroundTruth(name, k, list(images.values()))


# -- image matching ---------------------------------------------------------------

def _norm(s: str) -> str:
    s = s.replace("\\", "/")
    while s.startswith("./"):
        s = s[2:]
    return s


def match_images(gt: GroundTruth, keys: Iterable[str]) -> tuple[dict[str, GtImage], list[str]]:
    """Prediction key -> GT image: exact name, export name, path suffix, then base name if unique.

    Returns the mapping and messages about ambiguous or unmatched names.
    """
    by_name = {_norm(im.file_name): im for im in gt.images}
    by_base: dict[str, list[GtImage]] = {}
    for im in gt.images:
        by_base.setdefault(os.path.basename(_norm(im.file_name)), []).append(im)
    out: dict[str, GtImage] = {}
    msgs: list[str] = []
    pending = []
    taken: dict[int, str] = {}
    for key in keys:
        im = by_name.get(_norm(key)) or by_name.get(_norm(export_name(key)))
        if im is None:
            pending.append(key)
        elif im.id in taken:
            msgs.append(f"prediction {key!r} and {taken[im.id]!r} both match GT {im.file_name!r}; "
                        f"kept {taken[im.id]!r}")
        else:
            out[key] = im
            taken[im.id] = key
    unmatched = []
    for key in pending:
        n = _norm(export_name(key))
        cands = [im for name, im in by_name.items() if n.endswith("/" + name) or name.endswith("/" + n)]
        how = "path suffix"
        if not cands:
            cands = by_base.get(os.path.basename(n), [])
            how = "base name"
        if not cands:
            unmatched.append(key)
            continue
        if len(cands) > 1:
            msgs.append(f"ambiguous {how} for prediction {key!r}: {len(cands)} GT images "
                        f"({', '.join(c.file_name for c in cands[:3])}); not evaluated")
            continue
        im = cands[0]
        if im.id in taken:
            msgs.append(f"prediction {key!r} and {taken[im.id]!r} both match GT {im.file_name!r}; "
                        f"kept {taken[im.id]!r}")
            continue
        out[key] = im
        taken[im.id] = key
    if unmatched:
        msgs.append(f"{len(unmatched)} prediction file(s) not in the GT (e.g. {unmatched[0]!r})")
    return out, msgs


# -- OKS and matching ---------------------------------------------------------------

def oks_terms(gt_kps: np.ndarray, area: float, pred_xy: np.ndarray, pred_ok: np.ndarray,
              sigmas: np.ndarray) -> np.ndarray:
    """Per-point OKS terms exp(-d^2 / (2 (area+eps) (2 sigma)^2)); 0 where the prediction is missing."""
    d2 = ((pred_xy - gt_kps[..., :2]) ** 2).sum(-1)
    t = np.exp(-d2 / ((2.0 * sigmas) ** 2) / (area + _EPS) / 2.0)
    return np.where(pred_ok, t, 0.0)


def oks_matrix(gt_people: Sequence[GtPerson], preds: Sequence[Person]) -> np.ndarray:
    """(G, D) person OKS on the COCO-17 points, same numbers as pycocotools' computeOks."""
    out = np.zeros((len(gt_people), len(preds)))
    if not len(gt_people) or not len(preds):
        return out
    idx = list(sk.COCO17_FROM_BP)
    pxy = np.stack([p.xy[idx] for p in preds])            # (D, 17, 2)
    pok = np.stack([p.vis[idx] > 0 for p in preds])       # (D, 17)
    for g, gp in enumerate(gt_people):
        k17 = gp.k17
        lab = k17[:, 2] > 0
        t = oks_terms(k17[None, lab], gp.area, pxy[:, lab], pok[:, lab], sk.COCO17_SIGMAS[lab])
        out[g] = t.mean(1)
    return out


def match_people(oks: np.ndarray, min_oks: float = MIN_MATCH_OKS) -> dict[int, int]:
    """Greedy one-to-one matching, highest OKS first: GT index -> prediction index."""
    g, d = np.nonzero(oks >= max(min_oks, 1e-300))
    order = np.lexsort((d, g, -oks[g, d]))
    out: dict[int, int] = {}
    used: set[int] = set()
    for i in order:
        gi, di = int(g[i]), int(d[i])
        if gi in out or di in used:
            continue
        out[gi] = di
        used.add(di)
    return out


def _inside(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule: which of pts (N, 2) fall inside the polygon (M, 2)."""
    x, y = pts[:, 0][:, None], pts[:, 1][:, None]
    x0, y0 = poly[:, 0][None], poly[:, 1][None]
    x1, y1 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    crosses = ((y0 > y) != (y1 > y))
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return ((crosses & (x < xc)).sum(1) % 2) == 1


def _mostly_ignored(p: Person, polys: list[np.ndarray]) -> bool:
    m = p.vis > 0
    if not polys or not m.any():
        return False
    pts = p.xy[m]
    inside = np.zeros(len(pts), bool)
    for poly in polys:
        inside |= _inside(pts, poly)
    return inside.mean() > 0.5


# -- per-point signals ------------------------------------------------------------------

def person_score(p: Person) -> float:
    """The person's score, else its mean point confidence (1 when it has none)."""
    if p.score is not None and np.isfinite(p.score):
        return float(p.score)
    c = p.conf[np.isfinite(p.conf)]
    return float(c.mean()) if len(c) else 1.0


def suspicion(p: Person) -> np.ndarray:
    """Per-point suspicion; NaN falls back to 1 - confidence (and 1 without confidence), like the queue."""
    conf = np.where(np.isfinite(p.conf), p.conf, 0.0)
    return np.where(np.isfinite(p.suspicion), p.suspicion, 1.0 - conf)


def _signals(p: Person) -> dict[str, np.ndarray]:
    """Extra per-point signals riding in person.meta (any 33-long numeric array)."""
    out = {}
    for k, v in (p.meta or {}).items():
        try:
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if a.shape == (sk.N,):
            out[k] = a
    return out


# -- the point table ------------------------------------------------------------------

def defined_points(gt: GroundTruth) -> dict[str, set[int]]:
    """source -> the BlazePose points that source labels at all (on any of its people).

    Sources other than COCO label only some joints (MPII-style sets have no eyes or ears): a
    point shown where such a source has no label is not a point its annotator would have removed.
    """
    out: dict[str, set[int]] = {}
    for im in gt.images:
        s = out.setdefault(im.source, set())
        for gp in im.people:
            s.update(int(i) for i in np.flatnonzero(gp.kps[:, 2] > 0))
    return out


def clicks(people: Sequence[dict], rows: Sequence[dict], false_people: int, in_crowd: int = 0,
           crowd_boxes: int = 0) -> dict:
    """Human effort to turn the predictions into the ground truth, in clicks per GT person.

    Over the GT people with >= MIN_PEOPLE_POINTS labelled COCO-17 points: a missed person costs
    1 + one click per labelled point; a found person one drag per labelled point whose OKS term is
    under NEEDS_FIX_OKS (a point not shown counts: it has to be placed), plus one click per point
    shown where the human labelled nothing (`unlabel`, on points the source labels at all). Every
    predicted person matched to nobody on an image whose people are all annotated costs one delete,
    except those mostly inside a GT crowd box (COCO iscrowd: people nobody labels one by one): the
    app's crowd box (Shift+Delete, core `Session.mark_crowd`) removes them with one drag a box
    (`in_crowd` of the false people, in `crowd_boxes` boxes), and keeps the crowd's labelled
    people, verified by then (verifying is not counted for anyone).
    """
    counted = {(p["image_id"], p["gt_ann_id"]): p for p in people if p["n_labelled"] >= MIN_PEOPLE_POINTS}
    n = len(counted)
    missed = sum(1 + p["n_labelled"] for p in counted.values() if not p["matched"])
    drags = sum(1 for r in rows if r["matched"] and r["needs_fix"] and (r["image_id"], r["gt_ann_id"]) in counted)
    unlabel = sum(p["unlabel"] for p in counted.values() if p["matched"])
    if not n:
        return {"clicks_per_person": math.nan, "n_clicks_people": 0}
    parts = {"missed": missed, "drags": drags, "unlabel": unlabel,
             "deletes": int(false_people) - int(in_crowd) + int(crowd_boxes)}
    out = {f"clicks_{k}_per_person": v / n for k, v in parts.items()}
    out["clicks_per_person"] = sum(parts.values()) / n
    # the figure with a delete for every person in a crowd too (no crowd box)
    out["clicks_per_person_no_crowd_box"] = (sum(parts.values()) + int(in_crowd) - int(crowd_boxes)) / n
    out["n_clicks_people"] = n
    return out


@dataclass
class _Analysis:
    gt: GroundTruth
    images: list[tuple[str, GtImage]]          # (prediction key, GT image) evaluated
    rows: list[dict]
    people: list[dict]                         # one per GT person: matched oks, n labelled, tags
    kept: dict[int, list[int]]                 # image id -> prediction indices kept for COCOeval
    n_pred: int
    n_dropped: int
    n_unmatched_counted: int
    n_in_crowd: int                            # ... of them mostly inside a GT crowd box
    n_crowd_boxes: int                         # crowd boxes holding any: one box-delete each
    messages: list[str]
    predictions: dict[str, list[Person]]
    unlabelled_rows: list[dict] = field(default_factory=list)   # unlabelled_rows(): the queue's other points


def _analyse(gt, predictions: dict[str, list[Person]], *, min_match_oks: float = MIN_MATCH_OKS,
             keypoints: str = "coco17", assume_exhaustive: bool = False) -> _Analysis:
    if keypoints not in ("coco17", "all"):
        raise ValueError(f"keypoints must be 'coco17' or 'all', not {keypoints!r}")
    gt = load_gt(gt, assume_exhaustive=assume_exhaustive)
    if not isinstance(predictions, dict):
        raise UserError("predictions: expected a dict of file name -> list of Person")
    for key, people in predictions.items():
        if not isinstance(people, (list, tuple)) or not all(isinstance(p, Person) for p in people):
            raise UserError(f"predictions[{key!r}]: expected a list of annotator.core.model.Person")
    mapping, msgs = match_images(gt, predictions.keys())
    if not mapping:
        raise UserError(f"{gt.name}: none of the {len(predictions)} prediction file names match a GT image")
    n_skipped = len(gt.images) - len(mapping)
    if n_skipped:
        msgs.append(f"{n_skipped} GT image(s) have no predictions entry and were not evaluated")
    use_all = keypoints == "all" and gt.n_keypoints == 33
    bps = list(range(sk.N)) if use_all else list(sk.COCO17_FROM_BP)
    rows: list[dict] = []
    people: list[dict] = []
    kept: dict[int, list[int]] = {}
    n_pred = n_dropped = n_unmatched = n_in_crowd = n_crowd_boxes = 0
    images = sorted(mapping.items(), key=lambda kv: kv[1].id)
    defined = defined_points(gt)
    extra: list[dict] = []
    for key, im in images:
        preds = list(predictions[key])
        n_pred += len(preds)
        oks = oks_matrix(im.people, preds)
        match = match_people(oks, min_match_oks)
        matched_preds = set(match.values())
        keep = []
        crowds_used = set()
        for j, p in enumerate(preds):
            if j in matched_preds:
                keep.append(j)
            elif not im.exhaustive or _mostly_ignored(p, im.ignore_polys):
                n_dropped += 1
            else:
                keep.append(j)
                n_unmatched += 1
                c = next((c for c, b in enumerate(im.crowd_boxes) if p.share_in_box(b) > CROWD_SHARE), None)
                if c is not None:
                    n_in_crowd += 1
                    crowds_used.add(c)
        n_crowd_boxes += len(crowds_used)
        kept[im.id] = keep
        for g, gp in enumerate(im.people):
            j = match.get(g)
            p = preds[j] if j is not None else None
            person_oks = float(oks[g, j]) if j is not None else 0.0
            unlabel = 0
            if p is not None:                   # points shown where the human labelled nothing
                for bp in sk.COCO17_FROM_BP:
                    if gp.kps[bp, 2] <= 0 and p.vis[bp] > 0 and bp in defined.get(im.source, ()):
                        unlabel += 1
            people.append({"image_id": im.id, "file_name": im.file_name, "gt_ann_id": gp.ann_id,
                           "n_labelled": gp.n_labelled17, "matched": j is not None, "oks": person_oks,
                           "tags": im.tags, "source": im.source, "unlabel": unlabel})
            if p is not None:
                sus, sig = suspicion(p), _signals(p)
            for bp in bps:
                gx, gy, gv = gp.kps[bp]
                if gv <= 0:
                    continue
                sigma = sk.SIGMAS[bp]
                row = {"file_name": im.file_name, "pred_key": key, "image_id": im.id, "person": j,
                       "gt_ann_id": gp.ann_id, "bp": bp, "coco": _COCO_POS.get(bp), "name": sk.NAMES[bp],
                       "gt_x": float(gx), "gt_y": float(gy), "gt_v": int(gv), "vis_known": im.vis_known,
                       "exhaustive": im.exhaustive, "source": im.source, "tags": im.tags,
                       "long_side": gp.long_side, "area": gp.area, "matched": p is not None,
                       "person_oks": person_oks, "gt_labelled": True}
                if p is None:
                    row.update(pred_x=math.nan, pred_y=math.nan, missing=True, err_px=math.nan,
                               err_rel=math.nan, oks_term=0.0, needs_fix=True, suspicion=math.nan,
                               conf=math.nan, vis=0, verified=False)
                else:
                    px, py = p.xy[bp]
                    missing = bool(p.vis[bp] <= 0)
                    err = math.nan if missing else float(math.hypot(px - gx, py - gy))
                    term = 0.0 if missing else float(
                        math.exp(-(err ** 2) / ((2 * sigma) ** 2) / (gp.area + _EPS) / 2))
                    row.update(pred_x=float(px), pred_y=float(py), missing=missing, err_px=err,
                               err_rel=err / gp.long_side if gp.long_side > 0 else math.nan,
                               oks_term=term, needs_fix=term < NEEDS_FIX_OKS, suspicion=float(sus[bp]),
                               conf=float(p.conf[bp]), vis=int(p.vis[bp]), verified=bool(p.verified[bp]))
                    for name, a in sig.items():
                        row["sig_" + name] = float(a[bp])
                rows.append(row)
            if p is not None:
                extra += _unlabelled_rows(im, key, j, gp, p, bps, defined, sus, sig, person_oks)
    return _Analysis(gt, images, rows, people, kept, n_pred, n_dropped, n_unmatched, n_in_crowd, n_crowd_boxes,
                     msgs, predictions, extra)


def _unlabelled_rows(im, key, j, gp, p, bps, defined, sus, sig, person_oks) -> list[dict]:
    """Rows for a matched person's joints the GT leaves unlabelled (on joints its source labels at
    all) where the prediction holds a position: shown (needs fixing: an unlabel click) or a hidden
    guess (needs nothing). The review queue shows both, so ranking them is part of its job."""
    out = []
    for bp in bps:
        if gp.kps[bp, 2] > 0 or bp not in defined.get(im.source, ()):
            continue
        shown = bool(p.vis[bp] > 0)
        if not shown and not np.isfinite(p.conf[bp]):
            continue                    # nothing stored there: nothing to review
        row = {"file_name": im.file_name, "pred_key": key, "image_id": im.id, "person": j,
               "gt_ann_id": gp.ann_id, "bp": bp, "coco": _COCO_POS.get(bp), "name": sk.NAMES[bp],
               "gt_v": 0, "exhaustive": im.exhaustive, "source": im.source, "tags": im.tags,
               "matched": True, "person_oks": person_oks, "gt_labelled": False, "missing": not shown, "needs_fix": shown,
               "suspicion": float(sus[bp]), "conf": float(p.conf[bp]), "vis": int(p.vis[bp]),
               "verified": bool(p.verified[bp])}
        for name, a in sig.items():
            row["sig_" + name] = float(a[bp])
        out.append(row)
    return out


def point_table(gt: dict | str | Path, predictions: dict[str, list[Person]], *,
                min_match_oks: float = MIN_MATCH_OKS, keypoints: str = "coco17",
                assume_exhaustive: bool = False, unlabelled: bool = False) -> list[dict]:
    """One row per GT-labelled point of every GT person (COCO-17 points; all 33 with keypoints="all"
    and a 33-point GT).

    Row keys: file_name, pred_key, image_id, person (prediction index or None when the GT person
    was not matched), gt_ann_id, bp (BlazePose index), coco (COCO-17 index or None), name,
    gt_x, gt_y, gt_v, pred_x, pred_y, missing, err_px, err_rel (err / GT bbox long side),
    oks_term, needs_fix, suspicion (NaN -> 1 - conf fallback), conf, vis, verified,
    matched, person_oks, vis_known, exhaustive, source, tags, long_side, area, and sig_<key>
    for every 33-long array in person.meta (other suspicion signals to compare).
    Queue figures use the rows with matched and not verified. unlabelled=True appends the matched
    people's points the GT leaves unlabelled where the prediction holds a position (gt_labelled
    False; needs_fix when shown, an unlabel click): every point the review queue shows.
    """
    an = _analyse(gt, predictions, min_match_oks=min_match_oks, keypoints=keypoints,
                  assume_exhaustive=assume_exhaustive)
    return an.rows + an.unlabelled_rows if unlabelled else an.rows


# -- queue recall ------------------------------------------------------------------------

def queue_recall(scores, needs_fix, fractions: Sequence[float] = FRACTIONS) -> dict[float, float]:
    """Share of needs-fixing points found after reviewing the first f of points, most suspicious first.

    f * N points are reviewed (the last one fractionally); points with equal scores are taken in
    random order, counted at their expected value, so a constant score gives exactly f.
    NaN scores go last. Recall is NaN when nothing needs fixing.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(needs_fix, dtype=np.float64).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores ({s.shape}) and needs_fix ({y.shape}) differ in length")
    n, total = len(s), float(y.sum())
    if n == 0 or total == 0:
        return {f: math.nan for f in fractions}
    s = np.where(np.isfinite(s), s, -np.inf)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # tie groups
    starts = np.r_[0, np.nonzero(s[1:] != s[:-1])[0] + 1]
    sizes = np.diff(np.r_[starts, n])
    hits = np.add.reduceat(y, starts)
    cum_n = np.cumsum(sizes)
    cum_h = np.cumsum(hits)
    out = {}
    for f in fractions:
        k = min(max(float(f), 0.0), 1.0) * n
        gi = int(np.searchsorted(cum_n, k, side="left"))      # group that holds the k-th point
        if gi >= len(sizes):
            out[f] = 1.0
            continue
        before_n = cum_n[gi] - sizes[gi]
        before_h = cum_h[gi] - hits[gi]
        found = before_h + (k - before_n) * hits[gi] / sizes[gi]
        out[f] = float(found / total)
    return out


def _row_score(row: dict, key: str) -> float:
    if key == "conf":
        c = row["conf"]
        return 1.0 - c if np.isfinite(c) else 1.0
    if key in row:
        return row[key]
    if "sig_" + key in row:
        return row["sig_" + key]
    raise UserError(f"queue key {key!r}: no such per-point signal (have suspicion, conf"
                    f"{''.join(', ' + k[4:] for k in row if k.startswith('sig_'))})")


def queue_rows(rows: Sequence[dict]) -> list[dict]:
    """The rows a review queue orders: matched people's unverified points."""
    return [r for r in rows if r["matched"] and not r["verified"]]


def queue_figures(rows: Sequence[dict], key: str = "suspicion", fractions: Sequence[float] = FRACTIONS,
                  scores=None) -> dict:
    """needs_fixing_share and queue / random / oracle recall at each fraction, for one signal.

    key names a point-table column ("suspicion", "conf" meaning 1 - conf, "sig_<x>" or "<x>");
    `scores` (one per queue row, in order) overrides it.
    """
    q = queue_rows(rows)
    y = np.array([r["needs_fix"] for r in q], dtype=bool)
    if scores is None:
        s = np.array([_row_score(r, key) for r in q], dtype=np.float64)
    else:
        s = np.asarray(scores, dtype=np.float64)
        if len(s) != len(q):
            raise ValueError(f"{len(s)} scores for {len(q)} queue points")
    out = {"n_queue_points": len(q), "n_needs_fixing": int(y.sum()),
           "needs_fixing_share": float(y.mean()) if len(y) else math.nan}
    for name, sc in (("queue", s), ("random", np.zeros(len(q))), ("oracle", y.astype(float))):
        for f, r in queue_recall(sc, y, fractions).items():
            out[f"{name}_recall_at_{_key(f)}"] = r
    return out


# -- COCO AP ------------------------------------------------------------------------------

def _coco_ap(an: _Analysis) -> dict:
    """pycocotools COCOeval 'keypoints' on the COCO-17 mapping of the kept predictions."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_images, gt_anns, dets = [], [], []
    idx = list(sk.COCO17_FROM_BP)
    for key, im in an.images:
        gt_images.append({"id": im.id, "file_name": im.file_name, "width": im.width, "height": im.height})
        for a in im.coco_anns:
            gt_anns.append({k: v for k, v in a.items() if k != "orig_id"} | {"id": len(gt_anns) + 1})
        preds = an.predictions[key]
        for j in an.kept[im.id]:
            p = preds[j]
            ok = p.vis[idx] > 0
            xy = np.where(ok[:, None], p.xy[idx], _FAR)
            kp = np.column_stack([xy, np.where(ok, p.vis[idx], 0)]).reshape(-1).tolist()
            dets.append({"image_id": im.id, "category_id": 1, "keypoints": kp, "score": person_score(p),
                         "_area": _bbox_area(xy[ok])})
    n_gt = sum(1 for a in gt_anns if not a["iscrowd"] and a["num_keypoints"] > 0)
    if n_gt == 0:
        return {"oks_ap": math.nan, "oks_ap50": math.nan, "oks_ap75": math.nan, "oks_ar": math.nan}
    if not dets:
        return {"oks_ap": 0.0, "oks_ap50": 0.0, "oks_ap75": 0.0, "oks_ar": 0.0}
    data = {"images": gt_images, "annotations": gt_anns,
            "categories": [{"id": 1, "name": "person", "supercategory": "person",
                            "keypoints": list(sk.COCO17_NAMES),
                            "skeleton": [list(e) for e in sk.COCO17_SKELETON]}]}
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = data
        cg.createIndex()
        cd = cg.loadRes([{k: v for k, v in d.items() if k != "_area"} for d in dets])
        # loadRes takes the area from all points, the far-away missing ones too; use the real extent
        for ann, d in zip(cd.dataset["annotations"], dets):
            ann["area"] = d["_area"]
        ev = COCOeval(cg, cd, "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sk.COCO17_SIGMAS)
        ev.params.imgIds = [im.id for _, im in an.images]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    st = [math.nan if v < 0 else float(v) for v in ev.stats]
    return {"oks_ap": st[0], "oks_ap50": st[1], "oks_ap75": st[2], "oks_ar": st[5]}


def _bbox_area(pts: np.ndarray) -> float:
    if not len(pts):
        return 0.0
    w, h = np.ptp(pts, axis=0)
    return float(w * h)


# -- summary figures -------------------------------------------------------------------------

def _pck(rows: Sequence[dict], t: float) -> float:
    if not rows:
        return math.nan
    e = np.array([r["err_rel"] for r in rows], dtype=np.float64)
    return float(np.mean(np.where(np.isfinite(e), e < t, False)))


def _recall(people: Sequence[dict]) -> float:
    ps = [p for p in people if p["n_labelled"] >= MIN_PEOPLE_POINTS]
    if not ps:
        return math.nan
    return float(np.mean([p["matched"] and p["oks"] > RECALL_OKS for p in ps]))


def _image_draws(rows: Sequence[dict], n: int, seed: int):
    """n bootstrap resamples of the rows' indices, drawing whole images (the unit that varies)."""
    by_img: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        by_img.setdefault(r["image_id"], []).append(i)
    groups = [np.array(v) for v in by_img.values()]
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])


def _bootstrap(rows: list[dict], key: str, n: int, seed: int) -> dict:
    """90% intervals for pck_0_1 and queue_recall_at_0_2, resampling images (the unit that varies)."""
    if n <= 0 or not rows:
        return {}
    e = np.array([r["err_rel"] for r in rows], dtype=np.float64)
    hit = np.where(np.isfinite(e), e < 0.1, False)
    inq = np.array([r["matched"] and not r["verified"] for r in rows])
    y = np.array([bool(r["needs_fix"]) for r in rows])
    s = np.array([_row_score(r, key) if q else math.nan for r, q in zip(rows, inq)], dtype=np.float64)
    pck, qr = [], []
    for pick in _image_draws(rows, n, seed):
        pck.append(hit[pick].mean())
        m = pick[inq[pick]]
        if y[m].any():
            qr.append(queue_recall(s[m], y[m], (0.2,))[0.2])
    out = {"pck_0_1_lo": float(np.percentile(pck, 5)), "pck_0_1_hi": float(np.percentile(pck, 95))}
    if qr:
        out["queue_recall_at_0_2_lo"] = float(np.percentile(qr, 5))
        out["queue_recall_at_0_2_hi"] = float(np.percentile(qr, 95))
    return out


def _queue_ci(rows: list[dict], key: str, n: int, seed: int) -> dict:
    """90% interval of queue_recall_at_0_2 over `rows`, resampling images."""
    q = queue_rows(rows)
    if n <= 0 or not q:
        return {}
    y = np.array([bool(r["needs_fix"]) for r in q])
    s = np.array([_row_score(r, key) for r in q], dtype=np.float64)
    qr = []
    for pick in _image_draws(q, n, seed):
        if y[pick].any():
            qr.append(queue_recall(s[pick], y[pick], (0.2,))[0.2])
    if not qr:
        return {}
    return {"queue_recall_at_0_2_lo": float(np.percentile(qr, 5)), "queue_recall_at_0_2_hi": float(np.percentile(qr, 95))}


def evaluate(gt: dict | str | Path, predictions: dict[str, list[Person]], *, queue_key: str = "suspicion",
             seed: int = 0, min_match_oks: float = MIN_MATCH_OKS, keypoints: str = "coco17",
             assume_exhaustive: bool = False, bootstrap: int = 200,
             fractions: Sequence[float] = FRACTIONS) -> dict:
    """All figures of one prediction set against one GT, as a flat dict (see module docstring).

    queue_key: the per-point signal that orders the review queue ("suspicion", "conf" = 1 - conf,
    or a key of person.meta). seed: for the bootstrap intervals over images (`*_lo`, `*_hi`);
    the random-order recall is exact, not sampled. Only GT images that have a predictions entry
    are evaluated (an empty list means nobody was found there).
    """
    an = _analyse(gt, predictions, min_match_oks=min_match_oks, keypoints=keypoints,
                  assume_exhaustive=assume_exhaustive)
    rows, people = an.rows, an.people
    res: dict = {"gt": an.gt.name, "gt_keypoints": an.gt.n_keypoints, "keypoints": keypoints,
                 "queue_key": queue_key}
    res.update(_coco_ap(an))
    for t in PCK_THRESHOLDS:
        res[f"pck_{_key(t)}"] = _pck(rows, t)
    err = np.array([r["err_px"] for r in rows if r["matched"] and not r["missing"]], dtype=np.float64)
    res["median_error_px"] = float(np.median(err)) if len(err) else math.nan
    res["mean_error_px"] = float(np.mean(err)) if len(err) else math.nan
    per_joint: dict[str, list[float]] = {}
    for r in rows:
        if r["matched"] and not r["missing"]:
            per_joint.setdefault(r["name"], []).append(r["err_px"])
    res["per_joint_error_px"] = {n: float(np.mean(v)) for n, v in
                                 sorted(per_joint.items(), key=lambda kv: sk.INDEX[kv[0]])}
    res["person_recall"] = _recall(people)
    res["mean_matched_oks"] = float(np.mean([p["oks"] for p in people if p["matched"]])) \
        if any(p["matched"] for p in people) else math.nan
    empty = [(k, im) for k, im in an.images if not im.has_person and im.exhaustive]
    fp = [len(predictions[k]) for k, _ in empty]
    res["false_people"] = int(sum(fp))
    res["false_people_images"] = int(sum(1 for n in fp if n))
    res["n_empty_images"] = len(empty)
    # occlusion figures only where the GT's v means something
    vk = [r for r in rows if r["vis_known"]]
    for name, v in (("visible", VISIBLE), ("occluded", OCCLUDED)):
        sub = [r for r in vk if r["gt_v"] == v]
        res[f"pck_0_1_{name}"] = _pck(sub, 0.1)
        res[f"n_points_{name}"] = len(sub)
    judged = [r for r in vk if r["matched"] and not r["missing"]]
    res["occlusion_accuracy"] = float(np.mean([(r["vis"] == OCCLUDED) == (r["gt_v"] == OCCLUDED)
                                               for r in judged])) if judged else math.nan
    res.update(clicks(people, rows, an.n_unmatched_counted, an.n_in_crowd, an.n_crowd_boxes))
    res["n_pred_in_crowd"], res["n_crowd_boxes"] = an.n_in_crowd, an.n_crowd_boxes
    res.update(queue_figures(rows, queue_key, fractions))
    res.update(_bootstrap(rows, queue_key, bootstrap, seed))
    # the same queue over every point it shows: the unlabelled joints' shown points and hidden guesses too
    every = rows + an.unlabelled_rows
    res.update({"all_" + k: v for k, v in queue_figures(every, queue_key, fractions).items()})
    res.update({"all_" + k: v for k, v in _queue_ci(every, queue_key, bootstrap, seed).items()})
    # by image tag (small_person, non_upright, crowd, ...)
    tags = sorted({t for _, im in an.images for t in im.tags})
    for t in tags:
        ps = [p for p in people if t in p["tags"]]
        if not ps:
            continue
        res[f"n_gt_people_{t}"] = len(ps)
        res[f"person_recall_{t}"] = _recall(ps)
        res[f"pck_0_1_{t}"] = _pck([r for r in rows if t in r["tags"]], 0.1)
    res.update({
        "n_images": len(an.images),
        "n_gt_images_not_evaluated": len(an.gt.images) - len(an.images),
        "n_gt_people": len(people),
        "n_gt_people_5plus": sum(1 for p in people if p["n_labelled"] >= MIN_PEOPLE_POINTS),
        "n_gt_points": len(rows),
        "n_pred_people": an.n_pred,
        "n_matched_people": sum(1 for p in people if p["matched"]),
        "n_pred_dropped_not_exhaustive": an.n_dropped,
        "n_pred_unmatched_counted": an.n_unmatched_counted,
        "n_missing_pred_points": sum(1 for r in rows if r["matched"] and r["missing"]),
        "messages": "; ".join(an.messages),
    })
    return res


def format_report(result: dict) -> str:
    """A readable multi-line printout of evaluate()'s result."""
    def f(k, fmt="{:.3f}"):
        v = result.get(k)
        if v is None:
            return "-"
        if isinstance(v, float) and math.isnan(v):
            return "n/a"
        return fmt.format(v) if isinstance(v, float) else str(v)

    fr = sorted({k.rsplit("_at_", 1)[1] for k in result if k.startswith("queue_recall_at_")
                 and not k.endswith(("_lo", "_hi"))}, key=lambda s: float(s.replace("_", ".")))
    lines = [
        f"Evaluation against {result.get('gt', 'ground truth')} ({result.get('gt_keypoints')} keypoints)",
        f"  images {f('n_images')} (not evaluated {f('n_gt_images_not_evaluated')}), GT people "
        f"{f('n_gt_people')} ({f('n_gt_people_5plus')} with >= {MIN_PEOPLE_POINTS} points), "
        f"predicted people {f('n_pred_people')} (matched {f('n_matched_people')}, dropped on "
        f"non-exhaustive images {f('n_pred_dropped_not_exhaustive')})",
        f"  COCO OKS  AP {f('oks_ap')}  AP50 {f('oks_ap50')}  AR {f('oks_ar')}",
        f"  PCK@0.05 {f('pck_0_05')}  PCK@0.1 {f('pck_0_1')}"
        + (f" (90% CI {f('pck_0_1_lo')}-{f('pck_0_1_hi')})" if "pck_0_1_lo" in result else "")
        + f"  median error {f('median_error_px', '{:.1f}')} px",
        f"  person recall {f('person_recall')}  false people {f('false_people')} on "
        f"{f('false_people_images')} of {f('n_empty_images')} empty images",
        f"  human effort: {f('clicks_per_person', '{:.2f}')} clicks per person ({f('n_clicks_people')} people "
        f"with >= {MIN_PEOPLE_POINTS} points): missed {f('clicks_missed_per_person', '{:.2f}')}, drags "
        f"{f('clicks_drags_per_person', '{:.2f}')}, unlabel {f('clicks_unlabel_per_person', '{:.2f}')}, "
        f"deletes {f('clicks_deletes_per_person', '{:.2f}')}"
        + (f" ({f('n_pred_in_crowd')} unlabelled people in {f('n_crowd_boxes')} GT crowd regions, one crowd box"
           f" each; {f('clicks_per_person_no_crowd_box', '{:.2f}')} clicks with a delete for each)"
           if result.get("n_crowd_boxes") else ""),
        f"  occlusion (where GT v is known): PCK@0.1 visible {f('pck_0_1_visible')} "
        f"({f('n_points_visible')} pts), occluded {f('pck_0_1_occluded')} ({f('n_points_occluded')} pts), "
        f"visibility agreement {f('occlusion_accuracy')}",
        f"  review queue by {result.get('queue_key')}: {f('n_needs_fixing')} of {f('n_queue_points')} points "
        f"need fixing ({f('needs_fixing_share')})",
    ]
    for s in fr:
        lines.append(f"    recall after {float(s.replace('_', '.')):.0%}: queue {f('queue_recall_at_' + s)}  "
                     f"random {f('random_recall_at_' + s)}  oracle {f('oracle_recall_at_' + s)}")
    if "queue_recall_at_0_2_lo" in result:
        lines.append(f"    queue recall at 20%, 90% CI {f('queue_recall_at_0_2_lo')}-{f('queue_recall_at_0_2_hi')}")
    if "all_n_queue_points" in result:
        lines.append(f"  the same queue over every point it shows (also unlabelled joints: shown = an unlabel click, "
                     f"hidden guess = nothing): {f('all_n_needs_fixing')} of {f('all_n_queue_points')} need fixing")
        for s in fr:
            lines.append(f"    recall after {float(s.replace('_', '.')):.0%}: queue {f('all_queue_recall_at_' + s)}  "
                         f"random {f('all_random_recall_at_' + s)}  oracle {f('all_oracle_recall_at_' + s)}")
        if "all_queue_recall_at_0_2_lo" in result:
            lines.append(f"    queue recall at 20%, 90% CI {f('all_queue_recall_at_0_2_lo')}-"
                         f"{f('all_queue_recall_at_0_2_hi')}")
    pj = result.get("per_joint_error_px") or {}
    if pj:
        lines.append("  mean error per joint (px):")
        items = [f"{n} {v:.1f}" for n, v in pj.items()]
        for i in range(0, len(items), 4):
            lines.append("    " + ", ".join(items[i:i + 4]))
    tags = sorted(k[len("person_recall_"):] for k in result if k.startswith("person_recall_"))
    if tags:
        lines.append("  by image tag: " + "; ".join(
            f"{t}: {f('n_gt_people_' + t)} people, recall {f('person_recall_' + t)}, PCK@0.1 {f('pck_0_1_' + t)}"
            for t in tags))
    if result.get("messages"):
        lines.append("  notes: " + result["messages"])
    return "\n".join(lines)
