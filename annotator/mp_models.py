"""Where the MediaPipe Pose model files are: inside the installed mediapipe wheel.

The multi-person engine runs the wheel's own .tflite files with LiteRT, so it
must find them without importing mediapipe (slow, and not needed there) and
must never download anything: mediapipe fetches the lite/heavy landmark
models from the internet on first use, which this project does not allow.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .errors import UserError

DETECTOR = "modules/pose_detection/pose_detection.tflite"
LANDMARK = {0: "modules/pose_landmark/pose_landmark_lite.tflite",
            1: "modules/pose_landmark/pose_landmark_full.tflite",
            2: "modules/pose_landmark/pose_landmark_heavy.tflite"}
VARIANT = {0: "lite", 1: "full", 2: "heavy"}


@lru_cache(maxsize=1)
def mediapipe_dir() -> Path:
    """The installed mediapipe package folder (found without importing it)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("mediapipe is not installed: pip install mediapipe==0.10.21")
    return Path(next(iter(spec.submodule_search_locations)))


def mediapipe_version() -> str:
    try:
        return version("mediapipe")
    except PackageNotFoundError:
        raise UserError("mediapipe is not installed: pip install mediapipe==0.10.21") from None


def check_complexity(model_complexity: int) -> None:
    """Only the full model (complexity 1) ships in the wheel; say so instead of letting mediapipe download."""
    if model_complexity not in LANDMARK:
        raise UserError(f"model_complexity={model_complexity!r}: must be 0, 1 or 2 (only 1 is available here)")
    if model_complexity != 1 and not (mediapipe_dir() / LANDMARK[model_complexity]).is_file():
        raise UserError(
            f"model_complexity={model_complexity} ({VARIANT[model_complexity]}) is not available: the mediapipe "
            f"wheel ships only the full landmark model (complexity 1); mediapipe would download "
            f"{Path(LANDMARK[model_complexity]).name} at run time, which is not allowed here. "
            f"Use model_complexity=1.")


def detector_path() -> Path:
    return _existing(DETECTOR)


def landmark_path(model_complexity: int = 1) -> Path:
    check_complexity(model_complexity)
    return _existing(LANDMARK[model_complexity])


def _existing(rel: str) -> Path:
    p = mediapipe_dir() / rel
    if not p.is_file():
        raise UserError(f"{p}: model file missing from the mediapipe {mediapipe_version()} install")
    return p
