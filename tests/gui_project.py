"""A small real project for the GUI tests: the demo photos pre-filled by the real model."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_IMAGES = REPO / "projects" / "demo" / "images"
DEMO_VIDEO = REPO / "projects" / "demo" / "video" / "mmpose_demo.mp4"


def make_project(root: Path, video: bool = False, stride: int = 1):
    """Copy the demo photos (and optionally the demo video) into root and pre-fill them (1 worker)."""
    from annotator.prefill.run import prefill
    from annotator.core.project import Project
    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    for f in sorted(DEMO_IMAGES.iterdir()):
        shutil.copy(f, media / f.name)
    sources = [media]
    if video:
        shutil.copy(DEMO_VIDEO, media / DEMO_VIDEO.name)
    proj, _ = Project.create(root / "proj", sources, stride=stride)
    prefill(proj, workers=1, progress=False)
    return proj


def die_with_parent() -> None:
    """In the Xvfb child: get SIGTERM when the Python process dies (no stray X servers after a crash)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)       # PR_SET_PDEATHSIG
    except OSError:
        pass


def start_xvfb(width: int, height: int) -> tuple[subprocess.Popen, str] | None:
    """A private Xvfb server on the first free display number from :90 up: (process, ":n"), None if none started.
    Used by tests/test_gui.py and bench/gui.py."""
    for n in range(90, 140):
        if os.path.exists(f"/tmp/.X{n}-lock") or os.path.exists(f"/tmp/.X11-unix/X{n}"):
            continue
        proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
        for _ in range(100):
            if os.path.exists(f"/tmp/.X11-unix/X{n}") or proc.poll() is not None:
                break
            time.sleep(0.05)
        if proc.poll() is None:
            return proc, f":{n}"
    return None
