"""Worker processes that run fn(task) for the main process, results as they finish (pre-fill's pool).

Why not multiprocessing.Pool:
- Its worker-handler thread waits on the result pipe too, so it wakes up for every result the
  result-handler thread has not read yet. Measured in a 169-photo pre-fill on 2 cores: ~12,000
  wake-ups and 0.10-0.17 s of CPU, taken from the workers that need every cycle.
- A worker that dies (a native crash, the OOM killer) is replaced without a word and its task's
  result never comes: the pre-fill would wait forever.

Here the main thread itself waits on the workers' pipes and exit sentinels. There are no helper
threads. A dead worker's task comes back as `WorkerDied` and a fresh worker takes its place.
Tasks must be small (a few KB: the main process sends the next one while a worker may be sending
a large result); results may be any size.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import pickle
import signal
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait

MAX_DEATHS_IN_A_ROW = 3     # workers that die before finishing anything: the cause is not one bad input
READY = "ready"             # a worker's first message: its initializer is done, what dies after is a task's


class WorkerDied(Exception):
    """The worker process ended while it held this task (exit code or signal in the message)."""


def _die_with(main_pid: int | None) -> None:
    """Linux: the kernel kills this worker when the main process dies, even mid-send of a large
    result. (The signal comes when the thread that started the worker ends: start workers from
    the main thread, or from a thread that outlives them.)"""
    if main_pid is None:
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)      # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != main_pid:        # it died before the call
        os._exit(0)


def _portable(e: Exception) -> Exception:
    """The exception as the main process will get it: one that does not survive pickling (a lock
    inside, an __init__ with other arguments) becomes a RuntimeError with its text and notes."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:                   # noqa: BLE001 - any failure to round-trip
        out = RuntimeError(f"{type(e).__name__}: {e}")
        for note in getattr(e, "__notes__", ()):
            out.add_note(note)
        return out


