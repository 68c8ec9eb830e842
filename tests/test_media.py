"""Image decoding: OpenCV for whole JPEGs, Pillow for the rest, the same pixels either way."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from annotator.core.errors import UserError
from annotator.core.media import load_image

from tests.conftest import GT_DEV, MEDIA


def pillow_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def test_jpegs_decode_to_pillows_pixels_exif_rotation_included(tmp_path):
    files = sorted((GT_DEV / "images").rglob("*.jpg"))[:12] + sorted((MEDIA / "images").rglob("*.jpg"))[:3]
    assert len(files) >= 12
    for f in files:
        np.testing.assert_array_equal(load_image(f), pillow_rgb(f.read_bytes()))
    im = Image.open(files[0]).convert("RGB")
    for orientation in (3, 6, 8):
        ex = Image.Exif()
        ex[0x0112] = orientation
        buf = io.BytesIO()
        im.save(buf, "JPEG", exif=ex.tobytes(), quality=95)
        p = tmp_path / f"rot{orientation}.jpg"
        p.write_bytes(buf.getvalue())
        got = load_image(p)
        w, h = im.size
        assert got.shape[:2] == ((h, w) if orientation == 3 else (w, h))      # 6 and 8 turn it a quarter
        np.testing.assert_array_equal(got, pillow_rgb(p.read_bytes()))


def test_truncated_jpeg_is_an_error_and_trailing_bytes_are_not(tmp_path):
    f = sorted((GT_DEV / "images").rglob("*.jpg"))[0]
    data = f.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: int(len(data) * 0.9)])         # most of the picture is there: still broken
    with pytest.raises(UserError, match="cut.jpg: cannot decode image"):
        load_image(cut)
    tail = tmp_path / "tail.jpg"
    tail.write_bytes(data + b"camera maker notes")
    np.testing.assert_array_equal(load_image(tail), pillow_rgb(data))
    with pytest.raises(UserError, match="gone.jpg: file is missing"):
        load_image(tmp_path / "gone.jpg")
