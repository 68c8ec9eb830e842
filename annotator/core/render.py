"""Draw people on an image (a quick look without the GUI, and report figures).

Colors come from skeleton.REGION_COLORS (left warm, right cool); occluded
points are hollow, verified points get a white ring, low-confidence points
are drawn smaller.
"""
from __future__ import annotations

import numpy as np

from annotator.core import skeleton as sk
from annotator.core.model import NOT_LABELLED, OCCLUDED, Frame


def draw(rgb: np.ndarray, frame: Frame, radius: float | None = None) -> np.ndarray:
    import cv2
    img = np.ascontiguousarray(rgb.copy())
    h, w = img.shape[:2]
    r0 = radius or max(2.0, min(h, w) / 200)
    thick = max(1, int(round(r0 / 2)))
    for p in frame.persons:
        xy = p.xy
        for a, b in sk.EDGES:
            if p.vis[a] == NOT_LABELLED or p.vis[b] == NOT_LABELLED:
                continue
            cv2.line(img, tuple(int(v) for v in xy[a]), tuple(int(v) for v in xy[b]), sk.edge_color(a, b),
                     thick, cv2.LINE_AA)
        for i in range(sk.N):
            if p.vis[i] == NOT_LABELLED:
                continue
            c = p.conf[i]
            r = r0 * (0.6 + 0.4 * (1.0 if np.isnan(c) else float(c)))
            center = (int(xy[i, 0]), int(xy[i, 1]))
            col = sk.point_color(i)
            if p.vis[i] == OCCLUDED:
                cv2.circle(img, center, int(round(r)), col, thick, cv2.LINE_AA)
            else:
                cv2.circle(img, center, int(round(r)), col, -1, cv2.LINE_AA)
            if p.verified[i]:
                cv2.circle(img, center, int(round(r + thick + 1)), (255, 255, 255), 1, cv2.LINE_AA)
    return img


def render_project(project, out_dir, limit: int | None = None, progress: bool = True) -> dict:
    """Write every image with its people drawn into out_dir as JPEG."""
    from pathlib import Path

    from PIL import Image

    from annotator.core.errors import UserError
    from annotator.core.media import flat_name
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = project.store.images()[:limit] if limit else project.store.images()
    it = rows
    if progress:
        from tqdm import tqdm
        it = tqdm(rows, unit="img", desc="render")
    n, failed = 0, []
    for r in it:
        try:
            rgb = project.load_rgb(r)
        except UserError as e:
            failed.append(str(e))
            continue
        img = draw(rgb, project.store.load_frame(r.id))
        name = flat_name(r.file_name)
        Image.fromarray(img).save(out / (Path(name).stem + ".jpg"), quality=90)
        n += 1
    return {"rendered": n, "failed": failed}
