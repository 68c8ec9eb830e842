"""YOLO-pose dataset (what Ultralytics trains on): images/, labels/, data.yaml.

One label line per person: class cx cy w h then x y v per keypoint, all
normalised to the image size. data.yaml carries kpt_shape and flip_idx (the
left/right permutation Ultralytics needs for flip augmentation). Video frames
are written out as JPEG files; photos are copied.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from annotator.core import skeleton as sk
from annotator.core.media import flat_name
from annotator.core.model import NOT_LABELLED, Frame


def label_lines(f: Frame, kind: str = "33", verified_only: bool = False) -> list[str]:
    idx = list(range(sk.N)) if kind == "33" else list(sk.COCO17_FROM_BP)
    lines = []
    for p in f.persons:
        vis = p.vis.astype(int).copy()
        if verified_only:
            vis = np.where(p.verified, vis, NOT_LABELLED)
        m = vis > 0
        if not m.any():
            continue
        x0, y0 = np.clip(p.xy[m].min(0), 0, [f.width, f.height])
        x1, y1 = np.clip(p.xy[m].max(0), 0, [f.width, f.height])
        vals = [(x0 + x1) / 2 / f.width, (y0 + y1) / 2 / f.height, (x1 - x0) / f.width, (y1 - y0) / f.height]
        for i in idx:
            if vis[i] == NOT_LABELLED:
                vals += [0.0, 0.0, 0]
            else:
                vals += [float(np.clip(p.xy[i, 0] / f.width, 0, 1)), float(np.clip(p.xy[i, 1] / f.height, 0, 1)),
                         int(vis[i])]
        lines.append("0 " + " ".join(f"{v:.6f}" if isinstance(v, float) else str(v) for v in vals))
    return lines


def flip_idx(kind: str) -> list[int]:
    if kind == "33":
        return list(sk.FLIP)
    return list(sk.COCO17_FLIP)


def write_yolo(frames: Iterable[Frame], out: Path, image_source: Callable[[Frame], Path | np.ndarray],
               kind: str = "33", verified_only: bool = False) -> dict:
    """image_source(frame) gives a file to copy or an RGB array to encode (video frames)."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    n_img = n_people = 0
    for f in frames:
        lines = label_lines(f, kind, verified_only)
        if verified_only and not lines and f.review_state != "verified":
            continue
        name = flat_name(f.file_name)
        src = image_source(f)
        dst = out / "images" / name
        if isinstance(src, Path):
            shutil.copyfile(src, dst)
        else:
            from PIL import Image
            Image.fromarray(src).save(dst, quality=95)
        (out / "labels" / (Path(name).stem + ".txt")).write_text("\n".join(lines) + ("\n" if lines else ""))
        n_img += 1
        n_people += len(lines)
    k = sk.N if kind == "33" else 17
    names = sk.NAMES if kind == "33" else sk.COCO17_NAMES
    (out / "data.yaml").write_text(
        f"# pose-annotator YOLO-pose export\npath: {out.resolve()}\ntrain: images\nval: images\n"
        f"kpt_shape: [{k}, 3]\nflip_idx: {flip_idx(kind)}\nnames:\n  0: person\n"
        f"kpt_names:\n  0: [{', '.join(names)}]\n")
    return {"images": n_img, "people": n_people}
