"""COCO person-keypoints files: all 33 BlazePose points, or the standard 17.

Writes what pycocotools loads (bbox, area, num_keypoints, v flags from the
visibility state, a skeleton in the category). Per-point confidence, verified
flags and provenance ride along as extra annotation fields (`bp_conf`,
`bp_verified`, `bp_source`), which COCO tools ignore and our importer reads,
so export -> import -> export loses nothing. This is also CVAT's
"COCO Keypoints 1.0" format.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.media import export_name, read_regular
from annotator.core.model import MAX_COORD, NOT_LABELLED, Frame, Person


def category(kind: str) -> dict:
    if kind == "33":
        return {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(sk.NAMES),
                "skeleton": [[a + 1, b + 1] for a, b in sk.EDGES]}
    return {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(sk.COCO17_NAMES),
            "skeleton": [list(e) for e in sk.COCO17_SKELETON]}


def person_annotation(p: Person, kind: str, verified_only: bool = False) -> dict | None:
    idx = list(range(sk.N)) if kind == "33" else list(sk.COCO17_FROM_BP)
    vis = p.vis[idx].astype(int)
    if verified_only:
        vis = np.where(p.verified[idx], vis, NOT_LABELLED)
    if verified_only and not (vis > 0).any():
        return None
    kps = []
    for j, i in enumerate(idx):
        if vis[j] == NOT_LABELLED:
            kps += [0.0, 0.0, 0]
        else:
            kps += [round(float(p.xy[i, 0]), 2), round(float(p.xy[i, 1]), 2), int(vis[j])]
    # bbox from all labelled points of the person (all 33 even for COCO-17:
    # feet and hands belong to the person's extent), a little padding.
    m = p.vis > 0 if not verified_only else (p.vis > 0) & p.verified
    if m.any():
        x0, y0 = p.xy[m].min(0)
        x1, y1 = p.xy[m].max(0)
        pad = 0.05 * max(x1 - x0, y1 - y0)
        bbox = [round(float(x0 - pad), 2), round(float(y0 - pad), 2),
                round(float(x1 - x0 + 2 * pad), 2), round(float(y1 - y0 + 2 * pad), 2)]
    else:
        bbox = [0.0, 0.0, 0.0, 0.0]
    # "segmentation" is part of a COCO person annotation; CVAT's importer (datumaro) rejects one without it
    ann = {"category_id": 1, "iscrowd": 0, "keypoints": kps, "num_keypoints": int((vis > 0).sum()),
           "segmentation": [], "bbox": bbox, "area": round(bbox[2] * bbox[3], 2),
           "bp_conf": [None if np.isnan(c) else round(float(c), 4) for c in p.conf[idx]],
           "bp_verified": [bool(v) for v in p.verified[idx]], "bp_source": [p.source[i] for i in idx]}
    if p.score is not None:
        ann["score"] = round(float(p.score), 4)
    if p.track_id is not None:
        ann["track_id"] = int(p.track_id)
    return ann


def crowd_annotation(box, kind: str) -> dict:
    """A crowd region as COCO writes one: iscrowd 1, no keypoints, the box as its polygon. COCOeval
    then ignores predictions there instead of counting them as false people."""
    x, y, w, h = (round(float(v), 2) for v in box)
    k = 33 if kind == "33" else 17
    return {"category_id": 1, "iscrowd": 1, "keypoints": [0] * (3 * k), "num_keypoints": 0,
            "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]], "bbox": [x, y, w, h],
            "area": round(w * h, 2)}


def to_coco(frames: Iterable[Frame], kind: str = "33", verified_only: bool = False,
            image_root: str | None = None) -> dict:
    """Build a COCO dict. kind: "33" (BlazePose) or "17" (COCO-17)."""
    if kind not in ("33", "17"):
        raise ValueError(f"kind must be '33' or '17', not {kind!r}")
    images, anns = [], []
    for f in frames:
        people = [a for a in (person_annotation(p, kind, verified_only) for p in f.persons) if a]
        if verified_only and not people and f.review_state != "verified":
            continue
        img_id = len(images) + 1
        images.append({"id": img_id, "file_name": export_name(f.file_name), "width": f.width, "height": f.height,
                       "bp_file_name": f.file_name})
        for a in people + [crowd_annotation(r, kind) for r in f.crowd_regions]:
            a["id"] = len(anns) + 1
            a["image_id"] = img_id
            anns.append(a)
    return {"info": {"description": "pose-annotator export", "keypoint_set": "blazepose33" if kind == "33"
                     else "coco17"},
            "licenses": [], "images": images, "annotations": anns, "categories": [category(kind)]}


def write_json(data: dict, out: Path) -> None:
    """Atomic write: a crash never leaves a half-written dataset."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)


