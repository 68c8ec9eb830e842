"""Pre-fill end to end through the CLI: real photos, the real model, 2 worker processes, the SQLite file.

The engine's own accuracy is tested in test_blazepose.py; here what matters is
what lands in the project: points in original image pixels on the right
person, the run recorded, failures skipped, and a killed run that resumes
without redoing or duplicating anything.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from annotator.core import skeleton as sk
from annotator.core.project import Project

from tests.conftest import GT_DEV, REPO
from tests.test_blazepose import CLEAR_SINGLE

pytestmark = pytest.mark.needs_data


def cli(*args, **kw):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "annotator", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def run(*args):
    p = cli(*args)
    out, err = p.communicate(timeout=600)
    return p.returncode, out, err


def copy_photos(images: list[dict], dst):
    dst.mkdir(parents=True, exist_ok=True)
    for im in images:
        shutil.copy(GT_DEV / "images" / im["file_name"], dst / im["file_name"].replace("/", "_"))


def test_points_land_on_the_person_in_pixels_and_the_run_is_recorded(tmp_path, gt_dev):
    ims = [next(i for i in gt_dev["images"] if i["file_name"] == f) for f in CLEAR_SINGLE]
    copy_photos(ims, tmp_path / "in")
    assert run("init", tmp_path / "p", "--images", tmp_path / "in")[0] == 0
    rc, out, err = run("prefill", tmp_path / "p", "--workers", "2", "--no-tta")
    assert rc == 0, err
    assert "pre-filled 4 images" in out
    with Project.open(tmp_path / "p") as p:
        for im in ims:
            row = p.store.image_by_name(next(r.file_name for r in p.store.images()
                                             if r.file_name.endswith(im["file_name"].replace("/", "_"))))
            assert row.status == "done" and (row.width, row.height) == (im["width"], im["height"])
            frame = p.store.load_frame(row.id)
            ann = next(a for a in gt_dev["annotations"] if a["image_id"] == im["id"] and a["num_keypoints"])
            k17 = np.array(ann["keypoints"], float).reshape(17, 3)
            lab = k17[:, 2] > 0
            # the predicted person nearest to the GT one, its COCO-17 points in image pixels
            errs = [np.median(np.linalg.norm(q.xy[list(sk.COCO17_FROM_BP)][lab] - k17[lab, :2], axis=1))
                    for q in frame.persons]
            assert errs and min(errs) < 0.1 * max(ann["bbox"][2:]), (im["file_name"], errs)
            best = frame.persons[int(np.argmin(errs))]
            assert not best.verified.any() and best.conf.max() <= 1.0 and best.conf.min() >= 0.0
            assert all(s == "nanodet+movenet+blazepose-heavy/mediapipe-0.10.21" for s in best.source)
        run_row = p.store.runs()[-1]
        assert run_row["kind"] == "prefill" and run_row["model"] == "nanodet+movenet+blazepose-heavy/mediapipe-0.10.21"
        settings = run_row["settings"]
        settings = json.loads(settings) if isinstance(settings, str) else settings
        assert settings["workers"] == 2 and "min_detection_confidence" in settings
    # a second run has nothing left to do
    rc, out, err = run("prefill", tmp_path / "p")
    assert rc == 0 and "nothing to pre-fill: 4 images already done" in out, out + err


def _done(db) -> dict[int, list[int]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        done = [r[0] for r in con.execute("SELECT id FROM images WHERE status='done'")]
        return {i: [r[0] for r in con.execute("SELECT id FROM persons WHERE image_id=? AND deleted=0"
                                               " ORDER BY id", (i,))] for i in done}
    finally:
        con.close()


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its new parent to reap it."""
    try:
        return open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]


def test_killed_prefill_resumes_without_redoing_or_duplicating(tmp_path, gt_dev):
    ims = [im for im in gt_dev["images"] if im["source"].startswith("coco")][:24]
    copy_photos(ims, tmp_path / "in")
    (tmp_path / "in" / "zz_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not a jpeg" * 50)
    rc, out, err = run("init", tmp_path / "p", "--images", tmp_path / "in")
    assert rc == 0, err
    db = tmp_path / "p" / "project.db"
    proc = cli("prefill", tmp_path / "p", "--workers", "2", "--no-tta")
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(0.05)
        try:
            if len(_done(db)) >= 3:
                break
        except sqlite3.OperationalError:
            pass
        assert proc.poll() is None, proc.communicate()
    workers = _children(proc.pid)
    assert len(workers) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15       # its workers leave too
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "worker processes outlived the killed pre-fill"
    before = _done(db)
    assert 3 <= len(before) < len(ims), "the run should have been killed part-way"
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()

    rc, out, err = run("prefill", tmp_path / "p", "--workers", "2", "--no-tta")
    assert rc == 0, err
    after = _done(db)
    assert len(after) == len(ims)                         # every photo done, the corrupt one not
    for i, people in before.items():                      # what was saved was kept, not redone
        assert after[i] == people
    with Project.open(tmp_path / "p") as p:
        failed = dict(p.store.failures())
        assert list(failed) == ["../in/zz_corrupt.jpg"]
        n_pred = p.store.db.execute("SELECT COUNT(*) FROM persons WHERE deleted=0").fetchone()[0]
    assert n_pred == sum(len(v) for v in after.values())


