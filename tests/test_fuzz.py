"""Bad input never crashes, never half-imports, never poisons a project (issue 14).

The generated cases live in tests/fuzz_cases.py: seeded, a few hundred through the real CLI in
this process (the same main() a user runs; exit code, stderr and any escaped exception are what
the user would see), a sample of them again in real subprocesses, thousands under `-m fuzz`.
Then two imports at once, and kill -9 in the middle of an import's write.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import fuzz_cases as F
from tests.conftest import REPO

pytestmark = pytest.mark.needs_data


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory) -> Path:
    return F.build_base(tmp_path_factory.mktemp("fuzz") / "root")


def _report(outs) -> str:
    bad = [o for o in outs if o.problems]
    return "\n".join(f"{o.case.category} #{o.case.seed} [{o.case.what}]: {o.problems}" for o in bad[:20])


def _run(root: Path, n: int, seed: int, runner=F.cli, timeout: float = F.TIMEOUT, pick=None):
    outs = []
    for i, (cat, s) in enumerate(F.cases(n, seed)):
        if pick is not None and not pick(i, cat):
            continue
        work = root / f"case{seed}-{i}"
        for d in (work, work.with_name(work.name + "-p")):
            shutil.rmtree(d, ignore_errors=True)
        work.mkdir()
        outs.append(F.run_case(F.make_case(cat, s, root, work), runner, timeout))
        for d in (work, work.with_name(work.name + "-p")):
            shutil.rmtree(d, ignore_errors=True)
    return outs


def test_generated_bad_inputs_in_process(fuzz_root):
    outs = _run(fuzz_root, 300, seed=0)
    assert {o.case.category for o in outs} == set(F.CATEGORIES)
    assert not any(o.problems for o in outs), _report(outs)


def test_a_sample_through_real_subprocesses(fuzz_root):
    """What the in-process runs see is what a user's shell sees: one of each kind, as `python -m annotator`."""
    first: dict[str, int] = {}

    def pick(i, cat):
        if cat in first:
            return False
        first[cat] = i
        return True
    outs = _run(fuzz_root, 60, seed=3, runner=F.cli_subprocess, timeout=120, pick=pick)
    assert len(outs) == len(F.CATEGORIES)
    assert not any(o.problems for o in outs), _report(outs)


@pytest.mark.fuzz
def test_thousands_of_generated_bad_inputs(fuzz_root):
    outs = _run(fuzz_root, int(os.environ.get("FUZZ_CASES", 3000)), seed=int(os.environ.get("FUZZ_SEED", 1)))
    assert not any(o.problems for o in outs), _report(outs)


def test_the_fuzz_checks_can_fail(fuzz_root, tmp_path, monkeypatch):
    """The runner sees a traceback, a second stderr line, a hang and a changed verified point."""
    work = fuzz_root / "selfcheck"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(work.with_name("selfcheck-p"), ignore_errors=True)
    work.mkdir()
    c = F.make_case("coco", 7, fuzz_root, work)
    db = Path(c.commands[0][1]) / "project.db"

    def crash(argv, *timeout):
        return 1, "", "Traceback (most recent call last):\n  x\nValueError: boom\n", "ValueError: boom"

    def two_lines(argv, *timeout):
        return 2, "", "error: one\nerror: two\n", None

    def changes_points(argv, *timeout):
        con = sqlite3.connect(db)
        con.execute("UPDATE points SET x = x + 1 WHERE verified = 1")
        con.commit()
        con.close()
        return 2, "", "error: refused\n", None

    def hangs(argv, *timeout):
        raise subprocess.TimeoutExpired(argv, 0.5)
        return 0, "", "", None
    assert ("traceback" in {k for k, _ in F.run_case(c, crash).problems})
    assert ("not one line" in {k for k, _ in F.run_case(c, two_lines).problems})
    assert ("verified points changed" in {k for k, _ in F.run_case(c, changes_points).problems})
    assert ("hang" in {k for k, _ in F.run_case(c, hangs, timeout=0.5).problems})


# -- two writers, kill -9 ---------------------------------------------------------------------------