def load_coco_json(path: str | Path) -> dict:
    """A COCO keypoints file as a dict, or a one-line UserError naming the file and the problem."""
    path = Path(path)
    raw = read_regular(path, "COCO file", limit=MAX_FILE_BYTES)
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (JSON files are UTF-8): {e.reason} at byte {e.start}") from None
    except RecursionError:
        raise UserError(f"{path}: not valid JSON (nested too deeply)") from None
    except ValueError as e:         # JSONDecodeError, and integers of more than 4300 digits
        raise UserError(f"{path}: not valid JSON ({str(e).splitlines()[0][:200]})") from None
    check_coco_shape(data, str(path))
    return data


def check_coco_shape(data, name: str) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise UserError(f"{name}: not a COCO file (needs 'images' and 'annotations' lists)")


MAX_FILE_BYTES = 2 << 30


def _id(v):
    """A COCO id (an integer; a string is accepted) as a dict key, or None when it cannot be one."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int) or isinstance(v, str):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def _number(v) -> float | None:
    """A finite JSON number as a float (None for anything else: strings, lists, null, NaN, inf, bool)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _size(v, path, where: str) -> int:
    if v is None:
        return 0
    f = _number(v)
    if f is None or not 0 <= f < 2 ** 31 or not f.is_integer():
        raise UserError(f"{path}: {where} is {v!r:.40}, not a size in pixels")
    return int(f)


