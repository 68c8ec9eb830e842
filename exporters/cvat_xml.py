"""CVAT's "CVAT for images 1.1" XML (import format name "CVAT 1.1") with skeletons.

Each person is a `<skeleton label="person">` holding one `<points>` element
per BlazePose point with CVAT's outside/occluded flags (not labelled ->
outside="1", occluded -> occluded="1") and coordinates written to 2 decimals
as CVAT does; per-point `confidence` (integer percent, -1 = none) and
`provenance` travel as `<attribute>` children, matching the label in
exporters.cvat_label, so a file written here imports into a CVAT task with
that label and a file CVAT exports reads back here. `verified` has no place
in CVAT's model and is not written.
"""
from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np

from exporters import cvat_label
from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.media import export_name, read_regular
from annotator.core.model import MAX_COORD, NOT_LABELLED, OCCLUDED, VISIBLE, Frame, Person

VERSION = "1.1"


def _f2(v: float) -> str:
    v = float(v)
    return "%.2f" % (v if math.isfinite(v) else 0.0)


def _meta(frames: list[Frame], task_name: str) -> ET.Element:
    meta = ET.Element("meta")
    task = ET.SubElement(meta, "task")
    ET.SubElement(task, "name").text = task_name
    ET.SubElement(task, "size").text = str(len(frames))
    ET.SubElement(task, "mode").text = "annotation"
    labels = ET.SubElement(task, "labels")
    spec = cvat_label.label_spec()

    def add_label(name, color, ltype, attrs, parent=None, svg=None):
        lab = ET.SubElement(labels, "label")
        ET.SubElement(lab, "name").text = name
        ET.SubElement(lab, "color").text = color
        ET.SubElement(lab, "type").text = ltype
        attrs_el = ET.SubElement(lab, "attributes")
        for a in attrs:
            at = ET.SubElement(attrs_el, "attribute")
            ET.SubElement(at, "name").text = a["name"]
            ET.SubElement(at, "mutable").text = str(bool(a["mutable"]))
            ET.SubElement(at, "input_type").text = a["input_type"]
            ET.SubElement(at, "default_value").text = a["default_value"]
            ET.SubElement(at, "values").text = "\n".join(a["values"])
        if parent:
            ET.SubElement(lab, "parent").text = parent
        if svg is not None:
            ET.SubElement(lab, "svg").text = svg

    add_label(spec["name"], spec["color"], "skeleton", spec["attributes"], svg=spec["svg"])
    for s in spec["sublabels"]:
        add_label(s["name"], s["color"], "points", s["attributes"], parent=spec["name"])
    ET.SubElement(meta, "dumped").text = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")
    return meta


def _skeleton(p: Person) -> ET.Element:
    source = "manual" if p.verified.any() else "auto"
    el = ET.Element("skeleton", {"label": cvat_label.LABEL_NAME, "source": source, "z_order": "0"})
    for i, name in enumerate(sk.NAMES):
        v = int(p.vis[i])
        pt = ET.SubElement(el, "points", {
            "label": name, "source": source, "outside": "1" if v == NOT_LABELLED else "0",
            "occluded": "1" if v == OCCLUDED else "0",
            "points": f"{_f2(p.xy[i, 0])},{_f2(p.xy[i, 1])}"})
        ET.SubElement(pt, "attribute", {"name": cvat_label.ATTR_CONFIDENCE}).text = cvat_label.conf_value(p.conf[i])
        ET.SubElement(pt, "attribute", {"name": cvat_label.ATTR_PROVENANCE}).text = p.source[i] or ""
    return el


def to_xml(frames: Iterable[Frame], task_name: str = "pose-annotator") -> bytes:
    """The whole document (image ids are frame numbers in the given order)."""
    frames = list(frames)
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = VERSION
    root.append(_meta(frames, task_name))
    for k, f in enumerate(frames):
        img = ET.SubElement(root, "image", {"id": str(k), "name": export_name(f.file_name),
                                            "width": str(int(f.width)), "height": str(int(f.height))})
        for p in f.persons:
            img.append(_skeleton(p))
    ET.indent(root, "  ")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"


