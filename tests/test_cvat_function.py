"""Our auto-annotation function inside cvat-sdk's driver, against the CVAT test server.

The pipeline test feeds detect() with ground-truth poses of real photos (an
oracle estimator recognising each image by its pixels), so what lands in
CVAT can be checked point by point; the model test runs the real estimator
(annotator.prefill.blazepose) and is skipped until that module exists.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
import cvat_sdk.auto_annotation as cvataa

import annotator.cvat.function as cvat_function
from exporters import cvat_label
from annotator.core import skeleton as sk
from annotator.cvat.client import connect
from annotator.core.model import OCCLUDED, VISIBLE

from tests.conftest import MEDIA
from tests.cvat_fixtures import conn, server  # noqa: F401 (fixtures)
from tests.cvat_server import CvatTestServer
from tests.test_cvat_xml import gt_frames

HAVE_BLAZEPOSE = importlib.util.find_spec("annotator.prefill.blazepose") is not None


def _pixels_key(rgb: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes()).hexdigest()


class GroundTruthEstimator:
    """Stands in for PoseEstimator: returns the annotated people of a known photo as PersonPose-likes."""

    def __init__(self, frames):
        self.poses = {}
        for f in frames:
            with Image.open(f.meta_path) as im:
                key = _pixels_key(np.asarray(im.convert("RGB")))
            self.poses[key] = [SimpleNamespace(xy=p.xy.copy(), visibility=np.where(p.vis == VISIBLE, 0.95,
                                                                                  np.where(p.vis == OCCLUDED, 0.2, 0.0)),
                                               presence=np.ones(sk.N), score=0.9 - 0.6 * (k % 2))
                               for k, p in enumerate(f.persons)]
        self.calls = 0

    def predict(self, rgb):
        self.calls += 1
        return self.poses[_pixels_key(rgb)]


def test_spec_is_our_label():
    (label,) = cvat_function.spec.labels
    spec = cvat_label.label_spec()
    assert label.name == spec["name"] and label.type == "skeleton"
    assert [s.name for s in label.sublabels] == [s["name"] for s in spec["sublabels"]]
    for fs, ours in zip(label.sublabels, spec["sublabels"]):
        assert [(a.name, a.input_type.value, a.values) for a in fs.attributes] == \
               [(a["name"], a["input_type"], a["values"]) for a in ours["attributes"]]
    assert cvat_function.create().spec is cvat_function.spec
    assert callable(cvat_function.detect)


def test_pre_fills_a_task_through_the_sdk_driver(conn, gt_dev):
    frames = gt_frames(gt_dev, 3)
    project, lmap, _, _ = conn.ensure_project("prefill")
    task = conn.create_task("prefill", [f.meta_path for f in frames], project_id=project["id"], segment_size=2)
    fn = cvat_function.create()
    fn._est = GroundTruthEstimator(frames)
    cvataa.annotate_task(conn.client, task["id"], fn)
    assert fn._est.calls == 3
    shapes = conn.get_task_annotations(task["id"])["shapes"]
    assert len(shapes) == sum(len(f.persons) for f in frames)
    assert all(s["type"] == "skeleton" and s["source"] == "auto" and len(s["elements"]) == 33 for s in shapes)
    by_frame: dict[int, list] = {}
    for s in sorted(shapes, key=lambda s: s["id"]):    # ids follow creation; CVAT's order within a frame does not
        by_frame.setdefault(s["frame"], []).append(cvat_label.shape_to_person(s, lmap))
    for k, f in enumerate(frames):
        got = by_frame[k]
        assert len(got) == len(f.persons)
        for want, p in zip(f.persons, got):
            lab = want.vis > 0
            assert np.allclose(p.xy[lab], want.xy[lab])
            assert np.array_equal(p.vis[want.vis == VISIBLE] == VISIBLE,
                                  np.ones(int((want.vis == VISIBLE).sum()), bool) & _inside(want, f))
            assert (p.vis[want.vis == OCCLUDED] == OCCLUDED).all()
            assert np.allclose(p.conf[want.vis == VISIBLE], 0.95) and np.allclose(p.conf[want.vis == 0], 0.0)
            assert set(p.source) == {fn.provenance} and fn.provenance.startswith("cvat-auto:nanodet+movenet+blazepose-heavy/")
    # a second run with a confidence threshold replaces everything (clear_existing: PUT)
    cvataa.annotate_task(conn.client, task["id"], fn, clear_existing=True, conf_threshold=0.5)
    shapes2 = conn.get_task_annotations(task["id"])["shapes"]
    assert 0 < len(shapes2) < len(shapes)


def _inside(p, f):
    m = p.vis == VISIBLE
    xy = p.xy[m]
    return (xy[:, 0] >= 0) & (xy[:, 0] < f.width) & (xy[:, 1] >= 0) & (xy[:, 1] < f.height)


def test_a_task_without_our_label_is_refused_clearly(conn):
    conn.call("POST", "/api/projects", body={"name": "boxes", "labels": [{"name": "car", "type": "rectangle"}]})
    project = conn.find_project("boxes")
    task = conn.create_task("boxes", [MEDIA / "images" / "ultralytics_bus.jpg"], project_id=project["id"])
    with pytest.raises(cvataa.BadFunctionError, match="label 'person' is not in dataset"):
        cvataa.annotate_task(conn.client, task["id"], cvat_function.create())


REAL_IMAGES = ["ultralytics_bus.jpg", "openpose_COCO_val2014_000000000241.jpg"]


@pytest.mark.skipif(not HAVE_BLAZEPOSE, reason="annotator/blazepose.py (the pose estimator) does not exist yet")
def test_real_model_pre_fills_a_task(conn):
    project, lmap, _, _ = conn.ensure_project("model")
    files = [MEDIA / "images" / n for n in REAL_IMAGES]
    task = conn.create_task("model", files, project_id=project["id"])
    cvataa.annotate_task(conn.client, task["id"], cvat_function)       # the module itself is the function
    shapes = conn.get_task_annotations(task["id"])["shapes"]
    sizes = [Image.open(f).size for f in files]
    for k in range(len(files)):
        people = [cvat_label.shape_to_person(s, lmap) for s in shapes if s["frame"] == k]
        assert people, f"no person found in {REAL_IMAGES[k]}"
        w, h = sizes[k]
        assert max(int((p.vis == VISIBLE).sum()) for p in people) >= 8      # someone is seen well
        for p in people:
            vis = p.vis == VISIBLE
            xy = p.xy[vis]
            assert ((xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)).all()
            assert np.nanmin(p.conf) >= 0 and np.nanmax(p.conf) <= 1


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("cvat_cli") is None or not HAVE_BLAZEPOSE,
                    reason="needs cvat-cli and annotator/blazepose.py")
def test_cvat_cli_runs_the_module(conn, server, tmp_path):
    project, _, _, _ = conn.ensure_project("cli")
    task = conn.create_task("cli", [MEDIA / "images" / REAL_IMAGES[0]], project_id=project["id"])
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg"), XDG_CONFIG_HOME=str(tmp_path / "xdgc"))
    env.pop("CVAT_ACCESS_TOKEN", None)
    r = subprocess.run([sys.executable, "-m", "cvat_cli", "--server-host", server.url, "--auth", "alice:alice-pw",
                        "task", "auto-annotate", str(task["id"]), "--function-module", "annotator.cvat.function"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert conn.get_task_annotations(task["id"])["shapes"]


@pytest.mark.skipif(not HAVE_BLAZEPOSE, reason="annotator/blazepose.py (the pose estimator) does not exist yet")
def test_module_main_pre_fills_on_an_old_server(tmp_path):
    """`python -m annotator.cvat.function TASK` works where cvat-cli 2.80's version check crashes (CVAT 2.23)."""
    with CvatTestServer(version="2.23.0") as old:
        old.add_user("alice", "alice-pw")
        c = connect(old.url, "alice", "alice-pw", env={}, cache_dir=tmp_path / "cache")
        project, _, _, _ = c.ensure_project("old")
        task = c.create_task("old", [MEDIA / "images" / REAL_IMAGES[1]], project_id=project["id"])
        env = dict(os.environ, CVAT_URL=old.url, CVAT_USER="alice", CVAT_PASSWORD="alice-pw",
                   XDG_CACHE_HOME=str(tmp_path / "xdg"))
        env.pop("CVAT_ACCESS_TOKEN", None)
        cmd = [sys.executable, "-m", "annotator.cvat.function", str(task["id"])]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        assert len(c.get_task_annotations(task["id"])["shapes"]) >= 1
        old.stop()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=300)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"error: cannot reach CVAT at {old.url}: connection refused "
                                             f"(is the server running?)"]