def test_bad_model_settings_fail_fast_with_one_line(tmp_path):
    """A setting the model rejects stops the run with one line (the workers report it with their
    first task), and nothing is written."""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(GT_DEV / "images" / CLEAR_SINGLE[0], src / "a.jpg")
    assert run("init", tmp_path / "p", "--images", src)[0] == 0
    toml = tmp_path / "p" / "project.toml"
    text = toml.read_text()
    for bad, needle in (("min_detection_confidence = 5.0",
                         "project.toml: prefill.min_detection_confidence = 5.0 must be between 0 and 1"),
                        ("min_person_px = -1", "project.toml: prefill.min_person_px = -1 must be at least 0"),
                        ("model_complexity = 7", "model_complexity=7: must be 0 (lite), 1 (full) or 2 (heavy)"),
                        ('hide_points = "sometimes"',
                         "project.toml: prefill.hide_points = 'sometimes' must be one of 'model', 'threshold'"),
                        ('engine = "detectr"', "project.toml: prefill.engine = 'detectr' must be one of 'detector'")):
        key = bad.split(" = ")[0]
        lines = [bad if ln.startswith(key + " =") else ln for ln in text.splitlines()]
        toml.write_text("\n".join(lines) + "\n")
        rc, out, err = run("prefill", tmp_path / "p", "--workers", "2")
        assert rc == 2 and "Traceback" not in err, err
        assert err.strip().splitlines()[-1].startswith("error: ") and needle in err, err
    toml.write_text(text)
    with Project.open(tmp_path / "p") as p:
        assert [r.status for r in p.store.images()] == ["pending"]      # nothing half-written


def test_workers_fork_from_a_plain_cli_process_and_spawn_where_fork_is_unsafe():
    """The command line forks (its workers skip ~0.3 s of imports each); a process that has loaded
    MediaPipe's graph runtime, torch or a second thread must spawn (a forked child of a process
    that ran mp.solutions corrupted its heap and hung, measured)."""
    code = ("import sys, threading, annotator.cli.base, annotator.prefill.estimator as P\n"
            "a = P._start_method()\n"
            "import mediapipe\n"
            "b = P._start_method()\n"
            "del sys.modules['mediapipe']\n"
            "t = threading.Thread(target=threading.Event().wait, args=(5,), daemon=True); t.start()\n"
            "print(a, b, P._start_method())\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["fork", "spawn", "spawn"]


def test_photos_are_scored_during_the_run_and_when_it_is_interrupted(tmp_path, gt_dev, monkeypatch):
    """The review queue's scores are written in batches while pre-fill runs, and a Ctrl+C still
    scores what was saved (a rerun only scores the images it does)."""
    import annotator.prefill.run as pf
    ims = [im for im in gt_dev["images"] if im["source"].startswith("coco")][:45]
    copy_photos(ims, tmp_path / "in")
    proj, _ = Project.create(tmp_path / "p", [tmp_path / "in"])
    seen = []
    real = pf._run_task

    def run_then_interrupt(task):
        if len(seen) == 40:
            raise KeyboardInterrupt
        seen.append(task)
        return real(task)
    monkeypatch.setattr(pf, "_run_task", run_then_interrupt)
    with proj:
        with pytest.raises(KeyboardInterrupt):
            pf.prefill(proj, workers=1, progress=False, tta=False)
        rows = proj.store.db.execute(
            "SELECT i.id, count(p.idx), count(p.suspicion) FROM images i JOIN persons q ON q.image_id=i.id"
            " JOIN points p ON p.person_id=q.id WHERE i.status='done' AND q.deleted=0 GROUP BY i.id").fetchall()
        assert proj.store.db.execute("SELECT count(*) FROM images WHERE status='done'").fetchone()[0] == 40
        assert len(rows) >= 10 and all(n == scored for _, n, scored in rows)     # > one batch, all scored