def _cli(*args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "annotator", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _state(db: Path):
    """Every live person's points, in a form two projects can be compared by (ids aside)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT q.image_id, p.person_id, p.idx, quote(p.x), quote(p.y), p.vis, p.verified, p.source"
                           " FROM points p JOIN persons q ON q.id = p.person_id WHERE q.deleted = 0"
                           " ORDER BY q.image_id, p.person_id, p.idx").fetchall()
    finally:
        con.close()
    people: dict = {}
    for img, pid, *pt in rows:
        people.setdefault((img, pid), []).append(tuple(pt))
    return sorted((img, tuple(pts)) for (img, _), pts in people.items())


def _gt_file(root: Path, tmp: Path, one_point_people: int = 2) -> Path:
    """The ground truth of the 3 photos plus people with one labelled point (which OKS cannot match)."""
    gt = json.loads((root / "seed17.json").read_text())
    for k in range(one_point_people):
        kp = [0, 0, 0] * 17
        kp[3 * k:3 * k + 3] = [10.5 + k, 20.25, 2]
        gt["annotations"].append({"id": 900 + k, "image_id": gt["images"][0]["id"], "category_id": 1,
                                  "keypoints": kp})
    f = tmp / "gt.json"
    f.write_text(json.dumps(gt))
    return f


def _fresh(root: Path, dst: Path) -> Path:
    """A project of the 3 photos with nothing imported (beside base/, so its ../imgs paths hold)."""
    shutil.rmtree(dst, ignore_errors=True)
    rc, out, err, tb = F.cli(["init", dst, "--images", root / "imgs"])
    assert rc == 0, err
    return dst


def test_two_imports_at_once_equal_one_after_the_other(fuzz_root, tmp_path):
    gt = _gt_file(fuzz_root, tmp_path)
    seq = _fresh(fuzz_root, fuzz_root / "conc-seq")
    for _ in range(2):
        p = _cli("import", seq, gt)
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    par = _fresh(fuzz_root, fuzz_root / "conc-par")
    # Both imports start while a third connection holds the write lock, so both are past opening
    # the project when it is released: matching before the write transaction would add everyone twice.
    con = sqlite3.connect(par / "project.db", isolation_level=None, timeout=30)
    con.execute("BEGIN IMMEDIATE")
    procs = [_cli("import", par, gt) for _ in range(2)]
    time.sleep(4)
    assert all(p.poll() is None for p in procs), "an import did not wait for the write lock"
    con.execute("COMMIT")
    con.close()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert _state(par / "project.db") == _state(seq / "project.db")
    n_gt = sum(1 for a in json.loads(gt.read_text())["annotations"] if any(a["keypoints"][2::3]))
    assert len(_state(par / "project.db")) == n_gt       # nobody twice, 0-point annotations skipped


def _many_images(root: Path, n: int = 120) -> Path:
    """A project of n copies of a photo (so a big import has a realistic number of people per image;
    the review queue's crowd signals are quadratic in people per image), with a few verified people."""
    src = next((root / "imgs").rglob("*.jpg"))
    d = root / "kimgs"
    if not d.exists():
        d.mkdir()
        for k in range(n):
            shutil.copy(src, d / f"k{k:03d}.jpg")
    proj = root / "kbase"
    if not (proj / "project.db").exists():
        assert F.cli(["init", proj, "--images", d])[0] == 0
        w, h = 640, 426
        seedf = root / "kseed.json"
        seedf.write_text(json.dumps({
            "images": [{"id": 1, "file_name": "../kimgs/k000.jpg", "width": w, "height": h}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "keypoints": sum(([100.0 + j, 50.0 + 7 * j, 2] for j in range(17)), [])}],
            "categories": json.loads((root / "seed17.json").read_text())["categories"]}))
        rc, out, err, tb = F.cli(["import", proj, seedf])
        assert rc == 0, err
    return proj


def _big_file(root: Path, tmp: Path, n: int, n_images: int = 120) -> Path:
    gt = json.loads((root / "seed17.json").read_text())
    rng = random.Random(1)
    ims = [{"id": k + 1, "file_name": f"../kimgs/k{k:03d}.jpg", "width": 640, "height": 426} for k in range(n_images)]
    anns = []
    for k in range(n):
        im = ims[k % n_images]
        kp = []
        for _ in range(17):
            kp += [round(rng.uniform(0, im["width"]), 2), round(rng.uniform(0, im["height"]), 2), 2]
        anns.append({"id": k + 1, "image_id": im["id"], "category_id": 1, "keypoints": kp})
    f = tmp / "big.json"
    f.write_text(json.dumps({"images": ims, "annotations": anns, "categories": gt["categories"]}))
    return f


def test_kill_9_in_the_middle_of_an_import_changes_nothing(fuzz_root, tmp_path):
    """The import's one transaction is killed while it is writing (its pages are reaching the WAL):
    the project is as before, or (had the commit won the race) exactly as after a full import."""
    base = _many_images(fuzz_root)
    big = _big_file(fuzz_root, tmp_path, 1500)
    full = fuzz_root / "kill-full"
    shutil.rmtree(full, ignore_errors=True)
    shutil.copytree(base, full)
    p = _cli("import", full, big)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    after = _state(full / "project.db")
    before = _state(base / "project.db")
    assert len(after) > len(before) + 1400
    outcomes = []
    for attempt in range(2):
        proj = fuzz_root / f"kill-{attempt}"
        shutil.rmtree(proj, ignore_errors=True)
        shutil.copytree(base, proj)
        wal = proj / "project.db-wal"
        p = _cli("import", proj, big)
        start = None
        t0 = time.time()
        while p.poll() is None and time.time() - t0 < 120:
            size = wal.stat().st_size if wal.exists() else 0
            start = size if start is None else start
            if size > start + (256 << 10) * (2 * attempt + 1):   # the write is under way: 256 KB, 768 KB into it
                break
            time.sleep(0.005)
        killed = p.poll() is None
        p.send_signal(signal.SIGKILL)
        p.communicate()
        assert F.integrity(proj / "project.db") == "ok"
        state = _state(proj / "project.db")
        assert state in (before, after)
        outcomes.append((killed, state == before, round(time.time() - t0, 2)))
        rc, out, err, tb = F.cli(["status", proj])       # and the project opens and works
        assert rc == 0 and tb is None, err
    assert any(killed and untouched for killed, untouched, _ in outcomes), outcomes


def _png_header(w: int, h: int) -> bytes:
    import struct
    import zlib

    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_prefill_records_a_bomb_and_a_fifo_failed_and_goes_on(fuzz_root, tmp_path):
    """Files that turned bad after `init` (a PNG header claiming 100000 x 100000, a FIFO where a photo
    was) reach the pre-fill workers: each is recorded failed with a human reason, the other photo is
    done, and `--retry-failed` meets them again without stopping."""
    imgs = tmp_path / "imgs"
    shutil.copytree(fuzz_root / "imgs", imgs)
    rc, out, err, tb = F.cli(["init", tmp_path / "p", "--images", imgs])
    assert rc == 0, err
    photos = sorted(imgs.rglob("*.jpg"))
    photos[0].write_bytes(_png_header(100000, 100000))
    photos[1].unlink()
    os.mkfifo(photos[1])
    p = _cli("prefill", tmp_path / "p", "--workers", "2", "--no-tta", "--quiet")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0 and "Traceback" not in err, err
    assert "2 failed" in out and "pre-filled 1 images" in out, out
    # --retry-failed tries only those two, and both fail again: every image it tried failed, exit 2
    p = _cli("prefill", tmp_path / "p", "--workers", "2", "--no-tta", "--quiet", "--retry-failed")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 2 and "Traceback" not in err, err
    assert err.strip().startswith("error: pre-fill failed on all 2 images") and err.count("\n") == 1, err
    rc, out, err, tb = F.cli(["status", tmp_path / "p", "--json"])
    failed = dict(json.loads(out)["failures"])
    assert len(failed) == 2
    reasons = " | ".join(failed.values())
    assert "image too large: 100000 x 100000" in reasons and "is a FIFO (named pipe), not a regular file" in reasons, reasons
    assert "0x" not in reasons and "BytesIO" not in reasons


def test_an_interrupted_prefill_force_is_resumed_by_prefill(fuzz_root, tmp_path, monkeypatch):
    """`prefill --force` stopped after one image (Ctrl+C, kill): the images it had not redone yet are
    pending, so the next plain `prefill` redoes them instead of keeping the old predictions."""
    import annotator.prefill.run as pf
    from annotator.core.commands import Session
    from annotator.core.project import Project
    rc, out, err, tb = F.cli(["init", tmp_path / "p", "--images", fuzz_root / "imgs"])
    assert rc == 0, err
    with Project.open(tmp_path / "p") as proj:
        assert pf.prefill(proj, workers=1, progress=False, tta=False)["done"] == 3
        real, calls = Session.set_predictions, []

        def stop_after_one(self, *a, **kw):
            if calls:
                raise KeyboardInterrupt
            calls.append(1)
            return real(self, *a, **kw)
        monkeypatch.setattr(Session, "set_predictions", stop_after_one)
        with pytest.raises(KeyboardInterrupt):
            pf.prefill(proj, workers=1, progress=False, tta=False, force=True)
        monkeypatch.setattr(Session, "set_predictions", real)
        assert proj.store.counts().get("images_pending") == 2
        assert pf.prefill(proj, workers=1, progress=False, tta=False)["done"] == 2
        assert proj.store.counts().get("images_done") == 3


@pytest.mark.parametrize("bad", ["nan", "inf", "huge", "conf", "points"])
def test_the_store_refuses_what_no_reader_should_let_through(fuzz_root, tmp_path, bad):
    """The last line of defence: whatever the caller, a non-finite or absurd person is not written
    (the transaction rolls back) and the project is as it was."""
    import numpy as np

    from annotator.core.errors import UserError
    from annotator.core.model import Person
    from annotator.core.project import Project
    proj_dir = tmp_path / "p"
    shutil.copytree(fuzz_root / "base", proj_dir)
    before = F.verified_points(proj_dir / "project.db")
    with Project.open(proj_dir) as proj:
        s = proj.session("tester")
        img = proj.store.images()[0].id
        pid = proj.store.person_ids(img)[0]
        p = proj.store.load_person(pid)
        if bad == "nan":
            p.xy[0, 0] = np.nan
        elif bad == "inf":
            p.xy[5, 1] = np.inf
        elif bad == "huge":
            p.xy[3, 0] = 1e308
        elif bad == "conf":
            p.conf[2] = 7.0
        if bad == "points":
            con = proj.store.db
            con.execute("DELETE FROM points WHERE person_id=? AND idx>=10", (pid,))
            with pytest.raises(UserError, match="damaged project database: person .* has 10 points"):
                proj.store.load_frame(img)
            return
        with pytest.raises(UserError, match="refusing to store person"):
            s.replace_person(pid, p)
        with pytest.raises(UserError, match="refusing to store person"):
            s.add_person(img, p)
    assert F.verified_points(proj_dir / "project.db") == before
