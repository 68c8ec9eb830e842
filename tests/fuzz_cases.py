"""Bad-input fuzz cases for the command line, generated from a seed (tests/test_fuzz.py runs them).

Every case is a few real CLI commands on a copy of a small project that holds verified points
(3 real photos of pose-gt-dev, their ground truth imported): an import of a damaged COCO or CVAT
XML file, a damaged project.toml or project.db, or bad image files handed to `init`, followed by
the commands a user would run next (`status`, `export`, `render`, `suspicion`). What a user sees
is checked: exit 0 or 2, on exit 2 one line on stderr, never a traceback, no hang, the database
passes `PRAGMA integrity_check`, verified points byte-identical after a failing command, and a
project that took an import still exports strict JSON and renders.

Run as a script to count the outcomes of many cases (the numbers in the issue-14 report):

    .venv/bin/python tests/fuzz_cases.py --n 1024 --seed 0
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import math
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
GT_DEV = HERE.parent / ".." / "shared" / "data" / "pose-gt-dev"
VIDEO = HERE.parent / ".." / "shared" / "data" / "media" / "videos" / "mmpose_demo.mp4"
CATEGORIES = ("coco", "cvat", "toml", "db", "images", "reimport", "paths", "gt")
TIMEOUT = 20.0
N_PHOTOS = 3

BAD_VALUES = ["x", "", [], {}, None, True, 10 ** 30, -10 ** 30, -1, 0, 2 ** 63, float("inf"), float("-inf"),
              float("nan"), 1e308, -1e308, 1e-320, [1, 2], {"a": 1}, "1e400", "\udcff", 3.5, "NaN"]
BAD_NUMBERS_TEXT = ["inf", "-inf", "nan", "1e400", "1e308", "-1e308", "x", "", "1,2", "0x10", "1e", " ",
                    "9" * 400, "-0", "1_000", "١٢"]


# -- the base project ----------------------------------------------------------------------------

def _gt_subset() -> dict:
    gt = json.loads((GT_DEV / "annotations.json").read_text())
    ims = [i for i in gt["images"] if i["source"] == "coco_mini"][:N_PHOTOS]
    ids = {i["id"] for i in ims}
    return {"images": ims, "annotations": [a for a in gt["annotations"] if a["image_id"] in ids],
            "categories": gt["categories"]}


def cli(argv: list[str]) -> tuple[int, str, str, str | None]:
    """The real CLI in this process: (exit code, stdout, stderr, traceback of an escaped exception)."""
    from annotator.cli.base import main
    out, err = io.StringIO(), io.StringIO()
    tb = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        except _Timeout:
            raise
        except BaseException:       # noqa: BLE001 - what a user would see as a traceback
            tb = traceback.format_exc()
            rc = 1
    return rc, out.getvalue(), err.getvalue(), tb


def cli_subprocess(argv: list[str], timeout: float = 120) -> tuple[int, str, str, str | None]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "annotator", *map(str, argv)], capture_output=True, text=True,
                       env=env, timeout=timeout, errors="replace")
    tb = r.stderr if "Traceback (most recent call last)" in r.stderr else None
    return r.returncode, r.stdout, r.stderr, tb


def build_base(root: Path) -> Path:
    """root/imgs (3 photos), root/base (their project, ground truth imported as verified), seed files."""
    root.mkdir(parents=True, exist_ok=True)
    if (root / "base" / "project.db").exists():
        return root
    sub = _gt_subset()
    for im in sub["images"]:
        dst = root / "imgs" / im["file_name"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(GT_DEV / "images" / im["file_name"], dst)
    (root / "seed17.json").write_text(json.dumps(sub))
    for argv in (["init", root / "base", "--images", root / "imgs"],
                 ["import", root / "base", root / "seed17.json"],
                 ["export", root / "base", "--format", "coco", "--out", root / "seed33.json"],
                 ["export", root / "base", "--format", "cvat-xml", "--out", root / "seed.xml"]):
        rc, out, err, tb = cli(argv)
        if rc != 0:
            raise RuntimeError(f"base project: {argv[0]} failed: {err}{tb or ''}")
    return root


# -- what a case is -------------------------------------------------------------------------------

@dataclass
class Case:
    category: str
    seed: int
    what: str = ""
    commands: list = field(default_factory=list)    # argv lists; {p} project, {f} input file, {o} output
    expect_fail_ok: bool = True                      # the first command may fail (exit 2)
    damaged_db: bool = False                          # the database is damaged on purpose
    root: str = ""
    follow: list | None = None                        # commands that must work afterwards


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def _mutate_json(obj, rng: random.Random, notes: list) -> object:
    """One random damage to a COCO dict: a value replaced, a key dropped, a list emptied."""
    paths = []

    def walk(o, path, depth):
        if depth > 4:
            return
        if isinstance(o, dict):
            for k, v in o.items():
                paths.append(path + [k])
                walk(v, path + [k], depth + 1)
        elif isinstance(o, list):
            for i in rng.sample(range(len(o)), min(3, len(o))):
                paths.append(path + [i])
                walk(o[i], path + [i], depth + 1)
    walk(obj, [], 0)
    path = rng.choice(paths)
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    op = rng.random()
    if op < 0.75:
        v = rng.choice(BAD_VALUES)
        notes.append(f"{path}={v!r}"[:80])
        parent[path[-1]] = copy.deepcopy(v)
    elif op < 0.9 and isinstance(parent, dict):
        notes.append(f"del {path}")
        del parent[path[-1]]
    else:
        notes.append(f"{path}=[]")
        parent[path[-1]] = []
    return obj


def _json_text(obj, rng: random.Random, notes: list) -> bytes:
    text = json.dumps(obj)          # Infinity / NaN as Python writes them
    op = rng.random()
    if op < 0.08:
        cut = rng.randrange(len(text))
        notes.append(f"cut at {cut}")
        return text[:cut].encode()
    if op < 0.12:
        notes.append("utf-16")
        return text.encode("utf-16")
    if op < 0.16:
        notes.append("deep nesting")
        return ('{"images": [], "annotations": ' + "[" * 100000 + "]" * 100000 + "}").encode()
    if op < 0.19:
        notes.append("bytes replaced")
        b = bytearray(text.encode())
        for _ in range(rng.randint(1, 20)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if op < 0.22:
        notes.append("1e400 coordinate")
        return re.sub(r'"keypoints": \[(\d+)', r'"keypoints": [1e400', text, count=1).encode()
    return text.encode("utf-8", "surrogatepass")


def _coco_case(c: Case, root: Path, rng: random.Random) -> tuple[bytes, str]:
    seed = json.loads((root / rng.choice(["seed17.json", "seed33.json"])).read_text())
    notes: list = []
    if rng.random() < 0.7:      # moved points: a partial write of a failing import changes verified points
        for a in seed["annotations"]:
            a["keypoints"] = [v + 0.5 if k % 3 != 2 and a["keypoints"][k - k % 3 + 2] else v
                              for k, v in enumerate(a["keypoints"])]
    op = rng.random()
    if op < 0.1:        # every coordinate of one person non-finite or huge (the poisoned project)
        a = rng.choice(seed["annotations"])
        bad = rng.choice([float("inf"), float("-inf"), float("nan"), 1e308, -1e308, 1e30])
        a["keypoints"] = [bad if k % 3 != 2 else v for k, v in enumerate(a["keypoints"])]
        notes.append(f"all coordinates {bad}")
    elif op < 0.15:     # an error in the last image only (a half import)
        last = seed["images"][-1]["id"]
        bad = rng.choice([float("nan"), float("inf"), 1e308, "high"])
        nk = len(seed["categories"][0]["keypoints"])
        ann = {"id": 999, "image_id": last, "category_id": 1, "keypoints": [bad, 2.0, 2] + [0, 0, 0] * (nk - 1)}
        if bad == "high":
            ann["keypoints"][0] = 1.0
            ann["bp_conf"] = ["high"] * nk
        seed["annotations"].append(ann)
        notes.append(f"{bad!r} in the last image's last annotation")
    else:
        for _ in range(rng.randint(1, 3)):
            _mutate_json(seed, rng, notes)
    c.what = "; ".join(notes)
    data = _json_text(seed, rng, notes)
    c.what = "; ".join(notes)
    return data, "json"


def _cvat_case(c: Case, root: Path, rng: random.Random) -> tuple[bytes, str]:
    text = (root / "seed.xml").read_text()
    op = rng.random()
    if op < 0.05:
        c.what = "empty <annotations/>"
        return b"<annotations/>", "xml"
    if op < 0.08:
        c.what = "XXE"
        return (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                b'<annotations><image id="0" name="&x;" width="1" height="1"/></annotations>'), "xml"
    if op < 0.11:
        c.what = "billion laughs"
        ents = "".join(f'<!ENTITY l{i} "{("&l%d;" % (i - 1)) * 10 if i else "lol"}">' for i in range(10))
        return (f'<?xml version="1.0"?><!DOCTYPE a [{ents}]><annotations><image id="0" name="&l9;" '
                f'width="1" height="1"/></annotations>').encode(), "xml"
    if op < 0.15:
        cut = rng.randrange(len(text))
        c.what = f"cut at {cut}"
        return text[:cut].encode(), "xml"
    if op < 0.18:
        c.what = "latin-1 bytes in a name"
        return text.replace('name="coco_mini', 'name="\xe9coco_mini', 1).encode("latin-1", "replace"), "xml"
    root_el = ET.fromstring(text)
    notes = []
    if rng.random() < 0.7:      # moved points (see _coco_case)
        for pt in root_el.iter("points"):
            if pt.get("outside") == "0":
                x, y = map(float, pt.get("points").split(","))
                pt.set("points", f"{x + 0.5:.2f},{y + 0.5:.2f}")
    for _ in range(rng.randint(1, 3)):
        els = [e for e in root_el.iter() if e.tag in ("image", "skeleton", "points", "attribute")]
        e = rng.choice(els)
        if e.tag == "attribute" and rng.random() < 0.7:
            e.text = rng.choice(BAD_NUMBERS_TEXT)
            notes.append(f"<attribute {e.get('name')}>{e.text}")
            continue
        keys = {"image": ["id", "name", "width", "height"], "skeleton": ["label"],
                "points": ["points", "outside", "occluded", "label"], "attribute": ["name"]}[e.tag]
        k = rng.choice(keys)
        r = rng.random()
        if r < 0.15 and k in e.attrib:
            del e.attrib[k]
            notes.append(f"{e.tag} del {k}")
        else:
            if k == "points":
                v = ",".join(rng.choice(BAD_NUMBERS_TEXT + ["1.5", "2"]) for _ in range(rng.randint(1, 3)))
            elif k in ("outside", "occluded"):
                v = rng.choice(["2", "-1", "yes", "", "1.0"])
            elif k == "label":
                v = rng.choice(["", "nose", "left_wrist", "person", "x" * 300])
            elif k == "name":
                v = rng.choice(["", "../../etc/passwd", "x" * 5000, "coco_mini/000000000139.jpg"])
            else:
                v = rng.choice(BAD_NUMBERS_TEXT)
            e.set(k, v)
            notes.append(f"{e.tag} {k}={v!r}"[:80])
    c.what = "; ".join(notes)
    return ET.tostring(root_el, encoding="utf-8"), "xml"


def _toml_case(c: Case, root: Path, rng: random.Random) -> bytes:
    good = (root / "base" / "project.toml").read_text()
    variants = [
        ("utf-16", good.encode("utf-16")),
        ("project = 5", b"project = 5\n" + good.split("\n", 1)[1].encode() if good.startswith("[project]") else b"project = 5\n"),
        ("random bytes", bytes(rng.randrange(256) for _ in range(200))),
        ("empty", b""),
        ("cut", good[:rng.randrange(len(good))].encode()),
    ]
    for table, key, vals in (("prefill", "max_people", ['"x"', "-1", "1e400", "[]", "{a=1}", "true", "99999999999999999999"]),
                             ("prefill", "workers", ['"two"', "0", "-3", "2.5"]),
                             ("prefill", "model_complexity", ['"full"', "7"]),
                             ("sources", "paths", ['"imgs"', "[1, 2]", "5", '["../../nope"]']),
                             ("sources", "video_stride", ['"x"', "0", "-1", "inf", "nan"]),
                             ("project", "name", ["5", "[]", "{}"]),
                             ("project", "annotator", ["5", "[1]"]),
                             ("gui", "point_size", ['"big"', "nan", "-5"]),
                             ("cvat", "url", ["5"]),
                             ("shortcuts", "x", ["5"])):
        v = rng.choice(vals)
        t = re.sub(rf"(?m)^{key} = .*$", f"{key} = {v}", good) if re.search(rf"(?m)^{key} = ", good) \
            else good + f"\n[{table}]\n{key} = {v}\n" if f"[{table}]" not in good \
            else good.replace(f"[{table}]\n", f"[{table}]\n{key} = {v}\n", 1)
        variants.append((f"{table}.{key} = {v}", t.encode()))
    variants.append(("table is a value", good.replace("[gui]", "gui = 1\n[gui2]").encode()))
    what, data = rng.choice(variants)
    c.what = what
    return data


def _damage_db(c: Case, p: Path, rng: random.Random) -> None:
    db = p / "project.db"
    op = rng.randrange(11)
    if op in (0, 1, 2, 3, 4, 5, 6):
        con = sqlite3.connect(db)
        try:
            if op == 0:
                v = rng.choice([-1, 999, 0, 1, 2 ** 31 - 1])
                con.execute(f"PRAGMA user_version={v}")
                c.what = f"user_version {v}"
            elif op == 1:
                t = rng.choice(["points", "persons", "images", "sources", "actions", "changes", "kv", "runs"])
                con.execute("PRAGMA foreign_keys=OFF")
                con.execute(f"DROP TABLE {t}")
                c.what = f"table {t} dropped"
            elif op == 2:
                n = rng.choice([0, 1, 10, 32])
                pid = con.execute("SELECT min(person_id) FROM points").fetchone()[0]
                con.execute("DELETE FROM points WHERE person_id=? AND idx>=?", (pid, n))
                c.what = f"a person with {n} points"
            elif op == 3:
                v = rng.choice(["'abc'", "9e999", "-9e999", "X'00'"])
                con.execute(f"UPDATE points SET x={v} WHERE rowid IN (SELECT rowid FROM points LIMIT 1)"
                            if False else f"UPDATE points SET x={v} WHERE person_id=(SELECT min(person_id) FROM points)"
                            f" AND idx=0")
                c.what = f"a point with x={v}"
            elif op == 4:
                v = rng.choice(["'x'", "7", "-1", "NULL"])
                col = rng.choice(["conf", "suspicion", "verified", "source", "pred_x"])
                con.execute(f"UPDATE points SET {col}={v} WHERE idx=3")
                c.what = f"points {col}={v}"
            elif op == 5:
                v = rng.choice(["'x'", "9e999", "-5", "NULL", "99999999999"])
                col = rng.choice(["width", "height", "frame_index", "orientation"])
                con.execute(f"UPDATE images SET {col}={v}")
                c.what = f"images {col}={v}"
            else:
                col = rng.choice(["score", "track_id"])
                v = rng.choice(["'x'", "9e999", "X'0102'"])
                con.execute(f"UPDATE persons SET {col}={v}")
                c.what = f"persons {col}={v}"
            con.commit()
        except sqlite3.IntegrityError:      # a constraint refused the damage: the case runs on a sound file
            c.what += " (refused by SQLite)"
        finally:
            con.close()
    elif op in (7, 8):
        data = bytearray(db.read_bytes())
        page = 4096
        k = rng.randrange(1, max(2, len(data) // page))
        start = k * page + rng.randrange(page - 64)
        for i in range(64):
            data[start + i] = rng.randrange(256)
        db.write_bytes(bytes(data))
        c.what = f"page {k} damaged"
    elif op == 9:
        data = db.read_bytes()
        cut = rng.randrange(len(data))
        db.write_bytes(data[:cut])
        c.what = f"database cut at {cut}"
    else:
        db.write_bytes(rng.choice([b"not a database at all" * 10, b"SQLite format 3\0" + b"\xff" * 200]))
        c.what = "not a database"
    c.damaged_db = True


def _bad_images(c: Case, d: Path, rng: random.Random) -> list[Path]:
    """A folder of bad image files (and the single file to pass by itself)."""
    d.mkdir(parents=True, exist_ok=True)
    good = next((Path(c.root) / "imgs").rglob("*.jpg"))
    import struct
    import zlib

    def png(w, h):
        ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
        chunk = lambda t, b: struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    kinds = {
        "bomb": lambda p: p.with_suffix(".png").write_bytes(png(100000, 100000)),
        "bomb_small": lambda p: p.with_suffix(".png").write_bytes(png(12000, 9000)),
        "zero": lambda p: p.with_suffix(".png").write_bytes(b""),
        "random": lambda p: p.write_bytes(bytes(rng.randrange(256) for _ in range(3000))),
        "truncated": lambda p: p.write_bytes(good.read_bytes()[: rng.randrange(10, 20000)]),
        "fifo": lambda p: os.mkfifo(p),
        "devzero": lambda p: os.symlink("/dev/zero", p),
        "dir": lambda p: p.mkdir(),
        "dangling": lambda p: os.symlink(d / "nowhere.jpg", p),
        "long_name": lambda p: shutil.copy(good, p.with_name("L" * 240 + ".jpg")),
        "non_utf8": lambda p: shutil.copy(good, os.fsdecode(bytes(p.parent) + b"/bad\xff\xfe.jpg")),
        "newline_name": lambda p: shutil.copy(good, p.with_name("two\nlines.jpg")),
        "gif_as_jpg": lambda p: p.write_bytes(b"GIF89a" + b"\0" * 50),
        "random_mp4": lambda p: p.with_suffix(".mp4").write_bytes(bytes(rng.randrange(256) for _ in range(5000))),
        "cut_mp4": lambda p: p.with_suffix(".mp4").write_bytes(VIDEO.read_bytes()[: rng.randrange(1000, 150000)]),
        "zero_mp4": lambda p: p.with_suffix(".mp4").write_bytes(b""),
    }
    picks = rng.sample(sorted(kinds), rng.randint(1, 3))
    made = []
    for i, k in enumerate(picks):
        p = d / f"{k}_{i}.jpg"
        kinds[k](p)
        made.append(k)
    c.what = ", ".join(made)
    return sorted(d.iterdir())


def make_case(category: str, seed: int, root: Path, work: Path) -> Case:
    """Write the case's files under work (a copy of the base project at work/p) and its commands."""
    rng = random.Random(f"{category}-{seed}")
    c = Case(category, seed, root=str(root))
    p = work.with_name(work.name + "-p")    # beside base/, so the project's ../imgs paths hold
    shutil.copytree(root / "base", p)
    o = work / "out"
    if category == "coco":
        data, ext = _coco_case(c, root, rng)
        f = work / f"in.{ext}"
        f.write_bytes(data)
        c.commands = [["import", p, f, "--as", rng.choice(["verified", "predicted"])]]
    elif category == "gt":          # a damaged ground truth for `evaluate`
        data, ext = _coco_case(c, root, rng)
        f = work / "gt.json"
        f.write_bytes(data)
        c.commands = [["evaluate", p, "--gt", f]]
    elif category == "cvat":
        data, ext = _cvat_case(c, root, rng)
        f = work / "in.xml"
        f.write_bytes(data)
        c.commands = [["import", p, f, "--format", "cvat-xml", "--as", rng.choice(["verified", "predicted"])]]
    elif category == "reimport":
        seed_json = json.loads((root / "seed17.json").read_text())
        # people with 0, 1 and 2 labelled points, re-imported: the second import changes nothing
        im = rng.choice(seed_json["images"])
        nk = len(seed_json["categories"][0]["keypoints"])
        anns = []
        for k in range(rng.randint(1, 4)):
            kp = [0, 0, 0] * nk
            for j in rng.sample(range(nk), rng.choice([0, 1, 1, 2])):
                kp[3 * j:3 * j + 3] = [round(rng.uniform(0, 400), 2), round(rng.uniform(0, 400), 2), rng.choice([1, 2])]
            anns.append({"id": 500 + k, "image_id": im["id"], "category_id": 1, "keypoints": kp})
        f = work / "in.json"
        f.write_text(json.dumps({"images": [im], "annotations": anns, "categories": seed_json["categories"]}))
        c.what = f"{len(anns)} people with {[sum(1 for v in a['keypoints'][2::3] if v) for a in anns]} points"
        c.commands = [["import", p, f], ["import", p, f]]
        c.expect_fail_ok = False
    elif category == "toml":
        (p / "project.toml").write_bytes(_toml_case(c, root, rng))
        c.commands = [rng.choice([["status", p], ["export", p, "--format", "coco", "--out", o / "x.json"],
                                  ["import", p, root / "seed17.json"], ["render", p, "--out", o / "r", "--limit", "1"],
                                  ["queue", p]])]
    elif category == "db":
        _damage_db(c, p, rng)
        c.commands = [rng.choice([["status", p], ["status", p, "--json"], ["export", p, "--format", "coco", "--out", o / "x.json"],
                                  ["export", p, "--format", "cvat-xml", "--out", o / "x.xml"],
                                  ["import", p, root / "seed17.json"], ["render", p, "--out", o / "r"],
                                  ["suspicion", p], ["queue", p]])]
    elif category == "images":
        files = _bad_images(c, work / "bad", rng)
        target = rng.choice(["new", "base"])
        proj = work / "new" if target == "new" else p
        arg = rng.choice([[work / "bad"], [str(x) for x in files]])
        c.commands = [["init", proj, "--images", *arg]]
        c.follow = [["status", proj], ["render", proj, "--out", o / "r"],
                    ["export", proj, "--format", rng.choice(["yolo", "coco", "cvat-xml"]), "--out", o / "y"]]
    elif category == "paths":       # where a command reads from or writes to is itself bad
        (work / "afile").write_text("x")
        (work / "adir").mkdir()
        (work / "adir.json").mkdir()
        os.mkfifo(work / "fifo.json")
        bad_in = rng.choice([work / "adir", work / "fifo.json", work / "nope.json", Path("/dev/zero"),
                             Path("/dev/null"), work / "afile"])
        bad_out = rng.choice([work / "afile" / "x.json", work / "adir.json", work / "afile",
                              Path("/proc/version"), Path("/dev/full"), work / "afile" / "sub" / "x"])
        c.what = f"in {bad_in.name}, out {bad_out}"
        if rng.random() < 0.25:     # the project's own files are not files
            target = rng.choice(["project.db", "project.toml"])
            (p / target).unlink()
            how = rng.choice(["dir", "fifo", "devzero"])
            {"dir": lambda q: q.mkdir(), "fifo": os.mkfifo, "devzero": lambda q: os.symlink("/dev/zero", q)}[how](p / target)
            c.what = f"{target} is a {how}"
            c.damaged_db = target == "project.db"
            c.commands = [rng.choice([["status", p], ["export", p, "--format", "coco", "--out", work / "o.json"]])]
            return c
        if rng.random() < 0.1:
            c.what = "--stride 0"
            c.commands = [["init", p, "--images", root / "imgs", "--stride", rng.choice(["0", "-3"])]]
            c.follow = [["status", p]]
            return c
        c.commands = [rng.choice([["import", p, bad_in], ["import", p, bad_in, "--format", "cvat-xml"],
                                  ["export", p, "--format", rng.choice(["coco", "coco17", "cvat-xml", "yolo"]),
                                   "--out", bad_out],
                                  ["render", p, "--out", bad_out],
                                  ["init", p, "--images", bad_in], ["status", bad_in], ["status", work / "afile"]])]
    else:
        raise ValueError(category)
    return c


