"""CVAT for images 1.1 XML: lossless round trip on real ground truth, CVAT's own layout, clear errors."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from exporters import cvat_label
from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.model import NOT_LABELLED, OCCLUDED, VISIBLE, Frame, Person
from exporters.cvat_xml import read_cvat_xml, to_xml, write_cvat_xml

from tests.conftest import GT_DEV


def gt_frames(gt: dict, n_images: int = 6, source: str = "coco_mini", with_people: bool = True) -> list[Frame]:
    """Frames of real pose-gt-dev photos with their people as 33-point Persons.

    COCO points land on their BlazePose slots (v flags kept: 1 occluded, 2 visible,
    0 not labelled); confidences vary per point (NaN for some, as for points no
    model saw) and provenance says where each point came from.
    """
    rng = np.random.default_rng(7)
    by_image: dict[int, list] = {}
    for a in gt["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    frames = []
    for im in gt["images"]:
        if not im["source"].startswith(source) or (with_people and not by_image.get(im["id"])):
            continue
        f = Frame(im["file_name"], im["width"], im["height"])
        f.meta_path = GT_DEV / "images" / im["file_name"]
        for a in by_image.get(im["id"], []):
            kp = np.asarray(a["keypoints"], dtype=float).reshape(17, 3)
            p = Person(None, None)
            for j, i in enumerate(sk.COCO17_FROM_BP):
                p.vis[i] = int(kp[j, 2])
                if kp[j, 2] > 0:
                    p.xy[i] = kp[j, :2] + rng.uniform(-0.4, 0.4, 2)     # sub-pixel values
            lab = p.vis > 0
            p.conf = np.where(lab, np.round(rng.uniform(0.05, 1.0, sk.N), 2), np.nan)
            p.conf[np.flatnonzero(lab)[:2]] = np.nan
            p.source = ["import:coco" if v else "" for v in p.vis]
            p.source[0] = "annotator:alice" if p.vis[0] else ""
            f.persons.append(p)
        frames.append(f)
        if len(frames) == n_images:
            break
    assert len(frames) == n_images
    return frames


def assert_same_people(a: list[Person], b: list[Person], xy_tol: float = 0.005 + 1e-9) -> None:
    assert len(a) == len(b)
    for p, q in zip(a, b):
        assert np.array_equal(p.vis, q.vis)
        assert np.abs(p.xy - q.xy).max() <= xy_tol
        assert np.array_equal(np.isnan(p.conf), np.isnan(q.conf))
        m = ~np.isnan(p.conf)
        assert np.abs(p.conf[m] - q.conf[m]).max(initial=0) <= 0.005 + 1e-9
        assert p.source == q.source


def test_round_trip_is_lossless_to_two_decimals(tmp_path, gt_dev):
    frames = gt_frames(gt_dev, 8)
    frames.append(Frame("coco_mini/empty.jpg", 320, 240))        # an image with nobody
    out = tmp_path / "annotations.xml"
    write_cvat_xml(frames, out)
    back = read_cvat_xml(out)
    assert [f.file_name for f in back] == [f.file_name for f in frames]
    assert [(f.width, f.height) for f in back] == [(f.width, f.height) for f in frames]
    for f, g in zip(frames, back):
        assert_same_people(f.persons, g.persons)
    assert sum(len(f.persons) for f in back) >= 8
    # and a second pass is byte-for-byte stable apart from the dump time
    again = tmp_path / "again.xml"
    write_cvat_xml(back, again)
    strip = lambda b: [ln for ln in b.splitlines() if b"<dumped>" not in ln]     # noqa: E731
    assert strip(again.read_bytes()) == strip(out.read_bytes())


def test_layout_is_cvats(gt_dev):
    """Element and attribute layout as CVAT's exporter writes it, label meta included."""
    frames = gt_frames(gt_dev, 1)
    root = ET.fromstring(to_xml(frames))
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    labels = root.findall("meta/task/labels/label")
    assert [lab.findtext("name") for lab in labels] == ["person", *sk.NAMES]
    assert labels[0].findtext("type") == "skeleton" and 'data-label-name="left_heel"' in labels[0].findtext("svg")
    assert all(lab.findtext("parent") == "person" and lab.findtext("type") == "points" for lab in labels[1:])
    conf_attr = labels[1].find("attributes/attribute")
    assert conf_attr.findtext("name") == "confidence" and conf_attr.findtext("values") == "-1\n100\n1"
    img = root.find("image")
    assert img.attrib == {"id": "0", "name": frames[0].file_name, "width": str(frames[0].width),
                          "height": str(frames[0].height)}
    skel = img.find("skeleton")
    assert list(skel.attrib) == ["label", "source", "z_order"] and skel.get("label") == "person"
    pts = skel.findall("points")
    assert [p.get("label") for p in pts] == list(sk.NAMES)
    assert list(pts[0].attrib) == ["label", "source", "outside", "occluded", "points"]
    p = frames[0].persons[0]
    for i, el in enumerate(pts):
        assert el.get("outside") == ("1" if p.vis[i] == NOT_LABELLED else "0")
        assert el.get("occluded") == ("1" if p.vis[i] == OCCLUDED else "0")
        x, y = (float(v) for v in el.get("points").split(","))
        assert el.get("points") == f"{x:.2f},{y:.2f}"
        assert [a.get("name") for a in el.findall("attribute")] == ["confidence", "provenance"]


