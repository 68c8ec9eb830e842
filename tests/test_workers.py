"""The pre-fill's worker processes: every task comes back once, a dead worker is reported and replaced."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from annotator.workers import WorkerDied, Workers

from .conftest import REPO

SPAWN = mp.get_context("spawn")     # fresh children: this test process may hold threads or torch


def square_unless_5(x):
    if x == 5:
        raise ValueError(f"bad task {x}")
    return x * x


def crash_on_3_and_11(task):
    x, pids = task
    Path(pids, str(os.getpid())).touch()
    if x in (3, 11):
        os.kill(os.getpid(), signal.SIGKILL)
    return x + 100


def exit_3():
    os._exit(3)


def quick_then_stuck(x):
    if x:
        time.sleep(120)
    return x


def _collect(pool, tasks):
    try:
        return {t: (ok, res) for t, ok, res in pool.run(tasks)}
    finally:
        pool.close()


def test_every_task_comes_back_once_with_its_result_or_error():
    out = _collect(Workers(2, square_unless_5, context=SPAWN), range(20))
    assert sorted(out) == list(range(20))
    assert all(out[x] == (True, x * x) for x in range(20) if x != 5)
    ok, err = out[5]
    assert not ok and isinstance(err, ValueError) and str(err) == "bad task 5"
    assert "in square_unless_5" in err.__notes__[0]         # where it happened, for a bug report


def test_a_worker_that_dies_loses_only_its_task_and_is_replaced(tmp_path):
    """A native crash (here SIGKILL) in one task: that task comes back as WorkerDied naming the
    signal, the tasks queued behind it on the same worker still run, and so does everything after."""
    out = _collect(Workers(2, crash_on_3_and_11, context=SPAWN, depth=3), [(x, str(tmp_path)) for x in range(16)])
    out = {x: v for (x, _), v in out.items()}
    assert sorted(out) == list(range(16))
    for x in (3, 11):
        ok, err = out[x]
        assert not ok and isinstance(err, WorkerDied) and "killed by signal 9" in str(err)
    assert all(out[x] == (True, x + 100) for x in range(16) if x not in (3, 11))
    assert len(list(tmp_path.iterdir())) == 4           # two workers, each replaced once


def test_workers_that_die_before_finishing_anything_stop_the_run():
    """Not one bad input: every fresh worker dies (here in its initializer), so run() gives up
    with an error instead of replacing them forever."""
    with pytest.raises(WorkerDied, match=r"in a row died without finishing a task \(the last: exit code 3\)"):
        _collect(Workers(2, abs, init=exit_3, context=SPAWN), range(10))


def test_close_ends_workers_still_in_a_task():
    """Ctrl+C or an error in the main process: close() ends the workers that are busy."""
    pool = Workers(2, quick_then_stuck, context=SPAWN)
    procs = [s.proc for s in pool.slots]
    first = next(pool.run(range(6)))
    assert first == (0, True, 0)
    pool.close()
    assert [p.exitcode for p in procs] == [-signal.SIGTERM] * 2


CRASH_ONE = """
import json, os, signal, sys
import annotator.prefill as pf
from annotator.project import Project
victim = sys.argv[2]
real = pf._run_task
def crash_on_victim(task):
    if task.path.endswith(victim):
        os.kill(os.getpid(), signal.SIGSEGV)
    return real(task)
pf._run_task = crash_on_victim          # forked workers inherit it (the CLI's start method)
with Project.open(sys.argv[1]) as proj:
    s = pf.prefill(proj, workers=2, progress=False, tta=False)
    rows = {r.file_name: [r.status, r.error] for r in proj.store.images()}
print(json.dumps({"method": pf._start_method(), "summary": s, "rows": rows}))
"""


def test_prefill_marks_the_photo_of_a_dead_worker_failed_and_goes_on(tmp_path, gt_dev):
    """In a plain process, as the CLI runs it: the photo whose worker crashed is recorded failed
    with the reason, every other photo is done."""
    from annotator.project import Project

    from .test_prefill import copy_photos
    ims = [im for im in gt_dev["images"] if im["source"].startswith("coco")][:6]
    copy_photos(ims, tmp_path / "in")
    Project.create(tmp_path / "p", [tmp_path / "in"])[0].close()
    victim = sorted(p.name for p in (tmp_path / "in").iterdir())[2]
    out = subprocess.run([sys.executable, "-c", CRASH_ONE, str(tmp_path / "p"), victim], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["method"] == "fork"
    assert res["summary"]["done"] == 5 and res["summary"]["failed"] == 1
    rows = {Path(name).name: v for name, v in res["rows"].items()}
    status, error = rows[victim]
    assert status == "failed" and victim in error and "the worker process died (killed by signal 11)" in error
    assert all(st == "done" for name, (st, _) in rows.items() if name != victim)
