"""The pose check behind the web page: an uploaded photo -> every person's 33 points, angles, a drawing.

Uploads are bytes in memory, never a file: the header is read first (format and size, no pixels), so
a file that is not a photo or that would decode to too many pixels is refused before any decoding;
then the same decoder as pre-fill (core.media) and the same estimator (prefill.estimator), so the
page gives the points `pose-annotator prefill` would store for that photo.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from annotator.core import media, render
from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.model import VIS_NAMES, Frame, Person


@dataclass(frozen=True)
class Limits:
    """What one upload may be: bytes on the wire, pixels once decoded (a 40 MP photo is ~120 MB of RGB)."""
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000


class BadUpload(UserError):
    """An upload refused, with the HTTP status to answer (400: not a readable photo, 413: too large)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def read_upload(data: bytes, name: str, limits: Limits) -> np.ndarray:
    """The upload's RGB pixels, or BadUpload with one line that names the file and the problem."""
    if not data:
        raise BadUpload(f"{name}: empty upload (choose a photo)")
    if len(data) > limits.max_bytes:
        raise BadUpload(f"{name}: {len(data) / 2**20:.1f} MB is over the {limits.max_bytes / 2**20:.0f} MB"
                        " upload limit", 413)
    try:
        w, h, _ = media.image_header(data, name, formats=media.UPLOAD_FORMATS)
    except media.TooManyPixels as e:
        raise BadUpload(str(e), 413) from None
    except UserError as e:
        raise BadUpload(str(e)) from None
    if w * h > limits.max_pixels:
        raise BadUpload(f"{name}: {w}x{h} is {w * h / 1e6:.0f} megapixels, over the"
                        f" {limits.max_pixels / 1e6:.0f} megapixel limit", 413)
    try:
        return media.decode_image(data, name)
    except UserError as e:
        raise BadUpload(str(e)) from None


class PoseService:
    """The project's estimator (or the default one), loaded once on a background thread at start.

    `ready` says when it can answer (GET /healthz); requests before that get a clear 503. The
    estimator is built by prefill.estimator.make_estimator from the same settings as pre-fill, so
    whichever engine pre-fill runs, this runs too. One lock: an estimator runs one image at a time.
    """

    def __init__(self, est_kwargs: dict, landmark_model: str | None = None, model_name: str | None = None):
        self.kwargs = est_kwargs
        self.landmark_model = landmark_model
        self.model_name = model_name
        self.error: str | None = None
        self.load_seconds: float | None = None
        self._est = None
        self._lock = threading.Lock()
        self._loaded = threading.Event()

    def start(self) -> "PoseService":
        threading.Thread(target=self._load, name="load-model", daemon=True).start()
        return self

    def _load(self) -> None:
        t0 = time.perf_counter()
        try:
            from annotator.prefill.estimator import default_model_name, make_estimator
            self._est = make_estimator(self.kwargs, self.landmark_model)
            self._est.predict(np.zeros((256, 256, 3), np.uint8))    # the first run sets up the runtime: not on a user
            self.model_name = self.model_name or default_model_name(self.kwargs)
        except Exception as e:      # noqa: BLE001 - shown by /healthz and every request, the server stays up
            self.error = f"the pose model did not load: {e}"
        self.load_seconds = time.perf_counter() - t0
        self._loaded.set()

    @property
    def ready(self) -> bool:
        return self._loaded.is_set() and self.error is None

    def wait(self, timeout: float | None = None) -> bool:
        self._loaded.wait(timeout)
        return self.ready

    def check_ready(self) -> None:
        """BadUpload 503 until the model has loaded (or with the reason it did not)."""
        if not self.ready:
            raise BadUpload(self.error or "the pose model is still loading; try again in a few seconds", 503)

    def predict(self, rgb: np.ndarray) -> list[Person]:
        self.check_ready()
        from annotator.prefill.estimator import to_person
        with self._lock:
            poses = self._est.predict(rgb)
        return [to_person(p, rgb.shape[1], rgb.shape[0]) for p in poses]


def angles_of(p: Person) -> tuple[dict[str, float | None], list[str]]:
    """The joint angles of the app's panel and the ones outside their plausible range."""
    a = sk.joint_angles(p.xy, p.vis)
    return a, sk.implausible_angles(a)


def people_json(persons: list[Person]) -> list[dict]:
    """Per person: the 33 points in pixels with visibility (the pre-fill's visible / occluded / not labelled: a point the model does not see) and
    confidence (visibility x presence, what pre-fill stores), and the joint angles."""
    out = []
    for p in persons:
        angles, bad = angles_of(p)
        out.append({
            "score": None if p.score is None else round(float(p.score), 4),
            "points": [{"name": sk.NAMES[i], "x": round(float(p.xy[i, 0]), 2), "y": round(float(p.xy[i, 1]), 2),
                        "visibility": VIS_NAMES[int(p.vis[i])],
                        "confidence": None if np.isnan(p.conf[i]) else round(float(p.conf[i]), 4)}
                       for i in range(sk.N)],
            "angles": {k: None if v is None else round(v, 1) for k, v in angles.items()},
            "implausible": bad,
        })
    return out


def scaled(persons: list[Person], s: float) -> list[Person]:
    out = []
    for p in persons:
        q = p.copy()
        q.xy = p.xy * s
        out.append(q)
    return out


def drawing(rgb: np.ndarray, persons: list[Person], max_side: int = 1600, angles: bool = True,
            suspects: set[tuple[int, int]] = frozenset(), quality: int = 88) -> bytes:
    """JPEG of the photo (at most max_side pixels a side) with skeletons colored by region as in the
    app, and the joint angles (outside their range in red) or the suspect points marked."""
    import cv2
    h, w = rgb.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        persons = scaled(persons, s)
    r = max(3.0, min(rgb.shape[:2]) / 160)      # a little bolder than `render`'s files: seen on a screen
    img = render.draw(rgb, Frame("", rgb.shape[1], rgb.shape[0], persons), radius=r, suspects=suspects)
    if angles:
        render.draw_angles(img, persons, radius=r)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise UserError("could not encode the drawing as JPEG")
    return buf.tobytes()
