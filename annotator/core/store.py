"""The project database: one SQLite file, WAL, foreign keys, versioned schema.

Why SQLite: a single file that survives `kill -9` (every write is one
transaction, WAL journal), opens instantly at 100,000 images (nothing is
loaded up front) and needs no server. Points are rows (person, index) so the
review queue can sort them in SQL; every change of a person is an append-only
history entry holding the person's state before and after, which is what
makes undo, redo and audit work for any command.
"""
from __future__ import annotations

import json
import sqlite3
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.model import Frame, Person, check_person

SCHEMA_VERSION = 2
# kv key (+ image id) of the crowd regions of an image: [[x, y, w, h], ...]
KV_CROWD_REGIONS = "review.crowd_regions:"

_SCHEMA_V1 = """
CREATE TABLE sources (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,          -- relative to the project folder
    kind TEXT NOT NULL CHECK (kind IN ('image', 'video')),
    sha1 TEXT, size_bytes INTEGER,
    n_frames INTEGER, fps REAL,
    added_at REAL NOT NULL
);
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    source_id INTEGER NOT NULL REFERENCES sources(id),
    frame_index INTEGER,                -- NULL for photos
    file_name TEXT NOT NULL UNIQUE,     -- name used for matching / export
    width INTEGER, height INTEGER,
    orientation INTEGER DEFAULT 1,      -- EXIF orientation, already applied to width/height
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    error TEXT,
    prefill_run INTEGER REFERENCES runs(id),
    review_state TEXT NOT NULL DEFAULT 'to_review'
        CHECK (review_state IN ('to_review', 'in_progress', 'verified'))
);
CREATE INDEX images_source ON images(source_id, frame_index);
CREATE TABLE runs (                     -- a pre-fill / prediction run: model + settings
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL, model TEXT NOT NULL, settings TEXT NOT NULL,
    started_at REAL NOT NULL, finished_at REAL
);
CREATE TABLE persons (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id),
    deleted INTEGER NOT NULL DEFAULT 0,
    score REAL, track_id INTEGER,
    rev INTEGER NOT NULL DEFAULT 0,     -- bumped on every change (sync compares it)
    created_at REAL NOT NULL
);
CREATE INDEX persons_image ON persons(image_id);
CREATE TABLE points (
    person_id INTEGER NOT NULL REFERENCES persons(id),
    idx INTEGER NOT NULL CHECK (idx BETWEEN 0 AND 32),
    x REAL NOT NULL, y REAL NOT NULL,
    vis INTEGER NOT NULL CHECK (vis IN (0, 1, 2)),
    conf REAL,
    verified INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL,
    suspicion REAL,
    PRIMARY KEY (person_id, idx)
) WITHOUT ROWID;
CREATE TABLE actions (                  -- append-only log of every command
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL, session TEXT, actor TEXT NOT NULL,
    command TEXT NOT NULL, args TEXT,
    undo_of INTEGER REFERENCES actions(id),
    redo_of INTEGER REFERENCES actions(id)
);
CREATE TABLE changes (                  -- per-person before/after state of an action
    action_id INTEGER NOT NULL REFERENCES actions(id),
    person_id INTEGER NOT NULL REFERENCES persons(id),
    before BLOB, after BLOB             -- zlib(JSON Person) or NULL (= absent/deleted)
);
CREATE INDEX changes_person ON changes(person_id);
CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT);
"""

# v2: the model's own prediction is kept beside the current point, so the
# distance between what the model said and what a human verified is known
# (calibration data for suspicion scores, and a measure of review effort).
_MIGRATIONS = {
    2: """
ALTER TABLE points ADD COLUMN pred_x REAL;
ALTER TABLE points ADD COLUMN pred_y REAL;
""",
}


