"""The files CVAT produces and accepts for skeletons: "COCO Keypoints 1.0" and "CVAT for images 1.1".

CVAT's COCO Keypoints export (datumaro's coco_person_keypoints writer over a
skeleton task) differs from ours: one category per label, the skeleton's
point sublabels included (with empty keypoints, supercategory = the
skeleton), keypoints named after the sublabels in the server's order,
v = 0 points keeping their coordinates, `attributes` and `segmentation` on
each annotation, frame names as file names. Both directions are checked on
real ground-truth points through the CLI.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from exporters import cvat_label
from annotator.core import skeleton as sk
from annotator.core.project import Project
from exporters.coco import read_coco

from tests.test_cli import run
from tests.test_cvat_xml import gt_frames

pytestmark = pytest.mark.needs_data


def cvat_style_coco(frames, order: list[str]) -> dict:
    """A COCO Keypoints 1.0 file laid out the way CVAT (datumaro) exports a skeleton task."""
    cats = [{"id": 1, "name": "person", "supercategory": "", "keypoints": order,
             "skeleton": [[order.index(sk.NAMES[a]) + 1, order.index(sk.NAMES[b]) + 1] for a, b in sk.EDGES]}]
    for n, name in enumerate(order):              # sublabels become categories without keypoints
        cats.append({"id": n + 2, "name": name, "supercategory": "person", "keypoints": [], "skeleton": []})
    cats.append({"id": len(cats) + 1, "name": "car", "supercategory": "", "keypoints": [], "skeleton": []})
    images, anns = [], []
    for k, f in enumerate(frames, 1):
        images.append({"id": k, "width": f.width, "height": f.height, "file_name": Path(f.file_name).name,
                       "license": 0, "flickr_url": "", "coco_url": "", "date_captured": 0})
        for p in f.persons:
            kps = []
            for name in order:
                i = sk.INDEX[name]
                # CVAT keeps an outside point's last position; v says it is absent
                x, y = (p.xy[i] if p.vis[i] else (17.5, 4.25))
                kps += [float(x), float(y), int(p.vis[i])]
            m = p.labelled
            x0, y0 = p.xy[m].min(0) if m.any() else (0, 0)
            x1, y1 = p.xy[m].max(0) if m.any() else (0, 0)
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": 1, "segmentation": [],
                         "area": float((x1 - x0) * (y1 - y0)), "bbox": [float(x0), float(y0), float(x1 - x0),
                                                                        float(y1 - y0)],
                         "iscrowd": 0, "attributes": {"occluded": False}, "keypoints": kps,
                         "num_keypoints": int(m.sum())})
    anns.append({"id": len(anns) + 1, "image_id": 1, "category_id": len(cats), "segmentation": [[1, 1, 5, 1, 5, 5]],
                 "area": 16.0, "bbox": [1, 1, 4, 4], "iscrowd": 0, "attributes": {}})
    return {"licenses": [{"name": "", "id": 0, "url": ""}], "info": {"contributor": "", "date_created": "",
            "description": "", "url": "", "version": "", "year": ""}, "categories": cats, "images": images,
            "annotations": anns}


def test_reads_cvat_coco_keypoints_export_by_point_name(tmp_path, gt_dev):
    frames = gt_frames(gt_dev, 4)
    order = list(reversed(sk.NAMES))           # a server that lists the sublabels in another order
    path = tmp_path / "person_keypoints_default.json"
    path.write_text(json.dumps(cvat_style_coco(frames, order)))
    kind, back = read_coco(path)
    assert kind == "33"
    assert [f.file_name for f in back] == [Path(f.file_name).name for f in frames]
    for f, g in zip(frames, back):
        assert len(g.persons) == len(f.persons)
        for p, q in zip(f.persons, g.persons):
            assert np.array_equal(p.vis, q.vis)
            assert np.abs(p.xy - q.xy)[p.labelled].max(initial=0) < 1e-6
            assert not q.xy[~p.labelled].any()            # absent points carry no position


def test_cvat_coco_file_imports_into_a_project_by_frame_name(tmp_path, gt_dev):
    frames = gt_frames(gt_dev, 3)
    path = tmp_path / "cvat.json"
    path.write_text(json.dumps(cvat_style_coco(frames, list(sk.NAMES))))
    rc, out, err = run("init", tmp_path / "p", "--images", *[f.meta_path for f in frames])
    assert rc == 0, err
    rc, out, err = run("import", tmp_path / "p", path, "--format", "coco")
    assert rc == 0, err
    assert "3 images matched" in out
    with Project.open(tmp_path / "p") as proj:
        got = {Path(f.file_name).name: f.persons for f in proj.store.iter_frames()}
    for f in frames:
        ps = got[Path(f.file_name).name]
        labelled = [p for p in f.persons if p.labelled.any()]     # annotations without a point are skipped
        assert len(ps) == len(labelled)
        for p in labelled:
            assert any(np.array_equal(p.vis, q.vis) and np.abs(p.xy - q.xy)[p.labelled].max(initial=0) < 0.01
                       for q in ps)


def test_our_coco_export_has_what_cvat_import_needs(tmp_path, gt_dev):
    """CVAT imports COCO Keypoints into a project when the category is the skeleton label's name, its
    keypoints are the sublabel names and its skeleton the label's edges; bbox annotations are dropped."""
    frames = gt_frames(gt_dev, 3)
    rc, out, err = run("init", tmp_path / "p", "--images", *[f.meta_path for f in frames])
    assert rc == 0, err
    xml = tmp_path / "in.xml"
    from exporters.cvat_xml import write_cvat_xml
    write_cvat_xml(frames, xml)
    assert run("import", tmp_path / "p", xml, "--format", "cvat-xml")[0] == 0
    out_json = tmp_path / "coco.json"
    rc, out, err = run("export", tmp_path / "p", "--format", "coco", "--out", out_json)
    assert rc == 0, err
    data = json.loads(out_json.read_text())
    spec = cvat_label.label_spec()
    (cat,) = data["categories"]
    assert cat["name"] == spec["name"] and cat["keypoints"] == [s["name"] for s in spec["sublabels"]]
    nodes, edges = cvat_label.parse_svg(spec["svg"])
    assert {frozenset(e) for e in cat["skeleton"]} == {frozenset(e) for e in edges}      # node ids are 1-based
    for a in data["annotations"]:
        assert len(a["keypoints"]) == 3 * sk.N and a["iscrowd"] == 0 and len(a["bbox"]) == 4
        assert a["num_keypoints"] == sum(1 for v in a["keypoints"][2::3] if v > 0)
    from pycocotools.coco import COCO
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(out_json))
    assert len(coco.getAnnIds()) == sum(p.labelled.any() for f in frames for p in f.persons)   # 0-point ones skipped
    # and it reads back as the same people
    kind, back = read_coco(out_json)
    assert sum(len(f.persons) for f in back) == len(data["annotations"])


