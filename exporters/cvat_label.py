"""The CVAT skeleton label for our 33 points, and Person <-> CVAT shape conversion.

One label `person` of type skeleton; each BlazePose point is a `points`
sublabel carrying two attributes CVAT users can see and filter on:
`confidence` (integer percent, -1 = no model said anything) and
`provenance` (who/what placed the point). CVAT number attributes are
integers only, hence percent. The SVG is CVAT's skeleton layout format:
edges (`<line data-type="edge" data-node-from data-node-to>`) between
nodes (`<circle data-type="element node" data-element-id data-node-id
data-label-name>`) in a 0..100 box; the server rewrites `data-label-name`
to `data-label-id` when it stores the label, so both are understood here.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.model import NOT_LABELLED, OCCLUDED, VISIBLE, Person

LABEL_NAME = "person"
ATTR_CONFIDENCE = "confidence"
ATTR_PROVENANCE = "provenance"
# number attribute: min, max, step (CVAT number attributes are integers)
CONF_VALUES = ["-1", "100", "1"]
NO_CONFIDENCE = -1

# A standing person facing the viewer (their left is on the right), 0..100 box.
LAYOUT: dict[str, tuple[float, float]] = {
    "nose": (50, 10),
    "left_eye_inner": (52, 8), "left_eye": (53.5, 8), "left_eye_outer": (55, 8),
    "right_eye_inner": (48, 8), "right_eye": (46.5, 8), "right_eye_outer": (45, 8),
    "left_ear": (57, 9.5), "right_ear": (43, 9.5),
    "mouth_left": (52, 13), "mouth_right": (48, 13),
    "left_shoulder": (60, 22), "right_shoulder": (40, 22),
    "left_elbow": (65, 37), "right_elbow": (35, 37),
    "left_wrist": (68, 51), "right_wrist": (32, 51),
    "left_pinky": (71, 56), "right_pinky": (29, 56),
    "left_index": (69, 58), "right_index": (31, 58),
    "left_thumb": (66, 56), "right_thumb": (34, 56),
    "left_hip": (56, 52), "right_hip": (44, 52),
    "left_knee": (57, 70), "right_knee": (43, 70),
    "left_ankle": (58, 88), "right_ankle": (42, 88),
    "left_heel": (57, 91), "right_heel": (43, 91),
    "left_foot_index": (61, 94), "right_foot_index": (39, 94),
}
assert set(LAYOUT) == set(sk.NAMES)

LABEL_COLOR = "#fa3253"


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % rgb


def svg() -> str:
    """CVAT skeleton SVG: edges first (drawn under), then one node per point; node id = index + 1."""
    parts = []
    for a, b in sk.EDGES:
        (x1, y1), (x2, y2) = LAYOUT[sk.NAMES[a]], LAYOUT[sk.NAMES[b]]
        parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="black" '
                     f'data-type="edge" data-node-from="{a + 1}" data-node-to="{b + 1}" '
                     f'stroke-width="0.5"></line>')
    for i, name in enumerate(sk.NAMES):
        x, y = LAYOUT[name]
        parts.append(f'<circle r="1.5" stroke="black" fill="{_hex(sk.point_color(i))}" cx="{x}" cy="{y}" '
                     f'stroke-width="0.1" data-type="element node" data-element-id="{i + 1}" '
                     f'data-node-id="{i + 1}" data-label-name="{name}"></circle>')
    return "".join(parts)


def point_attributes() -> list[dict]:
    """The attributes every point sublabel carries (CVAT AttributeRequest JSON)."""
    return [
        {"name": ATTR_CONFIDENCE, "mutable": False, "input_type": "number",
         "default_value": str(NO_CONFIDENCE), "values": list(CONF_VALUES)},
        {"name": ATTR_PROVENANCE, "mutable": False, "input_type": "text",
         "default_value": "", "values": []},
    ]


def label_spec() -> dict:
    """The `person` label as CVAT's project/task creation JSON (labels: [label_spec()])."""
    return {
        "name": LABEL_NAME, "color": LABEL_COLOR, "type": "skeleton", "attributes": [],
        "sublabels": [{"name": n, "type": "points", "color": _hex(sk.point_color(i)),
                       "attributes": point_attributes()} for i, n in enumerate(sk.NAMES)],
        "svg": svg(),
    }


# -- reading a server-side label -----------------------------------------------------------------
_TAG = re.compile(r"<(line|circle)\b([^>]*)>", re.S)
_ATTR = re.compile(r'([\w:-]+)\s*=\s*"([^"]*)"')