def _serve(conn, fn, init, initargs, main_pid: int | None, inherited=()) -> None:
    """A worker: init once, say READY, then answer every task with (True, result) or (False,
    exception). It leaves when the main process is gone, killed or not."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl+C is the main process's to handle
    _die_with(main_pid)
    for c in inherited:                 # forked: the main's ends of the pipes, so EOF means it left
        c.close()
    if init is not None:
        init(*initargs)
    try:
        conn.send(READY)
        while True:
            while not conn.poll(1.0):
                if main_pid is not None and os.getppid() != main_pid:
                    return
            task = conn.recv()
            if task is None:
                return
            try:
                out = (True, fn(task))
            except Exception as e:      # noqa: BLE001 - the task's outcome, raised in the main process
                e.add_note("in the worker process:\n" + traceback.format_exc().rstrip())
                out = (False, _portable(e))
            conn.send(out)
    except (OSError, EOFError):         # the main process is gone
        return


@dataclass(eq=False)
class _Slot:
    proc: mp.process.BaseProcess
    conn: object
    pending: deque = field(default_factory=deque)
    ready: bool = False


class Workers:
    """n processes of `context`; `run(tasks)` yields (task, ok, result or exception) as tasks finish.

    Each worker holds up to `depth` tasks, so it starts the next one while the main process
    handles the result of the last.
    """

    def __init__(self, n: int, fn: Callable, init: Callable | None = None, initargs: tuple = (),
                 context=None, depth: int = 2):
        self.ctx = context or mp.get_context()
        self.fn, self.init, self.initargs = fn, init, initargs
        self.depth = max(1, int(depth))
        self.slots: list[_Slot] = []
        self.closed = False
        self.deaths_in_a_row = 0
        for _ in range(max(1, int(n))):
            self.slots.append(self._start())

    def _start(self) -> _Slot:
        parent, child = self.ctx.Pipe()
        method = self.ctx.get_start_method()
        inherited = [parent, *(s.conn for s in self.slots)] if method == "fork" else []
        main_pid = os.getpid() if method in ("fork", "spawn") else None    # forkserver: not our child
        proc = self.ctx.Process(target=_serve, args=(child, self.fn, self.init, self.initargs, main_pid, inherited),
                                daemon=True)
        proc.start()
        child.close()
        return _Slot(proc, parent)

    @staticmethod
    def _send(slot: _Slot, task) -> None:
        """Hand a task over; a worker that died meanwhile keeps it pending and is found by its exit."""
        slot.pending.append(task)
        try:
            slot.conn.send(task)
        except OSError:
            pass

    def run(self, tasks: Iterable) -> Iterator[tuple[object, bool, object]]:
        if self.closed:
            raise ValueError("these workers are closed")
        todo = iter(tasks)
        end = object()

        def feed(slot: _Slot) -> None:
            while len(slot.pending) < self.depth:
                task = next(todo, end)
                if task is end:
                    return
                self._send(slot, task)

        for s in self.slots:
            feed(s)
        while any(s.pending for s in self.slots):
            owner = {}
            for s in self.slots:
                if s.pending:
                    owner[s.conn] = s
                    owner[s.proc.sentinel] = s
            for ready in wait(list(owner)):
                slot = owner[ready]
                if slot not in self.slots or not slot.pending:
                    continue            # replaced, or its result was taken through the other handle
                msg = None
                if slot.conn.poll():    # a message (a worker that sent it and then died still counts)
                    try:
                        msg = slot.conn.recv()
                    except (EOFError, OSError):
                        msg = None
                    except Exception as e:      # noqa: BLE001 - a result that does not unpickle here
                        msg = (False, RuntimeError(f"the worker's answer could not be read: {type(e).__name__}: {e}"))
                if msg == READY:
                    slot.ready = True
                    continue
                if msg is not None:
                    self.deaths_in_a_row = 0
                    task = slot.pending.popleft()
                    feed(slot)
                    yield (task, *msg)
                    if self.closed:
                        raise ValueError("these workers were closed while running")
                    continue
                if slot.proc.is_alive() and ready is slot.conn:
                    continue
                slot.proc.join()
                yield from self._replace(slot, feed)

    def _replace(self, slot: _Slot, feed) -> Iterator[tuple[object, bool, object]]:
        code = slot.proc.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        self.deaths_in_a_row += 1
        lost = list(slot.pending)
        slot.pending.clear()
        slot.conn.close()
        if self.deaths_in_a_row > MAX_DEATHS_IN_A_ROW:
            raise WorkerDied(f"{self.deaths_in_a_row} worker processes in a row died without finishing a task "
                             f"(the last: {how})")
        self.slots[self.slots.index(slot)] = fresh = self._start()
        # A worker that was past its initializer died on the task it was running: that one comes
        # back as lost. One that died before (in its initializer) blames nothing: all go to the new one.
        first, rest = (lost[:1], lost[1:]) if slot.ready else ([], lost)
        for task in rest:
            self._send(fresh, task)
        feed(fresh)
        for task in first:
            yield task, False, WorkerDied(f"the worker process died ({how})")

    def close(self) -> None:
        """Stop the workers: politely when idle, by force when not (Ctrl+C, an error)."""
        self.closed = True
        for s in self.slots:
            if not s.pending:
                try:
                    s.conn.send(None)
                except OSError:
                    pass
        for s in self.slots:
            if s.pending:
                s.proc.terminate()
            s.proc.join(timeout=5)
            if s.proc.is_alive():
                s.proc.kill()
                s.proc.join()
            s.conn.close()
        self.slots = []


def results(done: Iterator[tuple[object, bool, object]], lost: Callable[[object, WorkerDied], object],
            what: str) -> Iterator:
    """run()'s outcomes as the callers use them: a task's result; `lost(task, error)` for a task
    whose worker died (e.g. its image is recorded failed); a task's exception raised here; workers
    that keep dying stop `what` with one line."""
    from annotator.core.errors import UserError
    try:
        for task, ok, res in done:
            if ok:
                yield res
            elif isinstance(res, WorkerDied):
                yield lost(task, res)
            else:
                raise res
    except WorkerDied as e:
        raise UserError(f"{what} stopped: {e}") from None
