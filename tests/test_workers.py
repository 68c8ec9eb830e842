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

from annotator.prefill.workers import WorkerDied, Workers

from tests.conftest import REPO
from tests.test_prefill import _alive

# Both ways a pool starts: the command line forks, the app and tests spawn. The task functions are
# module-level so spawned children can import them; forked ones in this process run only them.
CONTEXTS = [pytest.param(mp.get_context(m), id=m) for m in ("fork", "spawn")]


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


def exit_once(flag):
    """The first worker to start dies in its initializer; the ones after it are fine."""
    try:
        fd = os.open(flag, os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(4)


def answer_then_die(x):
    """Task 4's answer arrives, then its worker dies while the main process hands it more work."""
    if x == 4:
        import threading
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGKILL)).start()
    return x


class PathError(Exception):
    def __init__(self, path, why):
        super().__init__(f"{path}: {why}")


def raise_unpicklable(x):
    raise PathError(f"file{x}.jpg", "too odd")


def quick_then_stuck(x):
    if x:
        time.sleep(120)
    return x


def _collect(pool, tasks):
    try:
        return {t: (ok, res) for t, ok, res in pool.run(tasks)}
    finally:
        pool.close()


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_every_task_comes_back_once_with_its_result_or_error(ctx):
    pool = Workers(2, square_unless_5, context=ctx)
    procs = [s.proc for s in pool.slots]
    out = _collect(pool, range(20))
    assert sorted(out) == list(range(20))
    assert all(out[x] == (True, x * x) for x in range(20) if x != 5)
    ok, err = out[5]
    assert not ok and isinstance(err, ValueError) and str(err) == "bad task 5"
    assert "in square_unless_5" in err.__notes__[0]         # where it happened, for a bug report
    assert [p.exitcode for p in procs] == [0, 0]            # idle workers leave when asked
    with pytest.raises(ValueError, match="closed"):
        next(pool.run(range(3)))


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_a_worker_that_dies_loses_only_its_task_and_is_replaced(tmp_path, ctx):
    """A native crash (here SIGKILL) in one task: that task comes back as WorkerDied naming the
    signal, the tasks queued behind it on the same worker still run, and so does everything after."""
    out = _collect(Workers(2, crash_on_3_and_11, context=ctx, depth=3), [(x, str(tmp_path)) for x in range(16)])
    out = {x: v for (x, _), v in out.items()}
    assert sorted(out) == list(range(16))
    for x in (3, 11):
        ok, err = out[x]
        assert not ok and isinstance(err, WorkerDied) and "killed by signal 9" in str(err)
    assert all(out[x] == (True, x + 100) for x in range(16) if x not in (3, 11))
    assert len(list(tmp_path.iterdir())) == 4           # two workers, each replaced once


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_a_worker_that_dies_in_its_initializer_loses_no_task(tmp_path, ctx):
    out = _collect(Workers(2, square_unless_5, init=exit_once, initargs=(str(tmp_path / "flag"),), context=ctx),
                   range(12))
    assert (tmp_path / "flag").exists()
    assert {x: v for x, v in out.items() if x != 5} == {x: (True, x * x) for x in range(12) if x != 5}


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_workers_that_die_before_finishing_anything_stop_the_run(ctx):
    """Not one bad input: every fresh worker dies (here in its initializer), so run() gives up
    with an error instead of replacing them forever, and blames no task."""
    pool = Workers(2, abs, init=exit_3, context=ctx)
    with pytest.raises(WorkerDied, match=r"in a row died without finishing a task \(the last: exit code 3\)"):
        for _, ok, res in pool.run(range(10)):
            raise AssertionError(f"a task came back: {ok} {res}")
    pool.close()


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_a_worker_that_dies_after_answering_is_no_error_of_the_run(ctx):
    """The main process sends the next task to a worker that has just died: no broken-pipe error,
    every task comes back once, at most the one it held as WorkerDied."""
    pool = Workers(2, answer_then_die, context=ctx, depth=2)
    out = {}
    try:
        for x, ok, res in pool.run(range(12)):
            out[x] = (ok, res)
            time.sleep(0.15)            # busy: task 4's answer waits in the pipe while its worker dies
    finally:
        pool.close()
    assert sorted(out) == list(range(12)) and out[4] == (True, 4)
    lost = [x for x, (ok, res) in out.items() if not ok]
    assert len(lost) <= 1 and all(isinstance(out[x][1], WorkerDied) for x in lost)


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_an_exception_that_does_not_unpickle_comes_back_as_its_text(ctx):
    out = _collect(Workers(1, raise_unpicklable, context=ctx), range(2))
    ok, err = out[1]
    assert not ok and isinstance(err, RuntimeError) and str(err) == "PathError: file1.jpg: too odd"
    assert "in raise_unpicklable" in err.__notes__[0]


def test_close_ends_workers_still_in_a_task():
    """Ctrl+C or an error in the main process: close() ends the workers that are busy."""
    pool = Workers(2, quick_then_stuck, context=mp.get_context("spawn"))
    procs = [s.proc for s in pool.slots]
    first = next(pool.run(range(6)))
    assert first == (0, True, 0)
    pool.close()
    assert [p.exitcode for p in procs] == [-signal.SIGTERM] * 2


KILLED_MID_SEND = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
import multiprocessing as mp
from annotator.prefill.workers import Workers
from tests.test_workers import big_answer
pool = Workers(2, big_answer, context=mp.get_context("fork"))
print(" ".join(str(s.proc.pid) for s in pool.slots), flush=True)
for _ in pool.run(range(8)):
    time.sleep(60)          # busy: the workers' next answers (8 MB each) fill their pipes
"""


def big_answer(x):
    return b"x" * (8 << 20)


def test_workers_leave_when_the_main_process_is_killed_while_they_send():
    """The main process killed while the workers block sending a large answer (forked workers
    hold copies of the pipes' ends, so no pipe error would ever come): they are gone at once."""
    proc = subprocess.Popen([sys.executable, "-c", KILLED_MID_SEND, str(REPO)], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in proc.stdout.readline().split()]
    time.sleep(2)
    assert all(Path(f"/proc/{p}").exists() for p in pids)
    proc.kill()
    proc.wait()
    deadline = time.time() + 10
    while any(_alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.1)
    left = [p for p in pids if _alive(p)]
    for p in left:                      # not to leave them behind when this fails
        os.kill(p, signal.SIGKILL)
    assert not left, "workers outlived the killed main process"


CRASH_ONE = """
import json, os, signal, sys
import annotator.prefill.run as pf
from annotator.core.project import Project
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
    pf._run_task = real
    again = pf.prefill(proj, workers=2, progress=False, tta=False)
    retried = pf.prefill(proj, workers=2, progress=False, tta=False, retry_failed=True)
    after = {r.file_name: r.status for r in proj.store.images()}
from annotator.prefill import estimator
print(json.dumps({"method": estimator._start_method(), "summary": s, "rows": rows, "again": again["images"],
                  "retried": retried["done"], "after": after}))
"""


def test_prefill_marks_the_photo_of_a_dead_worker_failed_and_goes_on(tmp_path, gt_dev):
    """In a plain process, as the CLI runs it: the photo whose worker crashed is recorded failed
    with the reason, every other photo is done; `--retry-failed` (and only it) tries it again."""
    from annotator.core.project import Project

    from tests.test_prefill import copy_photos
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
    assert res["again"] == 0                        # a plain rerun leaves the failed photo alone
    assert res["retried"] == 1 and set(res["after"].values()) == {"done"}      # --retry-failed does it