# -- checks --------------------------------------------------------------------------------------

_BAR = re.compile(r"^[\w -]*: *(\d+%\||\d+\w* \[)")


def verified_points(db: Path):
    """The verified points exactly as stored (None when the database cannot be read)."""
    if not db.is_file():            # SQLite would wait forever on a FIFO
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return con.execute("SELECT person_id, idx, quote(x), quote(y), vis, source FROM points WHERE verified=1"
                               " ORDER BY person_id, idx").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return None


def integrity(db: Path) -> str:
    if not db.is_file():
        return "ok"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.Error as e:
        return str(e)
    finally:
        con.close()


def person_count(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM persons WHERE deleted=0").fetchone()[0]
    finally:
        con.close()


@dataclass
class Outcome:
    case: Case
    problems: list = field(default_factory=list)    # (kind, detail)


def _err_lines(err: str) -> list[str]:
    return [s for line in err.splitlines() for s in line.split("\r") if s.strip() and not _BAR.match(s)]


def _check_run(o: Outcome, argv, rc, out, err, tb, allow_fail: bool) -> None:
    name = argv[0]
    if tb is not None or "Traceback (most recent call last)" in err:
        last = (tb or err).strip().splitlines()[-1]
        o.problems.append(("traceback", f"{name}: {last}"))
        return
    if rc == 2:
        lines = _err_lines(err)
        if not allow_fail:
            o.problems.append(("unexpected failure", f"{name}: {err.strip()[:200]}"))
        if len(lines) != 1 or not lines[0].startswith("error: "):
            o.problems.append(("not one line", f"{name}: {err.strip()[:300]!r}"))
    elif rc != 0:
        o.problems.append(("exit code", f"{name}: {rc} {err.strip()[:200]}"))


def run_case(c: Case, runner=cli, timeout: float = TIMEOUT) -> Outcome:
    """Run the case's commands and check what a user would see and what the project keeps."""
    o = Outcome(c)
    first = c.commands[0]
    proj = Path(first[1])
    db = proj / "project.db"
    before = verified_points(db)
    persons = []
    failed = False
    inproc = runner is cli
    for k, argv in enumerate(c.commands):
        t0 = time.time()
        try:
            if inproc:
                old = signal.signal(signal.SIGALRM, _alarm)
                signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                rc, out, err, tb = runner(argv) if inproc else runner(argv, timeout)
            finally:
                if inproc:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    signal.signal(signal.SIGALRM, old)
        except (_Timeout, subprocess.TimeoutExpired):
            o.problems.append(("hang", f"{argv[0]} ran more than {timeout:.0f}s"))
            return o
        _check_run(o, argv, rc, out, err, tb, allow_fail=c.expect_fail_ok and k == 0)
        if rc != 0:
            failed = True
        if c.category == "reimport" and rc == 0:
            persons.append(person_count(db))
        o.elapsed = time.time() - t0
    if c.category == "reimport" and len(persons) == 2 and persons[0] != persons[1]:
        o.problems.append(("re-import added people", f"{persons[0]} -> {persons[1]} people"))
    if not c.damaged_db and db.exists():
        ic = integrity(db)
        if ic != "ok":
            o.problems.append(("integrity", ic))
    if failed and before is not None and not c.damaged_db:
        after = verified_points(db)
        if after != before:
            o.problems.append(("verified points changed", f"{len(before or [])} -> {len(after or [])} rows"))
    # the project after a command that worked: still exports strict JSON, renders, scores
    follow = c.follow
    if follow is None and c.category in ("coco", "cvat") and not failed:
        out = Path(first[2]).parent / "out"
        follow = [["export", proj, "--format", "coco", "--out", out / "after.json"],
                  ["render", proj, "--out", out / "r"], ["suspicion", proj]]
    if follow and not c.damaged_db and (proj / "project.db").exists():
        for argv in follow:
            try:
                if inproc:
                    old = signal.signal(signal.SIGALRM, _alarm)
                    signal.setitimer(signal.ITIMER_REAL, timeout)
                try:
                    rc, out_, err, tb = runner(argv) if inproc else runner(argv, timeout)
                finally:
                    if inproc:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                        signal.signal(signal.SIGALRM, old)
            except (_Timeout, subprocess.TimeoutExpired):
                o.problems.append(("hang", f"{argv[0]} (after) ran more than {timeout:.0f}s"))
                return o
            _check_run(o, argv, rc, out_, err, tb, allow_fail=False)
            if rc == 0 and argv[0] == "export" and "--format" in argv and argv[argv.index("--format") + 1] == "coco":
                try:
                    json.loads(Path(argv[-1]).read_text(), parse_constant=lambda s: (_ for _ in ()).throw(
                        ValueError(f"bare {s} in the JSON")))
                except ValueError as e:
                    o.problems.append(("export not JSON", str(e)[:100]))
    return o


def cases(n: int, seed: int = 0) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    weights = {"coco": 0.3, "cvat": 0.19, "toml": 0.1, "db": 0.13, "images": 0.12, "reimport": 0.06, "paths": 0.05,
               "gt": 0.05}
    cats = rng.choices(list(weights), weights=list(weights.values()), k=n)
    return [(cat, seed * 1_000_003 + i) for i, cat in enumerate(cats)]


def run_many(n: int, seed: int, tmp: Path, runner=cli, progress: bool = False,
             timeout: float = TIMEOUT) -> list[Outcome]:
    root = build_base(tmp / "root")
    outs = []
    for i, (cat, s) in enumerate(cases(n, seed)):
        work = tmp / "root" / f"case{i}"
        for d in (work, work.with_name(work.name + "-p")):
            if d.exists():
                shutil.rmtree(d)
        work.mkdir()
        c = make_case(cat, s, root, work)
        outs.append(run_case(c, runner, timeout))
        if progress and outs[-1].problems:
            print(f"  {cat} #{s} [{c.what}]: {outs[-1].problems}", file=sys.__stderr__)
        for d in (work, work.with_name(work.name + "-p")):
            shutil.rmtree(d, ignore_errors=True)
    return outs


def summarize(outs: list[Outcome]) -> dict:
    s = {"cases": len(outs), "cases_with_problems": sum(bool(o.problems) for o in outs)}
    for o in outs:
        for kind in {k for k, _ in o.problems}:
            s[kind] = s.get(kind, 0) + 1
    by = {}
    for o in outs:
        b = by.setdefault(o.case.category, [0, 0])
        b[0] += 1
        b[1] += bool(o.problems)
    s["by_category (cases, with problems)"] = by
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds a command may take")
    a = ap.parse_args()
    import resource             # a reader that slurps /dev/zero fails here, not on the shared machine
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
    import tempfile
    tmp = Path(a.tmp or tempfile.mkdtemp(prefix="fuzz-"))
    t0 = time.time()
    outs = run_many(a.n, a.seed, tmp, progress=not a.quiet, timeout=a.timeout)
    s = summarize(outs)
    s["seconds"] = round(time.time() - t0, 1)
    import annotator
    s["code"] = str(Path(annotator.__file__).parent.parent)
    print(json.dumps(s, indent=1))


if __name__ == "__main__":
    main()