CVAT_EXPORT = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><job><id>7</id><size>2</size><mode>annotation</mode></job><dumped>2025-05-02 10:00:00</dumped></meta>
  <image id="0" name="frame_a.jpg" width="640" height="480">
    <box label="car" source="manual" occluded="0" xtl="1.00" ytl="2.00" xbr="30.00" ybr="40.00" z_order="0">
    </box>
    <skeleton label="person" source="manual" z_order="0">
      <points label="nose" source="manual" outside="0" occluded="0" points="320.50,100.25">
        <attribute name="confidence">87</attribute>
        <attribute name="provenance">annotator:bob</attribute>
      </points>
      <points label="left_wrist" source="manual" outside="0" occluded="1" points="400.00,300.00">
        <attribute name="confidence">-1</attribute>
        <attribute name="provenance"></attribute>
      </points>
      <points label="right_ankle" source="manual" outside="1" occluded="0" points="0.00,0.00">
      </points>
    </skeleton>
  </image>
  <image id="1" name="frame_b.jpg" width="640" height="480">
  </image>
</annotations>
"""


def test_reads_a_cvat_export(tmp_path):
    """CVAT's layout: other shapes ignored, missing points not labelled, attributes optional."""
    f = tmp_path / "job.xml"
    f.write_text(CVAT_EXPORT)
    frames = read_cvat_xml(f)
    assert [x.file_name for x in frames] == ["frame_a.jpg", "frame_b.jpg"] and frames[1].persons == []
    (p,) = frames[0].persons
    nose, wrist, ankle = sk.INDEX["nose"], sk.INDEX["left_wrist"], sk.INDEX["right_ankle"]
    assert p.vis[nose] == VISIBLE and tuple(p.xy[nose]) == (320.5, 100.25)
    assert p.conf[nose] == pytest.approx(0.87) and p.source[nose] == "annotator:bob"
    assert p.vis[wrist] == OCCLUDED and np.isnan(p.conf[wrist])
    assert p.vis[ankle] == NOT_LABELLED
    assert int((p.vis > 0).sum()) == 2


@pytest.mark.parametrize("text, expected", [
    ("<annotations><image id='0' name='a.jpg' width='1' height='1'>", "not valid XML"),
    ("<dataset/>", "not a CVAT XML file"),
    ("<annotations><track id='0' label='person'/></annotations>", "CVAT for images 1.1"),
    ("<annotations><image id='0' name='a.jpg' width='9' height='9'><skeleton label='person'>"
     "<points label='left_wristt' outside='0' occluded='0' points='1,2'/></skeleton></image></annotations>",
     "unknown point name 'left_wristt'"),
    ("<annotations><image id='0' name='a.jpg' width='9' height='9'><skeleton label='person'>"
     "<points label='nose' outside='0' occluded='0' points='1;x'/></skeleton></image></annotations>",
     "bad coordinates"),
    ("<annotations><image id='0' name='a.jpg' width='9' height='9'><skeleton label='person'>"
     "<points label='nose' outside='2' occluded='0' points='1,2'/></skeleton></image></annotations>",
     "outside=\"2\""),
])
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, text, expected):
    f = tmp_path / "broken.xml"
    f.write_text(text)
    with pytest.raises(UserError) as e:
        read_cvat_xml(f)
    msg = str(e.value)
    assert str(f) in msg and expected in msg and "\n" not in msg


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_cvat_xml(tmp_path / "nope.xml")


def test_written_label_matches_the_cvat_label_spec():
    """The meta label is the same label the CVAT projects get (names, attributes, edges)."""
    root = ET.fromstring(to_xml([]))
    labels = root.findall("meta/task/labels/label")
    server_like = {"name": "person", "type": "skeleton", "svg": labels[0].findtext("svg"),
                   "sublabels": [{"name": lab.findtext("name"), "type": lab.findtext("type"),
                                  "attributes": [{"name": a.findtext("name"), "input_type": a.findtext("input_type"),
                                                  "values": (a.findtext("values") or "").split("\n")}
                                                 for a in lab.findall("attributes/attribute")]}
                                 for lab in labels[1:]]}
    assert cvat_label.diff_label(server_like) == []