def _columns() -> dict[str, set[str]]:
    """Tables and columns of the current schema (built once in memory: exact, ~1 ms)."""
    db = sqlite3.connect(":memory:")
    try:
        for stmt in (_SCHEMA_V1 + ";" + ";".join(_MIGRATIONS.values())).split(";"):
            if stmt.strip():
                db.execute(stmt)
        return {t: {r[1] for r in db.execute(f"PRAGMA table_info({t})")}
                for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()}
    finally:
        db.close()


_REQUIRED = _columns()
def _pack(p: Person | None) -> bytes | None:
    return None if p is None else zlib.compress(json.dumps(p.to_json()).encode())


def _unpack(b: bytes | None, id: int | None = None) -> Person | None:
    return None if b is None else Person.from_json(json.loads(zlib.decompress(b)), id=id)


@dataclass
class ImageRow:
    """Cheap per-image summary (no points) for lists and queues."""
    id: int
    file_name: str
    source_path: str
    kind: str
    frame_index: int | None
    width: int | None
    height: int | None
    status: str
    error: str | None
    review_state: str


class Store:
    """Connection to one project database. Not thread-safe; one per process."""

    def __init__(self, path: Path | str, create: bool = False, readonly: bool = False):
        """readonly: a connection that cannot write (SQLite `mode=ro`), for viewers next to a running
        app; it reads committed data only (WAL) and never migrates."""
        self.path = Path(path)
        self.readonly = readonly
        if (readonly or not create) and not self.path.exists():
            raise UserError(f"{self.path}: project database not found")
        if self.path.exists() and not self.path.is_file():     # a folder, a FIFO, /dev/zero: never opened
            raise UserError(f"{self.path}: not a regular file, so not a project database")
        if readonly:
            self._open_readonly()
            return
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise UserError(f"{self.path}: not a valid project database ({e})") from None

    def _open_readonly(self) -> None:
        from urllib.parse import quote
        try:
            self.db = sqlite3.connect(f"file:{quote(str(self.path.resolve()))}?mode=ro", uri=True,
                                      isolation_level=None, timeout=30)
            self.db.execute("PRAGMA query_only=ON")
            v = self._version()
        except sqlite3.DatabaseError as e:
            raise UserError(f"{self.path}: cannot open the project database read-only ({e})") from None
        if v == 0:
            raise UserError(f"{self.path}: an SQLite file that is not a pose-annotator project")
        if v > SCHEMA_VERSION:
            raise UserError(f"{self.path}: made by a newer pose-annotator (schema {v}, this one reads up to "
                            f"{SCHEMA_VERSION}); upgrade pose-annotator")

    # -- schema -----------------------------------------------------------
    def _version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        v = self._version()
        if v < 0:
            raise UserError(f"{self.path}: not a pose-annotator project database (schema version {v})")
        if v > SCHEMA_VERSION:
            raise UserError(
                f"{self.path}: made by a newer pose-annotator (schema {v}, this one reads up to "
                f"{SCHEMA_VERSION}); upgrade pose-annotator")
        if v == SCHEMA_VERSION:
            self._check_tables()
            return
        with self.tx():
            if v == 0:
                # statements one by one: executescript() would commit mid-migration
                tables = self.db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
                if tables:
                    raise UserError(f"{self.path}: an SQLite file that is not a pose-annotator project")
                for stmt in _SCHEMA_V1.split(";"):
                    if stmt.strip():
                        self.db.execute(stmt)
                v = 1
            for target in range(v + 1, SCHEMA_VERSION + 1):
                for stmt in _MIGRATIONS[target].split(";"):
                    if stmt.strip():
                        self.db.execute(stmt)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._check_tables()

    def _check_tables(self) -> None:
        """Every table and column the code reads is there (a damaged or hand-edited file fails here,
        in one line, not later in a query)."""
        have: dict[str, set[str]] = {}
        for (t,) in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            have[t] = {r[1] for r in self.db.execute(f"PRAGMA table_info({t})")}
        for t, cols in _REQUIRED.items():
            if t not in have:
                raise UserError(f"{self.path}: damaged project database: table '{t}' is missing")
            if not cols <= have[t]:
                raise UserError(f"{self.path}: damaged project database: table '{t}' lacks column(s) "
                                f"{', '.join(sorted(cols - have[t]))}")

    def close(self) -> None:
        self.db.close()

    # -- transactions -----------------------------------------------------
    class _Tx:
        def __init__(self, db: sqlite3.Connection):
            self.db = db

        def __enter__(self):
            if self.db.in_transaction:
                self.nested = True
                return self.db
            self.nested = False
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, et, ev, tb):
            if self.nested:
                return False
            if et is None:
                self.db.execute("COMMIT")
            else:
                self.db.execute("ROLLBACK")
            return False

    def tx(self) -> "Store._Tx":
        """One atomic write: all of it lands or none of it does."""
        return Store._Tx(self.db)

    # -- key/value --------------------------------------------------------
    def get_kv(self, key: str, default=None):
        r = self.db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return default if r is None else json.loads(r[0])

    def set_kv(self, key: str, value) -> None:
        with self.tx():
            self.db.execute("INSERT INTO kv(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                            (key, json.dumps(value)))

    # -- sources and images -----------------------------------------------
    def add_source(self, path: str, kind: str, sha1: str | None, size_bytes: int | None,
                   n_frames: int | None = None, fps: float | None = None) -> tuple[int, bool]:
        """Returns (source id, created)."""
        r = self.db.execute("SELECT id FROM sources WHERE path=?", (path,)).fetchone()
        if r:
            return r[0], False
        cur = self.db.execute(
            "INSERT INTO sources(path, kind, sha1, size_bytes, n_frames, fps, added_at) VALUES(?,?,?,?,?,?,?)",
            (path, kind, sha1, size_bytes, n_frames, fps, time.time()))
        return cur.lastrowid, True

    def add_image(self, source_id: int, file_name: str, width: int | None, height: int | None,
                  frame_index: int | None = None, orientation: int = 1,
                  status: str = "pending", error: str | None = None) -> int:
        cur = self.db.execute(
            "INSERT INTO images(source_id, frame_index, file_name, width, height, orientation, status, error)"
            " VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(file_name) DO NOTHING",
            (source_id, frame_index, file_name, width, height, orientation, status, error))
        if cur.rowcount == 0:
            return self.db.execute("SELECT id FROM images WHERE file_name=?", (file_name,)).fetchone()[0]
        return cur.lastrowid

    _IMG_SQL = ("SELECT i.id, i.file_name, s.path, s.kind, i.frame_index, i.width, i.height, i.status,"
                " i.error, i.review_state FROM images i JOIN sources s ON s.id = i.source_id")

    def _row(self, r) -> ImageRow:
        """An image row, or a one-line UserError when its sizes or frame index are not integers."""
        for v, what in ((r[4], "frame index"), (r[5], "width"), (r[6], "height")):
            if v is not None and (not isinstance(v, int) or not 0 <= v < 2 ** 31):
                raise UserError(f"{self.path}: damaged project database: image {r[1]!r} has {what} {v!r}")
        return ImageRow(*r)

    def images(self, where: str = "", args: tuple = ()) -> list[ImageRow]:
        sql = self._IMG_SQL + (f" WHERE {where}" if where else "") + " ORDER BY s.path, i.frame_index, i.id"
        return [self._row(r) for r in self.db.execute(sql, args)]

    def image(self, image_id: int) -> ImageRow:
        r = self.db.execute(self._IMG_SQL + " WHERE i.id=?", (image_id,)).fetchone()
        if r is None:
            raise KeyError(f"no image {image_id}")
        return self._row(r)

    def image_by_name(self, file_name: str) -> ImageRow | None:
        r = self.db.execute(self._IMG_SQL + " WHERE i.file_name=?", (file_name,)).fetchone()
        return None if r is None else self._row(r)

    def count_images(self) -> int:
        return self.db.execute("SELECT count(*) FROM images").fetchone()[0]

    def set_image_status(self, image_id: int, status: str, error: str | None = None,
                         run_id: int | None = None, size: tuple[int, int] | None = None) -> None:
        with self.tx():
            self.db.execute("UPDATE images SET status=?, error=?, prefill_run=COALESCE(?, prefill_run) WHERE id=?",
                            (status, error, run_id, image_id))
            if size:
                self.db.execute("UPDATE images SET width=?, height=? WHERE id=?", (size[0], size[1], image_id))

    def set_review_state(self, image_id: int, state: str) -> None:
        with self.tx():
            self.db.execute("UPDATE images SET review_state=? WHERE id=?", (state, image_id))

    # -- runs -------------------------------------------------------------
    def start_run(self, kind: str, model: str, settings: dict) -> int:
        with self.tx():
            return self.db.execute("INSERT INTO runs(kind, model, settings, started_at) VALUES(?,?,?,?)",
                                   (kind, model, json.dumps(settings, sort_keys=True), time.time())).lastrowid

    def finish_run(self, run_id: int) -> None:
        with self.tx():
            self.db.execute("UPDATE runs SET finished_at=? WHERE id=?", (time.time(), run_id))

    def runs(self) -> list[dict]:
        cols = ("id", "kind", "model", "settings", "started_at", "finished_at")
        return [dict(zip(cols, r)) for r in self.db.execute(f"SELECT {', '.join(cols)} FROM runs ORDER BY id")]

    # -- persons ----------------------------------------------------------
    def person_ids(self, image_id: int) -> list[int]:
        return [r[0] for r in self.db.execute(
            "SELECT id FROM persons WHERE image_id=? AND deleted=0 ORDER BY id", (image_id,))]

    def load_person(self, person_id: int) -> Person | None:
        """Current state, or None when the person is deleted."""
        r = self.db.execute("SELECT deleted, score, track_id, rev FROM persons WHERE id=?", (person_id,)).fetchone()
        if r is None:
            raise KeyError(f"no person {person_id}")
        if r[0]:
            return None
        rows = self.db.execute(
            "SELECT idx, x, y, vis, conf, verified, source, suspicion FROM points WHERE person_id=? ORDER BY idx",
            (person_id,)).fetchall()
        return self._person_from_rows(person_id, r[1], r[2], r[3], rows)

    def _person_from_rows(self, pid, score, track_id, rev, rows) -> Person:
        """The stored person, or a one-line UserError when the file holds what no version writes."""
        if len(rows) != sk.N or [r[0] for r in rows] != list(range(sk.N)):
            raise UserError(f"{self.path}: damaged project database: person {pid} has {len(rows)} points,"
                            f" expected {sk.N}")
        try:
            a = np.array([(r[1], r[2], r[3], np.nan if r[4] is None else r[4], r[5],
                           np.nan if r[7] is None else r[7]) for r in rows], dtype=np.float64)
            p = Person(a[:, 0:2], a[:, 2].astype(np.int8), a[:, 3], a[:, 4].astype(bool),
                       [r[6] if isinstance(r[6], str) else "" for r in rows], a[:, 5],
                       score=score, track_id=track_id, id=pid, rev=rev)
        except (TypeError, ValueError) as e:
            raise UserError(f"{self.path}: damaged project database: person {pid} holds a value that is not a"
                            f" number ({e})") from None
        problem = check_person(p)
        if problem:
            raise UserError(f"{self.path}: damaged project database: person {pid} {problem}")
        return p

    def crowd_regions(self, image_id: int) -> list[list[float]]:
        """The image's crowd regions (x, y, w, h): people there are not labelled one by one
        (Session.mark_crowd; COCO iscrowd on export)."""
        return self.get_kv(f"{KV_CROWD_REGIONS}{image_id}") or []

    def load_frame(self, image_id: int) -> Frame:
        im = self.image(image_id)
        persons = []
        prow = self.db.execute("SELECT id, score, track_id, rev FROM persons WHERE image_id=? AND deleted=0 ORDER BY id",
                               (image_id,)).fetchall()
        if prow:
            pts = self.db.execute(
                "SELECT p.person_id, p.idx, p.x, p.y, p.vis, p.conf, p.verified, p.source, p.suspicion FROM points p"
                " JOIN persons q ON q.id = p.person_id WHERE q.image_id=? AND q.deleted=0 ORDER BY p.person_id, p.idx",
                (image_id,)).fetchall()
            by = {}
            for r in pts:
                by.setdefault(r[0], []).append(r[1:])
            for pid, score, track, rev in prow:
                persons.append(self._person_from_rows(pid, score, track, rev, by.get(pid, [])))
        return Frame(im.file_name, im.width or 0, im.height or 0, persons, id=im.id,
                     video=im.source_path if im.kind == "video" else None, frame_index=im.frame_index,
                     status=im.status, review_state=im.review_state, crowd_regions=self.crowd_regions(image_id))

    def iter_frames(self, where: str = "", args: tuple = ()) -> Iterator[Frame]:
        for im in self.images(where, args):
            yield self.load_frame(im.id)

    def person_image(self, person_id: int) -> int:
        return self.db.execute("SELECT image_id FROM persons WHERE id=?", (person_id,)).fetchone()[0]

    def _write_points(self, pid: int, p: Person, now: float, set_pred: bool) -> None:
        problem = check_person(p)
        if problem:                     # the transaction around this write rolls back
            raise UserError(f"{self.path}: refusing to store person {pid}: it {problem}")
        conf = [None if np.isnan(c) else float(c) for c in p.conf]
        sus = [None if np.isnan(s) else float(s) for s in p.suspicion]
        rows = [(pid, i, float(p.xy[i, 0]), float(p.xy[i, 1]), int(p.vis[i]), conf[i], int(p.verified[i]),
                 p.source[i], now, sus[i]) for i in range(sk.N)]
        self.db.executemany(
            "INSERT INTO points(person_id, idx, x, y, vis, conf, verified, source, updated_at, suspicion)"
            " VALUES(?,?,?,?,?,?,?,?,?,?) ON CONFLICT(person_id, idx) DO UPDATE SET"
            " x=excluded.x, y=excluded.y, vis=excluded.vis, conf=excluded.conf, verified=excluded.verified,"
            " source=excluded.source, suspicion=excluded.suspicion,"
            " updated_at=CASE WHEN points.x IS excluded.x AND points.y IS excluded.y AND points.vis IS excluded.vis"
            " AND points.verified IS excluded.verified AND points.source IS excluded.source"
            " THEN points.updated_at ELSE excluded.updated_at END", rows)
        if set_pred:
            self.db.executemany("UPDATE points SET pred_x=?, pred_y=? WHERE person_id=? AND idx=?",
                                [(float(p.xy[i, 0]), float(p.xy[i, 1]), pid, i) for i in range(sk.N)
                                 if not p.verified[i]])

    def apply_changes(self, changes: list[tuple[int | None, int, Person | None, Person | None]],
                      actor: str, command: str, args: dict | None = None, session: str | None = None,
                      undo_of: int | None = None, redo_of: int | None = None,
                      predicted: bool = False) -> tuple[int, list[int]]:
        """Write person states and log them as one action, atomically.

        changes: (person_id or None for a new person, image_id, before, after);
        after None deletes (soft: ids stay stable for history and CVAT).
        predicted=True also records the points as the model's prediction.
        Returns (action id, person ids in order).
        """
        now = time.time()
        ids = []
        with self.tx():
            aid = self.db.execute(
                "INSERT INTO actions(ts, session, actor, command, args, undo_of, redo_of) VALUES(?,?,?,?,?,?,?)",
                (now, session, actor, command, json.dumps(args or {}), undo_of, redo_of)).lastrowid
            for pid, image_id, before, after in changes:
                if pid is None:
                    pid = self.db.execute("INSERT INTO persons(image_id, created_at) VALUES(?,?)",
                                          (image_id, now)).lastrowid
                if after is None:
                    self.db.execute("UPDATE persons SET deleted=1, rev=rev+1 WHERE id=?", (pid,))
                else:
                    self.db.execute("UPDATE persons SET deleted=0, score=?, track_id=?, rev=rev+1 WHERE id=?",
                                    (after.score, after.track_id, pid))
                    self._write_points(pid, after, now, predicted)
                self.db.execute("INSERT INTO changes(action_id, person_id, before, after) VALUES(?,?,?,?)",
                                (aid, pid, _pack(before), _pack(after)))
                ids.append(pid)
        return aid, ids

    def action(self, action_id: int) -> dict:
        r = self.db.execute("SELECT id, ts, session, actor, command, args, undo_of, redo_of FROM actions WHERE id=?",
                            (action_id,)).fetchone()
        ch = self.db.execute("SELECT person_id, before, after FROM changes WHERE action_id=? ORDER BY rowid",
                             (action_id,)).fetchall()
        return {"id": r[0], "ts": r[1], "session": r[2], "actor": r[3], "command": r[4], "args": json.loads(r[5]),
                "undo_of": r[6], "redo_of": r[7],
                "changes": [(pid, _unpack(b, pid), _unpack(a, pid)) for pid, b, a in ch]}

    def history(self, person_id: int | None = None, limit: int = 100) -> list[dict]:
        """Newest first: who did what, when (the audit trail)."""
        if person_id is None:
            q = self.db.execute("SELECT id FROM actions ORDER BY id DESC LIMIT ?", (limit,))
        else:
            q = self.db.execute("SELECT DISTINCT action_id FROM changes WHERE person_id=? ORDER BY action_id DESC"
                                " LIMIT ?", (person_id, limit))
        return [self.action(r[0]) for r in q.fetchall()]

    def set_suspicion(self, values: Iterable[tuple[int, int, float]]) -> None:
        """(person_id, idx, score) — derived data, not an edit, so not in history."""
        with self.tx():
            self.db.executemany("UPDATE points SET suspicion=? WHERE person_id=? AND idx=?",
                                [(float(s), pid, i) for pid, i, s in values])

    # -- summaries ----------------------------------------------------------
    def counts(self) -> dict:
        q = self.db.execute
        out = {"images": q("SELECT count(*) FROM images").fetchone()[0]}
        for status, n in q("SELECT status, count(*) FROM images GROUP BY status"):
            out[f"images_{status}"] = n
        for state, n in q("SELECT review_state, count(*) FROM images GROUP BY review_state"):
            out[f"review_{state}"] = n
        out["persons"] = q("SELECT count(*) FROM persons WHERE deleted=0").fetchone()[0]
        r = q("SELECT sum(verified), count(*) FROM points p JOIN persons q ON q.id=p.person_id"
              " WHERE q.deleted=0").fetchone()
        out["points_verified"] = r[0] or 0
        out["points_predicted"] = (r[1] or 0) - (r[0] or 0)
        out["persons_fully_verified"] = q(
            "SELECT count(*) FROM persons q WHERE q.deleted=0 AND NOT EXISTS"
            " (SELECT 1 FROM points p WHERE p.person_id=q.id AND p.verified=0)").fetchone()[0]
        return out

    def failures(self) -> list[tuple[str, str]]:
        return [tuple(r) for r in self.db.execute(
            "SELECT file_name, error FROM images WHERE status='failed' ORDER BY file_name")]

    def has_verified(self, image_id: int) -> bool:
        return self.db.execute(
            "SELECT 1 FROM points p JOIN persons q ON q.id=p.person_id WHERE q.image_id=? AND q.deleted=0"
            " AND p.verified=1 LIMIT 1", (image_id,)).fetchone() is not None

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
