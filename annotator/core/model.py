"""In-memory pose data: Person (33 points) and Frame (one image or video frame).

The store loads and saves these; exporters, CVAT sync, metrics and the GUI all
speak them, so none of those needs to know SQL. Modelled on sleap-io's
Instance / LabeledFrame split, flattened to arrays because every consumer
wants arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from annotator.core import skeleton as sk

# Visibility state per point (same numbers as COCO's v flag).
NOT_LABELLED, OCCLUDED, VISIBLE = 0, 1, 2
VIS_NAMES = {NOT_LABELLED: "not labelled", OCCLUDED: "occluded", VISIBLE: "visible"}

# Point status.
PREDICTED, VERIFIED = "predicted", "verified"


MAX_COORD = 1e6     # |x|, |y| in pixels: far outside any image, small enough that every area stays finite


def check_person(p: Person) -> str | None:
    """What makes a person unfit to store, or None: the store's last line of defence, so no NaN,
    infinity or absurd value written by any path (an import, a model, a hand edit) poisons a project.
    (One comparison per array on the good path: NaN and infinities fail the `<=` tests too.)"""
    if p.xy.shape != (sk.N, 2) or len(p.source) != sk.N:
        return f"has {len(p.xy)} points, expected {sk.N}"
    if not np.abs(p.xy).max() <= MAX_COORD:
        bad = ~(np.abs(p.xy) <= MAX_COORD).all(1)
        i = int(np.flatnonzero(bad)[0])
        return f"point '{sk.NAMES[i]}' has coordinates {p.xy[i].tolist()} (not finite, or beyond {MAX_COORD:g} px)"
    if not (0 <= p.vis.min() and p.vis.max() <= 2):
        return "has visibility flags outside 0..2"
    if ((p.conf < 0) | (p.conf > 1)).any():    # NaN (no value) passes, infinities do not
        return "has a confidence outside [0, 1]"
    if np.isinf(p.suspicion).any():
        return "has an infinite suspicion score"
    try:
        "".join(p.source).encode("utf-8")      # TypeError: an entry that is not a string
    except TypeError:
        return "has a provenance that is not text"
    except UnicodeEncodeError:
        return "has a provenance that is not valid UTF-8"
    if p.score is not None and (isinstance(p.score, bool) or not isinstance(p.score, (int, float, np.number))
                                or not np.isfinite(p.score)):
        return f"has score {p.score!r}, not a finite number"
    if p.track_id is not None and (isinstance(p.track_id, bool) or not isinstance(p.track_id, (int, np.integer))
                                   or not -2 ** 62 < int(p.track_id) < 2 ** 62):
        return f"has track id {p.track_id!r}, not an integer"
    return None


def _arr(v, shape, dtype, fill):
    if v is None:
        return np.full(shape, fill, dtype=dtype)
    a = np.asarray(v, dtype=dtype)
    if a.shape != shape:
        raise ValueError(f"expected shape {shape}, got {a.shape}")
    return a.copy()


@dataclass
class Person:
    """One person's 33 points. Arrays are indexed by skeleton.NAMES order.

    xy: pixels in the (EXIF-rotated) image; vis: 0/1/2; conf: model confidence
    in [0, 1] (NaN where no model said anything); verified: per point;
    source: per-point provenance ("mediapipe-0.10.21/full", "round-2",
    "annotator:alice", "import:coco").
    """
    xy: np.ndarray
    vis: np.ndarray
    conf: np.ndarray = None
    verified: np.ndarray = None
    source: list = None
    suspicion: np.ndarray = None
    score: float | None = None
    track_id: int | None = None
    id: int | None = None
    rev: int = 0
    meta: dict = field(default_factory=dict)   # reader notes, not stored (e.g. verified_known)

    def __post_init__(self):
        n = sk.N
        self.xy = _arr(self.xy, (n, 2), np.float64, 0.0)
        self.vis = _arr(self.vis, (n,), np.int8, NOT_LABELLED)
        self.conf = _arr(self.conf, (n,), np.float64, np.nan)
        self.verified = _arr(self.verified, (n,), bool, False)
        self.suspicion = _arr(self.suspicion, (n,), np.float64, np.nan)
        if self.source is None:
            self.source = [""] * n
        if len(self.source) != n:
            raise ValueError(f"expected {n} sources, got {len(self.source)}")
        self.source = list(self.source)

    def copy(self) -> "Person":
        return Person(self.xy, self.vis, self.conf, self.verified, list(self.source),
                      self.suspicion, self.score, self.track_id, self.id, self.rev)

    @property
    def labelled(self) -> np.ndarray:
        return self.vis > NOT_LABELLED

    @property
    def hidden_guess(self) -> np.ndarray:
        """Points the pre-fill placed but stored as not labelled (off the image, or not seen by the
        per-box pose model): the guess and its confidence are kept so one key brings it back."""
        return (self.vis == NOT_LABELLED) & np.isfinite(self.conf) & ~self.verified

    @property
    def fully_verified(self) -> bool:
        return bool(self.verified.all())

    def bbox(self, pad: float = 0.0, guesses: bool = False) -> tuple[float, float, float, float] | None:
        """x, y, w, h around labelled points (guesses: around the hidden guesses; None when there are none)."""
        m = self.hidden_guess if guesses else self.labelled
        if not m.any():
            return None
        x0, y0 = self.xy[m].min(0)
        x1, y1 = self.xy[m].max(0)
        w, h = x1 - x0, y1 - y0
        return (float(x0 - pad * w), float(y0 - pad * h), float(w * (1 + 2 * pad)), float(h * (1 + 2 * pad)))

    def share_in_box(self, box_xywh, pad: float = 0.0) -> float:
        """Share of the person's labelled points (its hidden guesses when none is labelled) inside a box."""
        m = self.labelled if self.labelled.any() else self.hidden_guess
        return share_inside(self.xy[m], box_xywh, pad) if m.any() else 0.0

    def flipped_lr(self) -> "Person":
        """Same person with left/right labels exchanged (positions stay, names swap)."""
        p = self.copy()
        idx = list(sk.FLIP)
        p.xy, p.vis, p.conf = self.xy[idx].copy(), self.vis[idx].copy(), self.conf[idx].copy()
        p.verified, p.suspicion = self.verified[idx].copy(), self.suspicion[idx].copy()
        p.source = [self.source[i] for i in idx]
        return p

    def to_json(self) -> dict:
        """Plain JSON (used for history entries and snapshots)."""
        return {
            "xy": self.xy.round(3).tolist(), "vis": self.vis.tolist(),
            "conf": [None if np.isnan(c) else round(float(c), 5) for c in self.conf],
            "verified": self.verified.tolist(), "source": list(self.source),
            "score": self.score, "track_id": self.track_id,
        }

    @classmethod
    def from_json(cls, d: dict, id: int | None = None) -> "Person":
        conf = [np.nan if c is None else c for c in d["conf"]]
        return cls(d["xy"], d["vis"], conf, d["verified"], d["source"],
                   score=d.get("score"), track_id=d.get("track_id"), id=id)