def parse_svg(text: str) -> tuple[dict[int, dict[str, str]], set[tuple[int, int]]]:
    """Nodes by data-node-id (their data-* attributes) and edges as (from, to) node ids."""
    nodes: dict[int, dict[str, str]] = {}
    edges: set[tuple[int, int]] = set()
    for tag, body in _TAG.findall(text or ""):
        a = dict(_ATTR.findall(body))
        try:
            if tag == "circle" and "node" in a.get("data-type", ""):
                nodes[int(a["data-node-id"])] = a
            elif tag == "line" and a.get("data-type") == "edge":
                edges.add((int(a["data-node-from"]), int(a["data-node-to"])))
        except (KeyError, ValueError):
            continue
    return nodes, edges


def _svg_edge_names(label: dict) -> set[frozenset[str]] | None:
    """Edges of a server label's SVG as unordered name pairs between its sublabels.

    Nodes are resolved through the sublabels (data-label-id, or data-label-name
    before the server rewrote it); edges touching a node that is no sublabel
    are dropped. None when the SVG has no readable node at all.
    """
    subs = label.get("sublabels") or []
    by_id = {s.get("id"): s.get("name") for s in subs}
    known = {s.get("name") for s in subs}
    nodes, edges = parse_svg(label.get("svg") or "")
    if not nodes:
        return None
    names: dict[int, str] = {}
    for nid, a in nodes.items():
        name = None
        if "data-label-id" in a:
            try:
                name = by_id.get(int(a["data-label-id"]))
            except ValueError:
                name = None
        elif a.get("data-label-name") in known:
            name = a["data-label-name"]
        if name is not None:
            names[nid] = name
    return {frozenset((names[f], names[t])) for f, t in edges if f in names and t in names}


def _norm_values(attr: dict) -> list[str]:
    vals = list(attr.get("values") or [])
    if attr.get("input_type") in ("text", "checkbox"):
        return []           # the server stores [] as [""]; values do not matter for these types
    return vals


def diff_label(server_label: dict | None) -> list[str]:
    """How a label found on a CVAT server differs from ours (empty list: compatible). Never modifies it."""
    if server_label is None:
        return [f"no label named '{LABEL_NAME}'"]
    out = []
    if server_label.get("type") != "skeleton":
        out.append(f"label '{server_label.get('name')}' has type '{server_label.get('type')}', expected 'skeleton'")
    subs = {s.get("name"): s for s in server_label.get("sublabels") or []}
    ours = {s["name"]: s for s in label_spec()["sublabels"]}
    for name in sk.NAMES:
        if name not in subs:
            out.append(f"point '{name}' missing")
    for name in subs:
        if name not in ours:
            out.append(f"unexpected point '{name}'")
    for name, s in subs.items():
        if name not in ours:
            continue
        if s.get("type") not in ("points", None):
            out.append(f"point '{name}' has type '{s.get('type')}', expected 'points'")
        have = {a.get("name"): a for a in s.get("attributes") or []}
        for want in ours[name]["attributes"]:
            a = have.get(want["name"])
            if a is None:
                out.append(f"point '{name}': attribute '{want['name']}' missing")
            elif a.get("input_type") != want["input_type"]:
                out.append(f"point '{name}': attribute '{want['name']}' is {a.get('input_type')}, "
                           f"expected {want['input_type']}")
            elif _norm_values(a) != _norm_values(want):
                out.append(f"point '{name}': attribute '{want['name']}' values {a.get('values')}, "
                           f"expected {want['values']}")
    edges = _svg_edge_names(server_label)
    if edges is None:
        out.append("skeleton SVG could not be read")
    else:
        want_edges = {frozenset((sk.NAMES[a], sk.NAMES[b])) for a, b in sk.EDGES}
        for e in sorted(want_edges - edges, key=sorted):
            out.append("edge %s-%s missing" % tuple(sorted(e)))
        for e in sorted(edges - want_edges, key=sorted):
            out.append("unexpected edge %s-%s" % tuple(sorted(e)))
    return out


def find_label(labels: list[dict], name: str = LABEL_NAME) -> dict | None:
    for lab in labels:
        if lab.get("name") == name and not lab.get("parent_id"):
            return lab
    return None


@dataclass
class LabelMap:
    """Server ids of our label, its point sublabels and their attributes."""
    label_id: int
    sub_id: dict[str, int]                              # point name -> sublabel id
    attr_id: dict[int, dict[str, int]] = field(default_factory=dict)   # sublabel id -> attr name -> spec id

    @property
    def name_of(self) -> dict[int, str]:
        return {v: k for k, v in self.sub_id.items()}

    @classmethod
    def from_labels(cls, labels: list[dict], where: str = "CVAT") -> "LabelMap":
        lab = find_label(labels)
        if lab is None:
            raise UserError(f"{where}: no skeleton label '{LABEL_NAME}' (found: "
                            f"{', '.join(sorted(str(x.get('name')) for x in labels)) or 'none'})")
        subs = {s["name"]: s for s in lab.get("sublabels") or []}
        missing = [n for n in sk.NAMES if n not in subs]
        if missing:
            raise UserError(f"{where}: label '{LABEL_NAME}' lacks points {', '.join(missing[:5])}"
                            f"{' ...' if len(missing) > 5 else ''}")
        sub_id = {n: int(subs[n]["id"]) for n in sk.NAMES}
        attr_id = {sub_id[n]: {a["name"]: int(a["id"]) for a in subs[n].get("attributes") or [] if "id" in a}
                   for n in sk.NAMES}
        return cls(int(lab["id"]), sub_id, attr_id)