def test_cvat_xml_export_then_import_into_another_project(tmp_path, gt_dev):
    frames = gt_frames(gt_dev, 3)
    imgs = [f.meta_path for f in frames]
    for name in ("a", "b"):
        assert run("init", tmp_path / name, "--images", *imgs)[0] == 0
    xml = tmp_path / "in.xml"
    from exporters.cvat_xml import write_cvat_xml
    write_cvat_xml(frames, xml)
    assert run("import", tmp_path / "a", xml, "--format", "cvat-xml", "--as", "predicted")[0] == 0
    out = tmp_path / "a.xml"
    rc, o, err = run("export", tmp_path / "a", "--format", "cvat-xml", "--out", out)
    assert rc == 0, err
    rc, o, err = run("import", tmp_path / "b", out, "--format", "cvat-xml", "--as", "predicted")
    assert rc == 0, err
    assert "3 images matched" in o

    def pts(root):
        with Project.open(root) as proj:
            return {Path(f.file_name).name: [(p.vis.tolist(), np.round(p.xy * p.labelled[:, None], 2).tolist(),
                                              p.source) for p in f.persons] for f in proj.store.iter_frames()}
    assert pts(tmp_path / "a") == pts(tmp_path / "b")
    rc, o, err = run("import", tmp_path / "b", tmp_path / "nope.xml", "--format", "cvat-xml")
    assert rc == 2 and "nope.xml" in err and "Traceback" not in err
