"""Finding and decoding images and video frames.

Photos are decoded with PIL so EXIF orientation is applied (the pixels the
annotator sees are the pixels the points refer to); videos are decoded
lazily, one frame on demand, with OpenCV. Every failure becomes a one-line
reason that names the file.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import stat
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from annotator.core.errors import UserError

# FFmpeg's own complaints ("moov atom not found") go straight to the terminal, beside our one line
# that names the file; quiet unless the user asks for them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXT = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
# Pillow's own "decompression bomb" threshold (twice the size it warns about, ~179 MP): a header
# that claims more is refused before any pixel is decoded.
MAX_PIXELS = 2 * (Image.MAX_IMAGE_PIXELS or 89478485)
MAX_IMAGE_BYTES = 1 << 30       # a photo file larger than this is not read into memory
MAX_VIDEO_FRAMES = 5_000_000    # ~46 hours at 30 fps
_SIZE_LOCK = threading.Lock()

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a device"),
          (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


def open_regular(path: Path | str, what: str = "file"):
    """A binary file object of a regular file; a FIFO, device or folder is refused (never blocks:
    opening a FIFO waits for a writer, reading /dev/zero never ends)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read {what} ({e.strerror or e})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "a special file")
            raise UserError(f"{path}: is {kind}, not a regular file; cannot read {what}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Path | str, what: str = "file", limit: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, or a one-line UserError."""
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise UserError(f"{path}: {what} is too large ({size:,} bytes; at most {limit:,} are read)")
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise UserError(f"{path}: cannot read {what} ({e.strerror or e})") from None
    if len(data) > limit:
        raise UserError(f"{path}: {what} is too large (more than {limit:,} bytes)")
    return data


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
            if not p.is_file():         # a FIFO or a device named .jpg: reading it would never end
                open_regular(p, "image or video").close()    # raises, naming what it is
            out.append(p)
        else:
            raise UserError(f"{p}: not an image or video file (by extension)")
    return out


def sha1_file(path: Path) -> str:
    h = hashlib.sha1()
    with open_regular(path) as f:
        try:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        except OSError as e:
            raise UserError(f"{path}: cannot read file ({e.strerror or e})") from None
    return h.hexdigest()


# What Pillow may open from bytes nobody vouched for (a web upload): the photo formats, nothing
# that runs a helper program (EPS) or that no camera writes.
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")     # JPEG covers MPO (phones' multi-picture JPEGs)


class TooManyPixels(UserError):
    """The header says more pixels than we decode (a decompression bomb, or simply too big)."""


def _too_large(path, fp) -> UserError:
    """The size a bomb's header claims, read with Pillow's limit lifted for that one header."""
    try:
        with _SIZE_LOCK:
            old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                fp.seek(0)
                with Image.open(fp) as im:
                    w, h = im.size
            finally:
                Image.MAX_IMAGE_PIXELS = old
        return TooManyPixels(f"{path}: image too large: {w} x {h} ({w * h:,} pixels; at most {MAX_PIXELS:,})")
    except Exception:                   # noqa: BLE001 - the size is only for the message
        return TooManyPixels(f"{path}: image too large (more than {MAX_PIXELS:,} pixels)")


def image_header(path: Path | bytes, name: str | None = None,
                 formats: tuple[str, ...] | None = None) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) with the orientation already applied to the size.

    path may be the file's bytes (then `name` names it in errors); `formats` limits what Pillow tries.
    Reads the header only, so a size check can come before any pixel is decoded; a file must be a
    regular one (a FIFO or a device is refused, not read).
    """
    data = isinstance(path, (bytes, bytearray, memoryview))
    name = name or ("upload" if data else str(path))
    ctx = contextlib.nullcontext(io.BytesIO(path)) if data else open_regular(path, "image")
    with ctx as fp:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(fp, formats=formats) as im:
                    w, h = im.size
                    try:
                        orient = int(im.getexif().get(0x0112, 1) or 1)
                    except Exception:
                        orient = 1
        except UnidentifiedImageError as e:
            if formats:
                raise UserError(f"{name}: cannot read image (not an image file: expected "
                                f"{', '.join(formats)})") from None
            raise UserError(f"{name}: cannot read image ({_reason(e)})") from None
        except Image.DecompressionBombError:
            raise _too_large(name, fp) from None
        except Exception as e:  # noqa: BLE001 - a damaged header trips many kinds of error in Pillow
            raise UserError(f"{name}: cannot read image ({_reason(e)})") from None
    if w * h > MAX_PIXELS:
        raise TooManyPixels(f"{name}: image too large: {w} x {h} ({w * h:,} pixels; at most {MAX_PIXELS:,})")
    if orient in (5, 6, 7, 8):
        w, h = h, w
    return w, h, orient


def _reason(e: Exception) -> str:
    """A human reason: Pillow's "cannot identify image file <_io.BytesIO object at 0x...>" is not one."""
    if isinstance(e, UnidentifiedImageError):
        return "not an image format Pillow knows, or its header is damaged"
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
    if not os.path.lexists(path):
        raise UserError(f"{path}: file is missing")
    return decode_image(read_regular(path, "image"), str(path))


