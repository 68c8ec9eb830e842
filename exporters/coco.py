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
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.media import export_name
from annotator.core.model import NOT_LABELLED, Frame, Person


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
        for a in people:
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
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    check_coco_shape(data, str(path))
    return data


def check_coco_shape(data, name: str) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise UserError(f"{name}: not a COCO file (needs 'images' and 'annotations' lists)")


def read_coco(path: Path) -> tuple[str, list[Frame]]:
    """Parse a COCO keypoints file (17 or 33 points) -> ("17"|"33", frames with 33-point persons).

    COCO-17 points land on their BlazePose indices; the other 16 are not labelled.
    """
    path = Path(path)
    data = load_coco_json(path)
    cats = {c.get("id"): c for c in data.get("categories", []) if isinstance(c, dict)}
    person_cats = {cid for cid, c in cats.items() if c.get("keypoints")}
    if not person_cats:
        raise UserError(f"{path}: no category with keypoints")
    # CVAT's "COCO Keypoints 1.0" export: one category per label (the point sublabels and other labels
    # without keypoints), keypoints named after the skeleton's sublabels in the server's order.
    # A category whose keypoint names are our 33 names (any order) is the one we read, by name.
    named = {cid for cid in person_cats if sorted(map(str, cats[cid]["keypoints"])) == sorted(sk.NAMES)}
    if named:
        person_cats = named
    nk = {len(cats[c]["keypoints"]) for c in person_cats}
    if len(nk) != 1 or next(iter(nk)) not in (17, 33):
        raise UserError(f"{path}: categories have {sorted(nk)} keypoints; expected 17 (COCO) or 33 (BlazePose)")
    k = next(iter(nk))
    kind = str(k)
    order = {cid: ([sk.INDEX[str(n)] for n in cats[cid]["keypoints"]] if cid in named else
                   list(range(sk.N)) if k == 33 else list(sk.COCO17_FROM_BP)) for cid in person_cats}
    frames: dict[int, Frame] = {}
    for im in data["images"]:
        try:
            frames[im["id"]] = Frame(im.get("bp_file_name") or im["file_name"], int(im.get("width") or 0),
                                     int(im.get("height") or 0))
        except (KeyError, TypeError) as e:
            raise UserError(f"{path}: image record without {e}") from None
    for n, a in enumerate(data["annotations"]):
        if a.get("category_id") not in person_cats:
            continue
        kp = a.get("keypoints")
        if not isinstance(kp, list) or len(kp) != 3 * k:
            got = len(kp) if isinstance(kp, list) else "no"
            raise UserError(f"{path}: annotation {a.get('id', n)} has {got} keypoint values; expected {3 * k}"
                            f" ({k} points x 3)")
        if a.get("image_id") not in frames:
            raise UserError(f"{path}: annotation {a.get('id', n)} refers to unknown image_id {a.get('image_id')}")
        idx = order[a["category_id"]]
        arr = np.asarray(kp, dtype=np.float64).reshape(k, 3)
        p = Person(None, None)
        v = arr[:, 2].astype(int)
        if ((v < 0) | (v > 2)).any():
            raise UserError(f"{path}: annotation {a.get('id', n)} has v flags outside 0..2")
        for j, i in enumerate(idx):
            p.vis[i] = v[j]
            p.xy[i] = arr[j, :2] if v[j] > 0 else (0.0, 0.0)
        for key, attr in (("bp_conf", "conf"), ("bp_verified", "verified")):
            vals = a.get(key)
            if isinstance(vals, list) and len(vals) == k:
                target = getattr(p, attr)
                for j, i in enumerate(idx):
                    target[i] = np.nan if vals[j] is None else vals[j]
                if key == "bp_verified":
                    p.meta["verified_known"] = True
        if isinstance(a.get("bp_source"), list) and len(a["bp_source"]) == k:
            for j, i in enumerate(idx):
                p.source[i] = a["bp_source"][j]
        p.score = a.get("score")
        p.track_id = a.get("track_id")
        frames[a["image_id"]].persons.append(p)
    return kind, list(frames.values())