def write_cvat_xml(frames: Iterable[Frame], out: str | os.PathLike, task_name: str = "pose-annotator") -> None:
    """Atomic write: a crash never leaves a half-written file."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = to_xml(frames, task_name)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)


def _flag(path, where: str, el: ET.Element, key: str) -> bool:
    v = el.get(key, "0")
    if v not in ("0", "1", "true", "false", "True", "False"):
        raise UserError(f"{path}: {where}: {key}=\"{v}\" is not 0 or 1")
    return v in ("1", "true", "True")


def _read_person(path, where: str, sk_el: ET.Element) -> Person:
    p = Person(None, None)
    seen = set()
    for pt in sk_el:
        if pt.tag == "attribute":
            continue
        if pt.tag != "points":
            raise UserError(f"{path}: {where}: unexpected <{pt.tag}> inside a skeleton (expected <points>)")
        name = pt.get("label")
        if name not in sk.INDEX:
            raise UserError(f"{path}: {where}: unknown point name '{name}' (expected the 33 BlazePose names, "
                            f"e.g. 'left_wrist')")
        if name in seen:
            raise UserError(f"{path}: {where}: point '{name}' appears twice")
        seen.add(name)
        i = sk.INDEX[name]
        outside = _flag(path, where, pt, "outside")
        occluded = _flag(path, where, pt, "occluded")
        try:
            xs = pt.get("points", "").split(";")[0].split(",")
            x, y = float(xs[0]), float(xs[1])
            if not (math.isfinite(x) and math.isfinite(y) and abs(x) <= MAX_COORD and abs(y) <= MAX_COORD):
                raise ValueError
        except (ValueError, IndexError):
            if not outside:         # a point CVAT marks outside carries no position worth reading
                raise UserError(f"{path}: {where}: point '{name}' has bad coordinates \"{pt.get('points')!s:.60}\""
                                f" (expected two finite numbers of pixels, at most {MAX_COORD:g})") from None
            x = y = 0.0
        p.xy[i] = (x, y)
        p.vis[i] = NOT_LABELLED if outside else (OCCLUDED if occluded else VISIBLE)
        for at in pt.findall("attribute"):
            key, text = at.get("name"), (at.text or "").strip()
            if key == cvat_label.ATTR_CONFIDENCE and text:
                try:
                    c = float(text)
                    if not (c == -1 or 0 <= c <= 100):
                        raise ValueError
                except ValueError:
                    raise UserError(f"{path}: {where}: point '{name}' has confidence \"{text:.40}\", "
                                    f"not a percentage 0-100 (or -1 for none)") from None
                p.conf[i] = np.nan if c < 0 else c / 100.0
            elif key == cvat_label.ATTR_PROVENANCE:
                p.source[i] = at.text or ""
    return p


def read_cvat_xml(path: str | os.PathLike, label: str = cvat_label.LABEL_NAME) -> list[Frame]:
    """Frames with their people (skeletons with `label`) from a CVAT for images 1.1 file."""
    path = Path(path)
    raw = read_regular(path, "CVAT XML file", limit=2 << 30)
    try:
        root = ET.fromstring(raw)       # expat: no external entities, entity expansion bombs refused
    except ET.ParseError as e:
        raise UserError(f"{path}: not valid XML ({e})") from None
    if root.tag != "annotations":
        raise UserError(f"{path}: not a CVAT XML file (root element <{root.tag}>, expected <annotations>)")
    if root.find("track") is not None:
        raise UserError(f"{path}: has <track> annotations (CVAT for video); export the task as "
                        f"'CVAT for images 1.1' instead")
    frames: list[tuple[int, Frame]] = []
    for n, img in enumerate(root.iter("image")):
        name = img.get("name")
        if not name:
            raise UserError(f"{path}: <image> number {n + 1} has no name")
        try:
            fid = int(img.get("id", n))
            w, h = float(img.get("width", 0)), float(img.get("height", 0))
            if not all(math.isfinite(v) and 0 <= v < 2 ** 31 for v in (w, h)):
                raise ValueError
            w, h = int(w), int(h)
        except ValueError:
            raise UserError(f"{path}: image '{name:.200}': id/width/height are not numbers"
                            f" (id=\"{img.get('id')!s:.30}\", width=\"{img.get('width')!s:.30}\","
                            f" height=\"{img.get('height')!s:.30}\")") from None
        f = Frame(name, w, h)
        for k, s in enumerate(img.findall("skeleton")):
            if s.get("label") != label:
                continue
            f.persons.append(_read_person(path, f"image '{name}', skeleton {k + 1}", s))
        frames.append((fid, f))
    if not frames:
        raise UserError(f"{path}: has no <image> elements")
    frames.sort(key=lambda t: t[0])
    return [f for _, f in frames]