def decode_image(data: bytes, name: str) -> np.ndarray:
    """load_image on bytes already read (a file's, or a web upload's); `name` is what errors name."""
    if data[:3] == b"\xff\xd8\xff" and data.rstrip(b"\0")[-2:] == b"\xff\xd9":
        rgb = _decode_jpeg(data)
        if rgb is not None:
            return rgb
    fp = io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fp) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise TooManyPixels(f"{name}: image too large: {im.width} x {im.height} "
                                    f"({im.width * im.height:,} pixels; at most {MAX_PIXELS:,})")
                im.load()
                im = ImageOps.exif_transpose(im)
                return np.asarray(im.convert("RGB"))
    except UserError:
        raise
    except Image.DecompressionBombError:
        raise _too_large(name, fp) from None
    except MemoryError:
        raise UserError(f"{name}: cannot decode image (not enough memory)") from None
    except Exception as e:      # noqa: BLE001 - a damaged file trips many kinds of error in Pillow's decoders
        raise UserError(f"{name}: cannot decode image ({_reason(e)})") from None


def _decode_jpeg(data: bytes) -> np.ndarray | None:
    """OpenCV's decode of a whole JPEG (None: let Pillow decide, e.g. beyond Pillow's pixel limit)."""
    import cv2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:         # header only: keep Pillow's size limit
                w, h = im.size
    except Exception:           # noqa: BLE001 - Pillow's decode below says what is wrong
        return None
    if w * h > (Image.MAX_IMAGE_PIXELS or MAX_PIXELS):
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
        vals = [cap.get(k) for k in (cv2.CAP_PROP_FRAME_COUNT, cv2.CAP_PROP_FPS, cv2.CAP_PROP_FRAME_WIDTH,
                                     cv2.CAP_PROP_FRAME_HEIGHT)]
        n, fps, w, h = [float(v) if v is not None and math.isfinite(v) else 0.0 for v in vals]
        ok, _ = cap.read()
        if not ok or n <= 0:
            raise UserError(f"{path}: video has no decodable frames")
        if n > MAX_VIDEO_FRAMES or w * h > MAX_PIXELS:     # a damaged header would make millions of rows
            raise UserError(f"{path}: video header claims {n:.0f} frames of {w:.0f} x {h:.0f}; not believed")
        n, w, h = int(n), int(w), int(h)
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


def flat_name(file_name: str, limit: int = 200) -> str:
    """A file name for the image in an output folder (render, YOLO): the export name with "/" flattened,
    control characters replaced; a name longer than `limit` bytes is cut and made unique by a hash."""
    name = "".join("_" if ord(ch) < 32 or ch == "\x7f" else ch for ch in export_name(file_name).replace("/", "__"))
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= limit:
        return name
    stem, suffix = os.path.splitext(name)
    digest = hashlib.sha1(raw).hexdigest()[:12]
    keep = stem.encode("utf-8", "surrogateescape")[:limit - len(suffix.encode("utf-8", "surrogateescape")) - 13]
    return keep.decode("utf-8", "ignore") + "-" + digest + suffix


def export_name(file_name: str) -> str:
    """Name of an image in exported datasets: video frames become <stem>_<frame>.jpg."""
    if "#" in file_name:
        video, idx = file_name.rsplit("#", 1)
        return f"{Path(video).stem}_{idx}.jpg"
    return file_name
