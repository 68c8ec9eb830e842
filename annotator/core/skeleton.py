"""The 33-point BlazePose skeleton: the single definition every module uses.

Names, edges, left/right pairs, body regions (for colors) and the mapping to
COCO-17 all live here so the GUI, exporters, CVAT label and metrics never
disagree about what index 25 means.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NAMES: tuple[str, ...] = (
    "nose",
    "left_eye_inner", "left_eye", "left_eye_outer",
    "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear",
    "mouth_left", "mouth_right",
    "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
    "left_pinky", "right_pinky",
    "left_index", "right_index",
    "left_thumb", "right_thumb",
    "left_hip", "right_hip",
    "left_knee", "right_knee",
    "left_ankle", "right_ankle",
    "left_heel", "right_heel",
    "left_foot_index", "right_foot_index",
)
N = len(NAMES)
assert N == 33
INDEX = {n: i for i, n in enumerate(NAMES)}

# Same edges as mediapipe's POSE_CONNECTIONS.
EDGES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10),
    (11, 12), (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19),
    (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20),
    (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28),
    (27, 29), (28, 30), (29, 31), (30, 32), (27, 31), (28, 32),
)


def _mirror(name: str) -> str:
    if name.startswith("left_"):
        return "right_" + name[5:]
    if name.startswith("right_"):
        return "left_" + name[6:]
    if name == "mouth_left":
        return "mouth_right"
    if name == "mouth_right":
        return "mouth_left"
    return name


# FLIP[i] is the index of the mirrored point (i itself for the nose).
FLIP: tuple[int, ...] = tuple(INDEX[_mirror(n)] for n in NAMES)
LR_PAIRS: tuple[tuple[int, int], ...] = tuple((i, j) for i, j in enumerate(FLIP) if i < j)


def side(i: int) -> str:
    """'left', 'right' or 'center' (the person's own left)."""
    n = NAMES[i]
    if n.startswith("left_") or n == "mouth_left":
        return "left"
    if n.startswith("right_") or n == "mouth_right":
        return "right"
    return "center"


def _region(i: int) -> str:
    if i <= 10:
        return "face"
    if i in (11, 12, 23, 24):
        return "torso"
    if i <= 22:
        return "left_arm" if side(i) == "left" else "right_arm"
    return "left_leg" if side(i) == "left" else "right_leg"


REGIONS: tuple[str, ...] = tuple(_region(i) for i in range(N))

# RGB colors per region: left side warm, right side cool, so a swapped
# person is obvious at a glance.
REGION_COLORS: dict[str, tuple[int, int, int]] = {
    "face": (255, 235, 59),
    "torso": (240, 240, 240),
    "left_arm": (255, 140, 0),
    "right_arm": (0, 170, 255),
    "left_leg": (230, 40, 40),
    "right_leg": (40, 90, 255),
}


def point_color(i: int) -> tuple[int, int, int]:
    return REGION_COLORS[REGIONS[i]]


def edge_color(a: int, b: int) -> tuple[int, int, int]:
    """An edge takes the color of its limb end (torso only when both ends are torso)."""
    ra, rb = REGIONS[a], REGIONS[b]
    if ra == rb:
        return REGION_COLORS[ra]
    for r in (ra, rb):
        if r not in ("torso", "face"):
            return REGION_COLORS[r]
    return REGION_COLORS["torso"]


# COCO-17 order and the BlazePose index for each COCO keypoint.
COCO17_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
COCO17_FROM_BP: tuple[int, ...] = tuple(INDEX[n] for n in COCO17_NAMES)
# COCO17_FLIP[k] is the COCO-17 index of keypoint k's mirror (FLIP in COCO-17 order).
COCO17_FLIP: tuple[int, ...] = tuple(COCO17_FROM_BP.index(FLIP[bp]) for bp in COCO17_FROM_BP)
# 1-based, as COCO's category "skeleton" field wants.
COCO17_SKELETON: tuple[tuple[int, int], ...] = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7),
    (6, 8), (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5),
    (4, 6), (5, 7),
)
# Standard COCO per-keypoint OKS sigmas (same order as COCO17_NAMES).
COCO17_SIGMAS = np.array([
    .26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87,
    .87, .89, .89]) / 10.0


def _bp_sigmas() -> np.ndarray:
    """OKS sigmas for all 33 points: COCO's where defined, else the nearest analogue."""
    s = np.zeros(N)
    for k, bp in enumerate(COCO17_FROM_BP):
        s[bp] = COCO17_SIGMAS[k]
    eye = COCO17_SIGMAS[1]
    for n in ("left_eye_inner", "left_eye_outer", "right_eye_inner", "right_eye_outer"):
        s[INDEX[n]] = eye
    s[INDEX["mouth_left"]] = s[INDEX["mouth_right"]] = COCO17_SIGMAS[0]
    wrist = COCO17_SIGMAS[9]
    for n in ("pinky", "index", "thumb"):
        s[INDEX["left_" + n]] = s[INDEX["right_" + n]] = wrist
    ankle = COCO17_SIGMAS[15]
    for n in ("heel", "foot_index"):
        s[INDEX["left_" + n]] = s[INDEX["right_" + n]] = ankle
    return s


SIGMAS = _bp_sigmas()

# Joint angles shown in the GUI: (name, a, vertex, b) and the plausible range in degrees.
ANGLES: tuple[tuple[str, int, int, int], ...] = (
    ("left_elbow", 11, 13, 15), ("right_elbow", 12, 14, 16),
    ("left_shoulder", 13, 11, 23), ("right_shoulder", 14, 12, 24),
    ("left_hip", 11, 23, 25), ("right_hip", 12, 24, 26),
    ("left_knee", 23, 25, 27), ("right_knee", 24, 26, 28),
)
ANGLE_RANGE: dict[str, tuple[float, float]] = {
    "elbow": (25.0, 180.0), "shoulder": (0.0, 180.0), "hip": (30.0, 180.0), "knee": (25.0, 180.0),
}


def joint_angles(xy: np.ndarray, vis: np.ndarray | None = None) -> dict[str, float | None]:
    """Interior angle in degrees at each joint of ANGLES (None where a point is unlabelled)."""
    out: dict[str, float | None] = {}
    for name, a, v, b in ANGLES:
        if vis is not None and (vis[a] == 0 or vis[v] == 0 or vis[b] == 0):
            out[name] = None
            continue
        u, w = xy[a] - xy[v], xy[b] - xy[v]
        nu, nw = np.linalg.norm(u), np.linalg.norm(w)
        if nu < 1e-6 or nw < 1e-6:
            out[name] = None
            continue
        c = float(np.clip(np.dot(u, w) / (nu * nw), -1.0, 1.0))
        out[name] = float(np.degrees(np.arccos(c)))
    return out


def implausible_angles(angles: dict[str, float | None]) -> list[str]:
    bad = []
    for name, val in angles.items():
        if val is None:
            continue
        lo, hi = ANGLE_RANGE[name.split("_", 1)[1]]
        if not lo <= val <= hi:
            bad.append(name)
    return bad


@dataclass(frozen=True)
class Skeleton:
    """A read-only view for code that wants an object (exporters, CVAT label)."""
    names: tuple[str, ...] = NAMES
    edges: tuple[tuple[int, int], ...] = EDGES
    flip: tuple[int, ...] = FLIP


BLAZEPOSE = Skeleton()