def share_inside(xy: np.ndarray, box_xywh, pad: float = 0.0) -> float:
    """Share of the points (N, 2) inside an (x, y, w, h) box grown by `pad` of its size on each side."""
    if not len(xy):
        return 0.0
    x, y, w, h = (float(v) for v in box_xywh[:4])
    return float(np.mean((xy[:, 0] >= x - pad * w) & (xy[:, 0] <= x + (1 + pad) * w)
                         & (xy[:, 1] >= y - pad * h) & (xy[:, 1] <= y + (1 + pad) * h)))


@dataclass
class Frame:
    """One annotatable image: a photo, or one frame of a video.

    file_name is the name used to match against other datasets: the path
    relative to the project for photos, "<video path>#<frame index>" for video
    frames (exported as "<video stem>_<frame:06d>.jpg").
    """
    file_name: str
    width: int
    height: int
    persons: list[Person] = field(default_factory=list)
    id: int | None = None
    video: str | None = None
    frame_index: int | None = None
    status: str = "pending"
    review_state: str = "to_review"
    crowd_regions: list = field(default_factory=list)   # [x, y, w, h] boxes nobody labels person by person


# -- template person ------------------------------------------------------------------------------

# A standing person facing the camera in a unit box (their left is image right).
TEMPLATE_UV = np.array([
    (0.50, 0.08), (0.52, 0.06), (0.54, 0.06), (0.56, 0.06), (0.48, 0.06), (0.46, 0.06), (0.44, 0.06),
    (0.59, 0.07), (0.41, 0.07), (0.53, 0.11), (0.47, 0.11),
    (0.65, 0.20), (0.35, 0.20), (0.72, 0.35), (0.28, 0.35), (0.76, 0.49), (0.24, 0.49),
    (0.77, 0.53), (0.23, 0.53), (0.76, 0.54), (0.24, 0.54), (0.74, 0.52), (0.26, 0.52),
    (0.59, 0.52), (0.41, 0.52), (0.60, 0.73), (0.40, 0.73), (0.60, 0.93), (0.40, 0.93),
    (0.59, 0.96), (0.41, 0.96), (0.63, 0.98), (0.37, 0.98),
])


def template_person(box_xywh, guesses: bool = False) -> Person:
    """A template skeleton stretched into a box; the annotator drags its points into place.

    guesses: every point a hidden guess (not labelled, confidence 0) instead of a visible point, for
    a person the model could not fill: a partly seen person has joints a visible template invents,
    each one more click to remove. On the 21 people of pose-gt-dev the pre-fill misses, boxed and
    filled by the engine (2 it sees nobody in): 159 clicks to the ground truth with guesses, 167
    with visible templates, 192 placing every point by hand (bench/add_person.py)."""
    x, y, w, h = (float(v) for v in box_xywh)
    xy = np.column_stack([x + TEMPLATE_UV[:, 0] * w, y + TEMPLATE_UV[:, 1] * h])
    if guesses:
        return Person(xy, np.full(sk.N, NOT_LABELLED, np.int8), np.zeros(sk.N), source=["template"] * sk.N)
    return Person(xy, np.full(sk.N, VISIBLE, np.int8), source=["template"] * sk.N)