# -- Person <-> shape ----------------------------------------------------------------------------
def conf_value(c: float) -> str:
    """A confidence in [0, 1] (NaN: none) as CVAT's attribute value: integer percent, -1 for none."""
    if c is None or not math.isfinite(c):
        return str(NO_CONFIDENCE)
    return str(int(round(min(max(float(c), 0.0), 1.0) * 100)))


def person_to_shape(person: Person, frame: int, lmap: LabelMap, *, source: str | None = None,
                    shape_id: int | None = None, element_ids: dict | None = None) -> dict:
    """A Person as a CVAT skeleton shape dict (all 33 elements; vis 0 -> outside, 1 -> occluded).

    shape_id and element_ids ({str(sublabel id): element id}) address an existing
    server shape, as CVAT's update and delete need."""
    if source is None:
        source = "manual" if person.verified.any() else "auto"
    elements = []
    for i, name in enumerate(sk.NAMES):
        sid = lmap.sub_id[name]
        x, y = (float(v) if math.isfinite(float(v)) else 0.0 for v in person.xy[i])
        v = int(person.vis[i])
        attrs = []
        ids = lmap.attr_id.get(sid, {})
        if ATTR_CONFIDENCE in ids:
            attrs.append({"spec_id": ids[ATTR_CONFIDENCE], "value": conf_value(person.conf[i])})
        if ATTR_PROVENANCE in ids:
            attrs.append({"spec_id": ids[ATTR_PROVENANCE], "value": str(person.source[i] or "")[:4096]})
        elements.append({"type": "points", "label_id": sid, "frame": int(frame), "group": 0,
                         "source": source, "occluded": v == OCCLUDED, "outside": v == NOT_LABELLED,
                         "z_order": 0, "rotation": 0.0, "points": [x, y], "attributes": attrs})
        if element_ids and element_ids.get(str(sid)) is not None:
            elements[-1]["id"] = element_ids[str(sid)]
    shape = {"type": "skeleton", "label_id": lmap.label_id, "frame": int(frame), "group": 0,
             "source": source, "occluded": False, "outside": False, "z_order": 0, "rotation": 0.0,
             "points": [], "attributes": [], "elements": elements}
    if shape_id is not None:
        shape["id"] = shape_id
    return shape


def shape_to_person(shape: dict, lmap: LabelMap) -> Person:
    """A CVAT skeleton shape dict as a Person (points absent from the shape stay not labelled).

    meta gets the CVAT shape id and source; verified is left False (the caller decides).
    """
    if shape.get("type") != "skeleton" or int(shape.get("label_id", -1)) != lmap.label_id:
        raise UserError(f"CVAT shape {shape.get('id')}: not a '{LABEL_NAME}' skeleton")
    names = lmap.name_of
    n = sk.N
    xy = np.zeros((n, 2))
    vis = np.zeros(n, dtype=np.int8)
    conf = np.full(n, np.nan)
    source = [""] * n
    for el in shape.get("elements") or []:
        name = names.get(int(el.get("label_id", -1)))
        if name is None:
            raise UserError(f"CVAT shape {shape.get('id')}: element with unknown label id {el.get('label_id')}")
        i = sk.INDEX[name]
        pts = el.get("points") or []
        if len(pts) >= 2:
            xy[i] = (float(pts[0]), float(pts[1]))
        vis[i] = NOT_LABELLED if el.get("outside") else (OCCLUDED if el.get("occluded") else VISIBLE)
        ids = {v: k for k, v in lmap.attr_id.get(int(el["label_id"]), {}).items()}
        for a in el.get("attributes") or []:
            key = ids.get(int(a.get("spec_id", -1)))
            if key == ATTR_CONFIDENCE:
                try:
                    c = int(float(a.get("value")))
                except (TypeError, ValueError):
                    c = NO_CONFIDENCE
                conf[i] = np.nan if c < 0 else c / 100.0
            elif key == ATTR_PROVENANCE:
                source[i] = str(a.get("value") or "")
    p = Person(xy, vis, conf, None, source)
    p.meta["cvat_id"] = shape.get("id")
    p.meta["cvat_source"] = shape.get("source")
    return p
