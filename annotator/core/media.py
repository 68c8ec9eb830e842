"""Finding and decoding images and video frames.

Photos are decoded with PIL so EXIF orientation is applied (the pixels the
annotator sees are the pixels the points refer to); videos are decoded
lazily, one frame on demand, with OpenCV. Every failure becomes a one-line
reason that names the file.
"""
from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from annotator.core.errors import UserError

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXT = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


def kind_of(path: Path) -> str | None:
    ext = path.suffix.lower()
    return "image" if ext in IMAGE_EXT else "video" if ext in VIDEO_EXT else None


def expand(paths: list[str | Path]) -> list[Path]:
    """Folders (recursively), image and video files; raises on a missing path."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise UserError(f"{p}: no such file or folder")
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and kind_of(f))
            if not found:
                raise UserError(f"{p}: folder has no images or videos")
            out.extend(found)
        elif kind_of(p):
            out.append(p)
        else:
            raise UserError(f"{p}: not an image or video file (by extension)")
    return out


def sha1_file(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# What Pillow may open from bytes nobody vouched for (a web upload): the photo formats, nothing
# that runs a helper program (EPS) or that no camera writes.
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")     # JPEG covers MPO (phones' multi-picture JPEGs)


class TooManyPixels(UserError):
    """The header says more pixels than Pillow will decode (its decompression-bomb limit)."""


def image_header(path: Path | bytes, name: str | None = None,
                 formats: tuple[str, ...] | None = None) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) with the orientation already applied to the size.

    path may be the file's bytes (then `name` names it in errors); `formats` limits what Pillow tries.
    Reads the header only, so a size check can come before any pixel is decoded.
    """
    name = name or str(path)
    try:
        src = io.BytesIO(path) if isinstance(path, (bytes, bytearray, memoryview)) else path
        with Image.open(src, formats=formats) as im:
            w, h = im.size
            try:
                orient = int(im.getexif().get(0x0112, 1) or 1)
            except Exception:
                orient = 1
    except UnidentifiedImageError:
        kinds = ", ".join(formats) if formats else "a format Pillow knows"
        raise UserError(f"{name}: cannot read image (not an image file: expected {kinds})") from None
    except Image.DecompressionBombError as e:
        raise TooManyPixels(f"{name}: cannot read image ({_reason(e)})") from None
    except OSError as e:
        raise UserError(f"{name}: cannot read image ({_reason(e)})") from None
    if orient in (5, 6, 7, 8):
        w, h = h, w
    return w, h, orient


def _reason(e: Exception) -> str:
    s = str(e) or type(e).__name__
    return s.split("\n")[0][:200]


def load_image(path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3) with EXIF orientation applied; UserError if corrupt or truncated.

    A complete JPEG (ends with its EOI marker) is decoded by OpenCV straight into
    an array: the same pixels as Pillow on every JPEG of ../shared/data, EXIF
    rotation included, ~1.1 ms a photo less here (Pillow copies the image twice on
    the way to numpy). Everything else, and anything OpenCV refuses, goes
    through Pillow, whose errors name the problem.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file is missing") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read image ({_reason(e)})") from None
    return decode_image(data, str(path))


def decode_image(data: bytes, name: str) -> np.ndarray:
    """load_image on bytes already read (a file's, or a web upload's); `name` is what errors name."""
    if data[:3] == b"\xff\xd8\xff" and data.rstrip(b"\0")[-2:] == b"\xff\xd9":
        rgb = _decode_jpeg(data)
        if rgb is not None:
            return rgb
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                im = ImageOps.exif_transpose(im)
                return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as e:
        raise UserError(f"{name}: cannot decode image ({_reason(e)})") from None


def _decode_jpeg(data: bytes) -> np.ndarray | None:
    """OpenCV's decode of a whole JPEG (None: let Pillow decide, e.g. beyond Pillow's pixel limit)."""
    import cv2
    try:
        with Image.open(io.BytesIO(data)) as im:         # header only: keep Pillow's size limit
            w, h = im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None
    if Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS:
        return None
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)    # applies EXIF orientation
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def video_info(path: Path) -> tuple[int, float, int, int]:
    """(frame count, fps, width, height)."""
    import cv2
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise UserError(f"{path}: cannot open video")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        ok, _ = cap.read()
        if not ok or n <= 0:
            raise UserError(f"{path}: video has no decodable frames")
        return n, fps, w, h
    finally:
        cap.release()


class VideoReader:
    """Sequential-friendly random access to video frames (keeps the capture open)."""

    def __init__(self, path: Path):
        import cv2
        self.cv2 = cv2
        self.path = path
        self.cap = cv2.VideoCapture(str(path))
        if not self.cap.isOpened():
            raise UserError(f"{path}: cannot open video")
        self.next_index = 0

    def read(self, index: int) -> np.ndarray:
        cv2 = self.cv2
        if index != self.next_index:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = self.cap.read()
        if not ok:
            raise UserError(f"{self.path}: cannot decode frame {index}")
        self.next_index = index + 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self.cap.release()


def frame_file_name(video_rel: str, index: int) -> str:
    return f"{video_rel}#{index:06d}"


def export_name(file_name: str) -> str:
    """Name of an image in exported datasets: video frames become <stem>_<frame>.jpg."""
    if "#" in file_name:
        video, idx = file_name.rsplit("#", 1)
        return f"{Path(video).stem}_{idx}.jpg"
    return file_name
