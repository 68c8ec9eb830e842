"""CVAT conflicts in the desktop app: which images have them, the server's version, keep local / take server.

A conflict is a person changed both here and on CVAT since the last sync
(recorded by `cvat pull` in cvat_sync's `cvat_conflicts` table). The app
flags those images in the queue, draws the server's skeleton as a ghost next
to ours and settles one person at a time through `CvatSync.resolve`, offline.

Both choices are commands in the session's history, so they are logged and
undoable: "take server" is resolve's own `cvat_pull` replace; "keep local"
logs a `cvat_keep_local` command whose person state is unchanged (its rev
moves, which is what makes the next push send ours). Undo must also bring
the conflict back, otherwise undoing "take server" would leave our old
points with the server's state as the base, and the next push would quietly
overwrite the CVAT user's work. So the sync rows of that person/shape are
snapshotted before and after, and attached to the command (Session.attach):
undo / redo restore them in the same transaction as the points.
No Dear PyGui import (headless, tested without a display).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from annotator.cvat.sync import CvatSync, open_conflicts, person_from_content
from annotator.core.errors import UserError
from annotator.core.model import Person


@dataclass
class Conflict:
    person_id: int
    image_id: int
    kind: str                     # "changed on both sides", "deleted on CVAT, changed here", ...
    cvat_user: str
    server: Person | None         # the server's state (None: deleted on CVAT)
    local_deleted: bool           # deleted here, changed on CVAT

    @property
    def label(self) -> str:
        return f"person {self.person_id}: {self.kind} (CVAT user {self.cvat_user or '?'})"


class ConflictTracker:
    """Reads cvat_conflicts (never creates the sync tables) and resolves through the session."""

    def __init__(self, project):
        self.project = project
        self.store = project.store
        self.actions: set[int] = set()      # resolutions made here: undoing one brings a conflict back

    def _has_tables(self) -> bool:
        return self.store.db.execute("SELECT 1 FROM sqlite_master WHERE name='cvat_conflicts'").fetchone() is not None

    def images(self) -> list[int]:
        """Image ids with an open conflict (a small table: read each time, always current)."""
        return sorted({iid for iid, _ in open_conflicts(self.store).values()})

    def on_image(self, image_id: int | None) -> list[Conflict]:
        if image_id is None or not self._has_tables():
            return []
        out = []
        for pid, kind, server, user in self.store.db.execute(
                "SELECT person_id, kind, server, cvat_user FROM cvat_conflicts WHERE image_id=? ORDER BY person_id",
                (image_id,)):
            sc = json.loads(server) if server else None
            deleted = self.store.db.execute("SELECT deleted FROM persons WHERE id=?", (pid,)).fetchone()
            out.append(Conflict(pid, image_id, kind, user or "", None if sc is None else person_from_content(sc),
                                bool(deleted and deleted[0])))
        return out

    # -- resolve -------------------------------------------------------------------------------------
    def _rows(self, pid: int, sid=None) -> list:
        """The sync rows that a resolution changes: the conflict and the shape mapping(s) of the person/shape
        (sid: the conflict's shape, given once the conflict row is gone)."""
        q = self.store.db.execute
        c = q("SELECT * FROM cvat_conflicts WHERE person_id=?", (pid,)).fetchall()
        sid = c[0][1] if c else sid
        s = q("SELECT * FROM cvat_shapes WHERE person_id=? OR shape_id=?", (pid, sid)).fetchall()
        return [("cvat_conflicts", r) for r in c] + [("cvat_shapes", r) for r in s]

    def resolve(self, session, person_id: int, prefer: str) -> int | None:
        """Settle one conflict; returns the history action id (undoable in `session`)."""
        before = self._rows(person_id)
        if not any(t == "cvat_conflicts" for t, _ in before):
            raise UserError(f"person {person_id} has no open CVAT conflict")
        sid = before[0][1][1]
        n_undo = len(session._undo)
        CvatSync(self.project, None).resolve(person_id, prefer, session=session)
        aid = session._undo[-1] if len(session._undo) > n_undo else None
        if prefer == "local" and self.store.load_person(person_id) is not None:
            # log the decision as a command; the person's state is unchanged, its rev moves (push sends ours)
            aid = session.replace_person(person_id, self.store.load_person(person_id), "cvat_keep_local",
                                         {"shape": sid})
        if aid is not None:
            after = self._rows(person_id, sid)
            session.attach(aid, undo=lambda: self._put(person_id, sid, before),
                           redo=lambda: self._put(person_id, sid, after))
            self.actions.add(aid)
        return aid

    def _put(self, pid: int, sid, rows: list) -> None:
        """The sync rows of this person/shape exactly as snapshotted (inside the undo's transaction)."""
        with self.store.tx():
            self.store.db.execute("DELETE FROM cvat_conflicts WHERE person_id=?", (pid,))
            self.store.db.execute("DELETE FROM cvat_shapes WHERE person_id=? OR shape_id=?", (pid, sid))
            for table, r in rows:
                self.store.db.execute(f"INSERT INTO {table} VALUES({','.join('?' * len(r))})", r)


def ghost_segments(xy: np.ndarray, vis: np.ndarray, edges, dash: float = 6.0, gap: float = 4.0) -> list:
    """Dashed edges of the server's skeleton in screen space: [((x0, y0), (x1, y1)), ...]."""
    out = []
    for a, b in edges:
        if not (vis[a] and vis[b]):
            continue
        p, q = np.asarray(xy[a], float), np.asarray(xy[b], float)
        length = float(np.hypot(*(q - p)))
        if length < 1e-6:
            continue
        u = (q - p) / length
        t = 0.0
        while t < length:
            e = min(t + dash, length)
            out.append((tuple(p + u * t), tuple(p + u * e)))
            t = e + gap
    return out
