"""The command line on bad input: one clear line naming the file, non-zero exit, nothing lost."""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys

import pytest

from annotator.core.project import Project

from tests.conftest import GT_DEV, MEDIA, REPO


def run(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "annotator", *map(str, args)], capture_output=True, text=True,
                       env=env, cwd=cwd, timeout=300)
    return r.returncode, r.stdout, r.stderr


def assert_one_line_error(rc, err, *needles):
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], lines[0]


def test_missing_folder(tmp_path):
    rc, out, err = run("init", tmp_path / "p", "--images", tmp_path / "nope")
    assert_one_line_error(rc, err, "nope", "no such file or folder")


def test_not_a_project(tmp_path):
    rc, out, err = run("status", tmp_path)
    assert_one_line_error(rc, err, "project.toml", "not a project")


def test_corrupt_truncated_and_unopenable_inputs(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(MEDIA / "images" / "ultralytics_zidane.jpg", src / "good.jpg")
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    data = (MEDIA / "images" / "ultralytics_bus.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(data[: len(data) // 3])
    # noise, fixed: some random bytes probe as a stream that opens and then has no frame
    (src / "broken.mp4").write_bytes(random.Random(0).randbytes(4096))
    rc, out, err = run("init", tmp_path / "p", "--images", src)
    assert rc == 0, err
    assert "corrupt.jpg: cannot read image" in out
    assert re.search(r"broken\.mp4: (cannot open video|video has no decodable frames)", out), out
    rc, out, err = run("status", tmp_path / "p", "--json")
    st = json.loads(out)
    assert st["images"] == 3                                   # good, corrupt (failed), truncated
    failed = dict(st["failures"])
    assert [k for k in failed] == ["../in/corrupt.jpg"]
    # the truncated file has a valid header: it fails when decoded, with its name and reason
    with Project.open(tmp_path / "p") as p:
        row = next(r for r in p.store.images() if "truncated" in r.file_name)
        from annotator.core.errors import UserError
        with pytest.raises(UserError, match="truncated.jpg: cannot decode image"):
            p.load_rgb(row)


def test_import_errors_and_nothing_lost(tmp_path):
    im = next(i for i in json.loads((GT_DEV / "annotations.json").read_text())["images"]
              if i["source"] == "coco_mini")
    rc, _, err = run("init", tmp_path / "p", "--images", GT_DEV / "images" / im["file_name"])
    assert rc == 0, err
    good = tmp_path / "good.json"
    gt = json.loads((GT_DEV / "annotations.json").read_text())
    sub = {"images": [im], "annotations": [a for a in gt["annotations"] if a["image_id"] == im["id"]],
           "categories": gt["categories"]}
    good.write_text(json.dumps(sub))
    rc, out, err = run("import", tmp_path / "p", good)
    assert rc == 0 and "1 images matched" in out, err
    rc, before, _ = run("status", tmp_path / "p", "--json")

    wrong = tmp_path / "wrong.json"
    sub["categories"] = [dict(sub["categories"][0], keypoints=sub["categories"][0]["keypoints"][:12])]
    wrong.write_text(json.dumps(sub))
    rc, _, err = run("import", tmp_path / "p", wrong)
    assert_one_line_error(rc, err, "wrong.json", "[12] keypoints", "expected 17")
    (tmp_path / "cut.json").write_text(good.read_text()[:200])
    rc, _, err = run("import", tmp_path / "p", tmp_path / "cut.json")
    assert_one_line_error(rc, err, "cut.json", "not valid JSON")
    rc, after, _ = run("status", tmp_path / "p", "--json")
    assert json.loads(after) == json.loads(before)


def test_export_verified_only_and_render(tmp_path):
    rc, _, err = run("init", tmp_path / "p", "--images", MEDIA / "images" / "skimage_astronaut.png")
    assert rc == 0, err
    rc, out, err = run("export", tmp_path / "p", "--format", "coco", "--out", tmp_path / "o.json", "--verified-only")
    assert rc == 0, err
    assert json.loads((tmp_path / "o.json").read_text())["annotations"] == []


def test_imported_predictions_are_scored_for_the_review_queue(tmp_path):
    """Points that arrive by import (another model's predictions) get suspicion scores at once, the
    ones a recompute gives, so `queue` orders them; verified imports score 0 (nothing to find)."""
    gt = json.loads((GT_DEV / "annotations.json").read_text())
    ims = [i for i in gt["images"] if i["source"] == "coco_mini"
           and sum(a["num_keypoints"] >= 5 for a in gt["annotations"] if a["image_id"] == i["id"]) >= 1][:3]
    rc, _, err = run("init", tmp_path / "p", "--images", *[GT_DEV / "images" / i["file_name"] for i in ims])
    assert rc == 0, err
    ids = {i["id"] for i in ims}
    sub = {"images": ims, "annotations": [a for a in gt["annotations"] if a["image_id"] in ids],
           "categories": gt["categories"]}
    (tmp_path / "pred.json").write_text(json.dumps(sub))
    rc, out, err = run("import", tmp_path / "p", tmp_path / "pred.json", "--as", "predicted")
    assert rc == 0, err
    with Project.open(tmp_path / "p") as proj:
        rows = proj.store.db.execute("SELECT p.person_id, p.idx, p.suspicion, p.verified FROM points p"
                                     " JOIN persons q ON q.id=p.person_id WHERE q.deleted=0 AND p.vis>0").fetchall()
        assert rows and all(s is not None for _, _, s, _ in rows) and not any(v for *_, v in rows)
        stored = {(pid, i): s for pid, i, s, _ in rows}
        from annotator.review.suspicion import update_suspicion
        with proj.store.tx():
            proj.store.db.execute("UPDATE points SET suspicion=NULL")
        update_suspicion(proj)
        again = dict(((pid, i), s) for pid, i, s in proj.store.db.execute(
            "SELECT person_id, idx, suspicion FROM points WHERE vis>0"))
        assert again == pytest.approx(stored)
    rc, out, err = run("queue", tmp_path / "p", "--limit", "3")
    assert rc == 0, err
    assert all(i["file_name"].split("/")[-1] in out for i in ims)
