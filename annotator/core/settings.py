"""project.toml: the human-editable settings of a project.

State lives in SQLite; settings (sources, annotator name, thresholds,
shortcuts, CVAT URL/user but never a secret) live here so they can be read
and diffed by people. Written atomically (temp file + rename).
"""
from __future__ import annotations

import copy
import math
import os
import tomllib
from pathlib import Path

from annotator.core.errors import UserError

DEFAULTS: dict = {
    "project": {"name": "", "annotator": ""},
    "sources": {"paths": [], "video_stride": 1},
    "prefill": {
        # "detector": NanoDet boxes -> MoveNet Thunder per box -> BlazePose (model_complexity 2 = Heavy)
        # on MediaPipe's ROI from MoveNet's alignment (prefill/blazepose.py). On pose-gt-dev
        # (bench/engine.py): person recall 0.81, OKS AP 0.34, against 0.31 / 0.16 for "multi"
        # (MediaPipe's own face-based detector), which stays available, as does "legacy".
        "engine": "detector",
        "model_complexity": 2,
        "rerun_complexity": 1,       # the review signals' 8 re-runs a person use Full: a quarter of Heavy's cost
        "box_min_score": 0.2,        # detector boxes kept
        "min_person_score": 0.06,    # box score x MoveNet's mean score x (0.3 + 0.7 x BlazePose's flag): a person
        "pose_flag_weight": 0.7,     # how much BlazePose's "a person is here" flag counts in that score
        "hide_points": "model",      # "model": prefill/point_model.py decides which points are stored as
                                     # not labelled; "threshold": MoveNet's point score < unseen_below
        "unseen_below": 0.2,
        "fuse_max_term": 0.5,        # a COCO joint takes MoveNet's position where BlazePose disagrees this much
        "second_look": True,         # a box whose pose is a person already found, or that the scores call empty on a
                                     # photo where someone was found: MoveNet and BlazePose again on the box's
                                     # pixels alone (the person behind another; blazepose._box_person)
        "mirror_scores": True,       # MoveNet also on the mirrored crop of each person; point_model reads the mean score
        "min_person_px": 16.0,       # people whose shown points span less (geometric mean of the box's sides) are
                                     # not kept: too small to label (blazepose.shown_size); 0 keeps every size
        # engine "multi" only (blazepose.TUNED; recall 0.31, 1 person on 63 no-person photos):
        "min_detection_confidence": 0.3,
        "min_pose_presence": 0.5,
        "max_people": 50,            # a crowd photo: 20 cut off people the detector had found
        "min_keypoint_conf": 0.45,   # drop people whose landmark heatmaps are not confident (blazepose.py)
        "tiles": 0.0,                # > 0: also detect on windows of this side (small people, slower); 0: whole image
        "nms_iou": 0.3,
        "tta": False,                # also re-run each person on 8 other views for the review signals
                                     # (rerun.py; adds nothing to the queue next to the engine's own)
        "workers": 2,
    },
    "gui": {"point_size": 5.0, "show_angles": False, "prefetch": 3},
    "shortcuts": {},
    "cvat": {"url": "", "user": "", "project": ""},
}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}
# settings whose value must be at least 1 (a count)
_POSITIVE = {("prefill", "max_people"), ("prefill", "workers"), ("sources", "video_stride")}
# the engine's numeric settings and their ranges (low, high; None: no bound): checked here too, so a
# value out of range names project.toml before any model loads (the engine checks them again)
_RANGES = {("prefill", k): (0.0, 1.0) for k in ("box_min_score", "min_person_score", "pose_flag_weight",
                                                "unseen_below", "fuse_max_term", "min_detection_confidence",
                                                "min_pose_presence", "min_keypoint_conf", "nms_iou")}
_RANGES[("prefill", "min_person_px")] = (0.0, None)
# settings with a fixed set of values (blazepose.ENGINES / HIDE_RULES): checked here so the error
# names project.toml, not a keyword argument deep in the engine
CHOICES = {("prefill", "engine"): ("detector", "multi", "legacy"), ("prefill", "hide_points"): ("model", "threshold")}


def _type_name(v) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(v), type(v).__name__)


def check(data: dict, path) -> None:
    """Every setting we know has the type of its default (a number may be an integer), finite numbers,
    counts at least 1; a one-line UserError naming the file and the key otherwise. Keys we do not
    know are kept as they are (a newer version's settings)."""
    for table, defaults in DEFAULTS.items():
        if table not in data:
            continue
        values = data[table]
        if not isinstance(values, dict):
            raise UserError(f"{path}: [{table}] must be a table, not {_type_name(values)} ({values!r:.40})")
        for key, default in defaults.items():
            if key not in values:
                continue
            v, where = values[key], f"{table}.{key}"
            ok = (isinstance(v, bool) if isinstance(default, bool)
                  else isinstance(v, int) and not isinstance(v, bool) if isinstance(default, int)
                  else isinstance(v, (int, float)) and not isinstance(v, bool) if isinstance(default, float)
                  else isinstance(v, type(default)))
            if not ok:
                raise UserError(f"{path}: {where} must be {_type_name(default)}, not {_type_name(v)} ({v!r:.40})")
            if isinstance(v, float) and not math.isfinite(v):
                raise UserError(f"{path}: {where} must be a finite number, not {v}")
            if isinstance(v, int) and not isinstance(v, bool) and not -2 ** 31 < v < 2 ** 31:
                raise UserError(f"{path}: {where} = {v} is out of range")
            if (table, key) in _POSITIVE and v < 1:
                raise UserError(f"{path}: {where} must be at least 1, not {v}")
            lo, hi = _RANGES.get((table, key), (None, None))
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                raise UserError(f"{path}: {where} = {v} must be " + (f"between {lo:g} and {hi:g}" if hi is not None
                                                                    else f"at least {lo:g}"))
            if (table, key) in CHOICES and v not in CHOICES[table, key]:
                raise UserError(f"{path}: {where} = {v!r} must be one of "
                                f"{', '.join(repr(c) for c in CHOICES[table, key])}")
            if isinstance(v, list) and not all(isinstance(x, str) for x in v):
                raise UserError(f"{path}: {where} must be a list of strings")
    for key, v in data.get("shortcuts", {}).items():
        if not isinstance(v, str):
            raise UserError(f"{path}: shortcuts.{key} must be a string (a key name), not {_type_name(v)}")


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):      # a TOML basic string: control characters escaped (a file name may hold any)
        return '"' + "".join(_ESCAPES.get(ch) or (f"\\u{ord(ch):04x}" if ord(ch) < 32 or ord(ch) == 127 else ch)
                             for ch in v) + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps(data: dict) -> str:
    """Minimal TOML writer for our two-level settings (tables of scalars/lists)."""
    lines = []
    for table, values in data.items():
        lines.append(f"[{table}]")
        for k, v in values.items():
            key = k if k.replace("_", "").replace("-", "").isalnum() else _toml_value(k)
            lines.append(f"{key} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)


def load(path: Path) -> dict:
    from annotator.core.media import read_regular
    if not os.path.lexists(path):
        raise UserError(f"{path}: not a project (no project.toml)")
    raw = read_regular(path, "project settings", limit=16 << 20)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (TOML files are UTF-8): {e.reason} at byte {e.start}") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: invalid TOML: {e}") from None
    except RecursionError:
        raise UserError(f"{path}: invalid TOML: nested too deeply") from None
    check(data, path)
    return _merge(DEFAULTS, data)


def save(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".toml.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dumps(data))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
