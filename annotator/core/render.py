"""Draw people on an image (a quick look without the GUI, and report figures).

Colors come from skeleton.REGION_COLORS (left warm, right cool); occluded
points are hollow, verified points get a white ring, low-confidence points
are drawn smaller.
"""
from __future__ import annotations

import numpy as np

from annotator.core import skeleton as sk
from annotator.core.model import NOT_LABELLED, OCCLUDED, Frame


# Marks shared by the app and the web page (RGB): suspect points, joint angles in / out of their range.
SUSPECT_COLOR = (255, 40, 200)
GOOD_ANGLE = (120, 255, 120)
BAD_ANGLE = (255, 60, 60)


def angle_arc(a, v, b, radius: float, n: int = 12) -> np.ndarray:
    """(n, 2) points of the arc at vertex v from the direction of a to that of b (the shorter way)."""
    a, v, b = (np.asarray(t, dtype=np.float64) for t in (a, v, b))
    ua = np.arctan2(*(a - v)[::-1])
    ub = np.arctan2(*(b - v)[::-1])
    d = (ub - ua + np.pi) % (2 * np.pi) - np.pi
    ts = np.linspace(ua, ua + d, n)
    return np.column_stack([v[0] + radius * np.cos(ts), v[1] + radius * np.sin(ts)])


def _radius(img: np.ndarray, radius: float | None) -> tuple[float, int]:
    h, w = img.shape[:2]
    r0 = radius or max(2.0, min(h, w) / 200)
    return r0, max(1, int(round(r0 / 2)))


def draw(rgb: np.ndarray, frame: Frame, radius: float | None = None,
         suspects: set[tuple[int, int]] = frozenset()) -> np.ndarray:
    """suspects: (index of the person in frame.persons, point index) pairs ringed in SUSPECT_COLOR."""
    import cv2
    img = np.ascontiguousarray(rgb.copy())
    r0, thick = _radius(img, radius)
    for k, p in enumerate(frame.persons):
        xy = p.xy
        for a, b in sk.EDGES:
            if p.vis[a] == NOT_LABELLED or p.vis[b] == NOT_LABELLED:
                continue
            cv2.line(img, tuple(int(v) for v in xy[a]), tuple(int(v) for v in xy[b]), sk.edge_color(a, b),
                     thick, cv2.LINE_AA)
        for i in range(sk.N):
            if p.vis[i] == NOT_LABELLED:
                if (k, i) in suspects and p.hidden_guess[i]:     # a doubted hidden guess: ring where it would be
                    cv2.circle(img, (int(xy[i, 0]), int(xy[i, 1])), int(round(r0 * 2 + thick)), SUSPECT_COLOR,
                               thick, cv2.LINE_AA)
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
            if (k, i) in suspects:
                cv2.circle(img, center, int(round(r0 * 2 + thick)), SUSPECT_COLOR, thick, cv2.LINE_AA)
    return img


def draw_angles(img: np.ndarray, persons, radius: float | None = None) -> np.ndarray:
    """Joint angles (skeleton.ANGLES) drawn in place on every person: an arc and the degrees at each
    joint, green inside skeleton.ANGLE_RANGE, red with a red ring on the joint outside it."""
    import cv2
    r0, thick = _radius(img, radius)
    scale = max(0.4, r0 / 5)
    for p in persons:
        angles = sk.joint_angles(p.xy, p.vis)
        bad = set(sk.implausible_angles(angles))
        for name, a, v, b in sk.ANGLES:
            deg = angles.get(name)
            if deg is None:
                continue
            col = BAD_ANGLE if name in bad else GOOD_ANGLE
            arc = angle_arc(p.xy[a], p.xy[v], p.xy[b], r0 * 4)
            cv2.polylines(img, [np.round(arc).astype(np.int32)], False, col, thick, cv2.LINE_AA)
            c = (int(p.xy[v, 0]), int(p.xy[v, 1]))
            if name in bad:
                cv2.circle(img, c, int(round(r0 * 2.2)), BAD_ANGLE, thick + 1, cv2.LINE_AA)
            org = (c[0] + int(r0 * 3), c[1] - int(r0 * 3))
            text = f"{deg:.0f}"
            cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
            cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, col, thick, cv2.LINE_AA)
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