def _keypoints(path, where: str, kp: list, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(xy (k, 2), v flags (k,)) of one annotation's flat keypoint list, checked value by value."""
    xy = np.zeros((k, 2))
    v = np.zeros(k, dtype=np.int8)
    for j in range(k):
        x, y, flag = kp[3 * j:3 * j + 3]
        fl = _number(flag)
        if fl is None or fl not in (0, 1, 2):
            raise UserError(f"{path}: {where}: keypoint {j + 1} has v flag {flag!r:.40}; expected 0, 1 or 2")
        if fl == 0:
            continue
        for name, c in (("x", x), ("y", y)):
            f = _number(c)
            if f is None or abs(f) > MAX_COORD:
                raise UserError(f"{path}: {where}: keypoint {j + 1} has {name} = {c!r:.40}; expected a finite"
                                f" number of pixels (at most {MAX_COORD:g})")
        xy[j] = float(x), float(y)
        v[j] = int(fl)
    return xy, v


def _extra(path, where: str, a: dict, key: str, k: int, ok, expected: str) -> list | None:
    """One of our per-point extra fields (bp_conf, bp_verified, bp_source): None, or k checked values."""
    vals = a.get(key)
    if vals is None:
        return None
    if not isinstance(vals, list) or len(vals) != k:
        got = f"{len(vals)} values" if isinstance(vals, list) else f"{vals!r:.40}"
        raise UserError(f"{path}: {where}: {key} has {got}; expected a list of {k} {expected}")
    for j, x in enumerate(vals):
        if not ok(x):
            raise UserError(f"{path}: {where}: {key}[{j}] is {x!r:.40}; expected {expected}")
    return vals


def _text_ok(x) -> bool:
    """A string SQLite can store: JSON may spell a lone surrogate ("\\udcff"), which is no UTF-8."""
    try:
        x.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _conf_ok(x) -> bool:
    return x is None or (_number(x) is not None and 0 <= x <= 1)


def read_coco(path: Path) -> tuple[str, list[Frame]]:
    """Parse a COCO keypoints file (17 or 33 points) -> ("17"|"33", frames with 33-point persons).

    COCO-17 points land on their BlazePose indices; the other 16 are not labelled. Every record is
    checked (types, finite numbers, ranges) before anything is returned: a file that is wrong
    anywhere is refused whole, with the record and the problem named.
    """
    path = Path(path)
    data = load_coco_json(path)
    raw_cats = data.get("categories", [])
    if not isinstance(raw_cats, list):
        raise UserError(f"{path}: 'categories' must be a list")
    cats = {}
    for c in raw_cats:
        if isinstance(c, dict) and _id(c.get("id")) is not None:
            cats[_id(c["id"])] = c
    person_cats = set()
    for cid, c in cats.items():
        kps = c.get("keypoints")
        if kps:
            if not isinstance(kps, list) or not all(isinstance(n, str) for n in kps):
                raise UserError(f"{path}: category {cid!r:.40}: 'keypoints' must be a list of point names")
            person_cats.add(cid)
    if not person_cats:
        raise UserError(f"{path}: no category with keypoints")
    # CVAT's "COCO Keypoints 1.0" export: one category per label (the point sublabels and other labels
    # without keypoints), keypoints named after the skeleton's sublabels in the server's order.
    # A category whose keypoint names are our 33 names (any order) is the one we read, by name.
    named = {cid for cid in person_cats if sorted(cats[cid]["keypoints"]) == sorted(sk.NAMES)}
    if named:
        person_cats = named
    nk = {len(cats[c]["keypoints"]) for c in person_cats}
    if len(nk) != 1 or next(iter(nk)) not in (17, 33):
        raise UserError(f"{path}: categories have {sorted(nk)} keypoints; expected 17 (COCO) or 33 (BlazePose)")
    k = next(iter(nk))
    kind = str(k)
    order = {cid: ([sk.INDEX[n] for n in cats[cid]["keypoints"]] if cid in named else
                   list(range(sk.N)) if k == 33 else list(sk.COCO17_FROM_BP)) for cid in person_cats}
    if not data["images"]:
        raise UserError(f"{path}: has no images")
    frames: dict = {}
    for n, im in enumerate(data["images"]):
        if not isinstance(im, dict):
            raise UserError(f"{path}: image record {n + 1} is {im!r:.40}, not an object")
        iid = _id(im.get("id"))
        name = im.get("bp_file_name") or im.get("file_name")
        where = f"image {im.get('id')!r:.40}"
        if iid is None:
            raise UserError(f"{path}: image record {n + 1} has id {im.get('id')!r:.40}; expected an integer")
        if not isinstance(name, str) or not name:
            raise UserError(f"{path}: {where}: file_name is {name!r:.40}; expected a file name")
        if "\0" in name or not _text_ok(name):
            raise UserError(f"{path}: {where}: file_name {name!r:.60} is not a valid file name")
        if iid in frames:
            raise UserError(f"{path}: image id {iid!r:.40} appears twice")
        frames[iid] = Frame(name, _size(im.get("width"), path, f"{where}: width"),
                            _size(im.get("height"), path, f"{where}: height"))
    for n, a in enumerate(data["annotations"]):
        if not isinstance(a, dict):
            raise UserError(f"{path}: annotation record {n + 1} is {a!r:.40}, not an object")
        aid = a.get("id", n)
        where = f"annotation {aid!r:.40}"
        cid = _id(a.get("category_id"))
        if cid not in person_cats:
            continue
        if a.get("iscrowd"):                # a crowd region: people there are not labelled one by one
            img = _id(a.get("image_id"))
            if img not in frames:
                raise UserError(f"{path}: {where} refers to unknown image_id {a.get('image_id')!r:.40}")
            box = a.get("bbox")
            if not (isinstance(box, list) and len(box) == 4 and all(_number(v) is not None for v in box)
                    and _number(box[2]) > 0 and _number(box[3]) > 0):
                raise UserError(f"{path}: {where}: a crowd region (iscrowd) needs a bbox [x, y, w, h] with w, h > 0,"
                                f" not {box!r:.60}")
            frames[img].crowd_regions.append([round(_number(v), 2) for v in box])
            continue
        kp = a.get("keypoints")
        if not isinstance(kp, list) or len(kp) != 3 * k:
            got = len(kp) if isinstance(kp, list) else "no"
            raise UserError(f"{path}: annotation {aid} has {got} keypoint values; expected {3 * k}"
                            f" ({k} points x 3)"[:300])
        img = _id(a.get("image_id"))
        if img not in frames:
            raise UserError(f"{path}: {where} refers to unknown image_id {a.get('image_id')!r:.40}")
        xy, v = _keypoints(path, where, kp, k)
        conf = _extra(path, where, a, "bp_conf", k, _conf_ok, "numbers in [0, 1] or null")
        ver = _extra(path, where, a, "bp_verified", k, lambda x: isinstance(x, bool) or x in (0, 1),
                     "true or false")
        src = _extra(path, where, a, "bp_source", k, lambda x: isinstance(x, str) and len(x) <= 1000 and _text_ok(x),
                     "provenance strings")
        score = a.get("score")
        if score is not None and _number(score) is None:
            raise UserError(f"{path}: {where}: score is {score!r:.40}; expected a finite number")
        track = a.get("track_id")
        if track is not None and (isinstance(track, bool) or not isinstance(track, int)
                                  or not -2 ** 62 < track < 2 ** 62):
            raise UserError(f"{path}: {where}: track_id is {track!r:.40}; expected an integer")
        idx = order[cid]
        p = Person(None, None)
        p.vis[idx] = v
        p.xy[idx] = xy
        if conf is not None:
            p.conf[idx] = [np.nan if c is None else float(c) for c in conf]
        if ver is not None:
            p.verified[idx] = [bool(x) for x in ver]
            p.meta["verified_known"] = True
        if src is not None:
            for j, i in enumerate(idx):
                p.source[i] = src[j]
        p.score = None if score is None else float(score)
        p.track_id = track
        frames[img].persons.append(p)
    return kind, list(frames.values())
