"""Shared fixtures: real data paths, small projects built from real photos."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
GT_DEV = DATA / "pose-gt-dev"
MEDIA = DATA / "media"


def pytest_collection_modifyitems(config, items):
    if not DATA.exists():
        skip = pytest.mark.skip(reason=f"shared data not found at {DATA}")
        for it in items:
            if "needs_data" in it.keywords:
                it.add_marker(skip)


@pytest.fixture(scope="session")
def gt_dev() -> dict:
    return json.loads((GT_DEV / "annotations.json").read_text())


def gt_images(gt: dict, source_prefix: str = "coco_mini", n_people: int | None = 1, limit: int = 4) -> list[dict]:
    """Clear photos from pose-gt-dev: by source, exact person count, no hard tags."""
    out = []
    for im in gt["images"]:
        t = im["tags"]
        if not im["source"].startswith(source_prefix):
            continue
        if n_people is not None and t["persons_with_kps"] != n_people:
            continue
        if t["occluded_or_truncated"] or t["small_person"] or t["low_light"] or t["non_upright"]:
            continue
        out.append(im)
    return out[:limit]


@pytest.fixture
def rng():
    return np.random.default_rng(0)
