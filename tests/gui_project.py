"""A small real project for the GUI tests: the demo photos pre-filled by the real model."""
from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_IMAGES = REPO / "projects" / "demo" / "images"
DEMO_VIDEO = REPO / "projects" / "demo" / "video" / "mmpose_demo.mp4"


def make_project(root: Path, video: bool = False, stride: int = 1):
    """Copy the demo photos (and optionally the demo video) into root and pre-fill them (1 worker)."""
    from annotator.prefill import prefill
    from annotator.project import Project
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
