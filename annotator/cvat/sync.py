"""Push a project's images and people to CVAT, pull corrections back, never overwrite silently.

State of the sync lives beside the project's data, in tables this module
creates on first use (the core schema is not touched):

- cvat_tasks:   one row per CVAT task we create; planned (name, no id yet),
                created (id, no data), ready (data uploaded, jobs known)
- cvat_frames:  image <-> (task, frame, job) and the frame name CVAT uses
- cvat_jobs:    jobs of our tasks and the updated_date / state last seen
- cvat_shapes:  person <-> CVAT skeleton shape, the person's rev and the
                shape content both sides agreed on at the last sync ("base")
- cvat_pending: people whose create request went out but whose ids were not
                recorded yet (an interrupted push adopts them instead of
                creating them twice)
- cvat_conflicts: people changed on both sides, waiting for a decision

Three-way merge per person, against the base: changed only on the server ->
taken (verified by that CVAT user when the job is completed, else as an
edit), changed only here -> kept and sent by the next push, changed on both
sides to different content -> a conflict, applied only with prefer=local or
server. New and deleted people follow the same rule. Every change to people
goes through commands.Session, so it is in history and undoable.

Content compared is what CVAT holds: positions (to 0.01 px) and the
visibility state of the 33 points. CVAT's annotation `version` is always 0,
so a job's updated_date tells whether the server changed since we last
looked; when it did, the content decides.
"""
from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from exporters import cvat_label
from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.media import export_name
from annotator.core.model import NOT_LABELLED, Person

TOL = 0.011              # px: CVAT rounds nothing, but JSON and float32 storage may
DEFAULT_TASK_SIZE = 1000

_TABLES = """
CREATE TABLE IF NOT EXISTS cvat_tasks (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL, cvat_project_id INTEGER NOT NULL,
    task_id INTEGER UNIQUE, name TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL CHECK (state IN ('planned', 'created', 'ready')),
    segment_size INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cvat_frames (
    image_id INTEGER PRIMARY KEY REFERENCES images(id),
    task_row INTEGER NOT NULL REFERENCES cvat_tasks(id),
    frame INTEGER NOT NULL, name TEXT NOT NULL, job_id INTEGER,
    UNIQUE (task_row, frame)
);
CREATE INDEX IF NOT EXISTS cvat_frames_job ON cvat_frames(job_id);
CREATE TABLE IF NOT EXISTS cvat_jobs (
    job_id INTEGER PRIMARY KEY, task_id INTEGER NOT NULL,
    start_frame INTEGER, stop_frame INTEGER,
    updated_date TEXT, state TEXT, stage TEXT, assignee TEXT, pulled_at REAL
);
CREATE TABLE IF NOT EXISTS cvat_shapes (
    person_id INTEGER PRIMARY KEY REFERENCES persons(id),
    shape_id INTEGER NOT NULL UNIQUE, job_id INTEGER NOT NULL, frame INTEGER NOT NULL,
    synced_rev INTEGER NOT NULL, base TEXT NOT NULL, elements TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS cvat_shapes_job ON cvat_shapes(job_id);
CREATE TABLE IF NOT EXISTS cvat_pending (
    person_id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, frame INTEGER NOT NULL, content TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cvat_conflicts (
    person_id INTEGER PRIMARY KEY, shape_id INTEGER, job_id INTEGER NOT NULL, image_id INTEGER NOT NULL,
    kind TEXT NOT NULL, local TEXT, server TEXT, base TEXT, cvat_user TEXT, detected_at REAL NOT NULL
);
"""


def ensure_tables(store) -> None:
    """Create the sync tables if missing (idempotent; the core schema version is not touched)."""
    if store.db.execute("SELECT 1 FROM sqlite_master WHERE name='cvat_conflicts'").fetchone():
        return
    with store.tx():
        for stmt in _TABLES.split(";"):
            if stmt.strip():
                store.db.execute(stmt)


def open_conflicts(store) -> dict[int, tuple[int, str]]:
    """person id -> (image id, kind) of every conflict waiting for a decision; reads only (a project
    never synced has none), so read-only views can call it."""
    if not store.db.execute("SELECT 1 FROM sqlite_master WHERE name='cvat_conflicts'").fetchone():
        return {}
    return {pid: (iid, kind) for pid, iid, kind in
            store.db.execute("SELECT person_id, image_id, kind FROM cvat_conflicts ORDER BY person_id")}


# -- content ---------------------------------------------------------------------------------------
def content(p: Person | None) -> list | None:
    """What CVAT holds of a person: [x, y, vis] per point (x = y = 0 where not labelled)."""
    if p is None:
        return None
    out = []
    for i in range(sk.N):
        v = int(p.vis[i])
        if v == NOT_LABELLED:
            out.append([0.0, 0.0, 0])
        else:
            x, y = (float(c) if np.isfinite(c) else 0.0 for c in p.xy[i])
            out.append([round(x, 2), round(y, 2), v])
    return out


def same(a: list | None, b: list | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    A, B = np.asarray(a, float), np.asarray(b, float)
    return bool(np.array_equal(A[:, 2], B[:, 2]) and np.abs(A[:, :2] - B[:, :2]).max() <= TOL)


def changed_points(a: list, b: list) -> np.ndarray:
    A, B = np.asarray(a, float), np.asarray(b, float)
    return (A[:, 2] != B[:, 2]) | (np.abs(A[:, :2] - B[:, :2]).max(1) > TOL)


def _apply_content(p: Person, c: list, mask: np.ndarray) -> None:
    for i in np.flatnonzero(mask):
        x, y, v = c[i]
        p.vis[i] = int(v)
        if v:
            p.xy[i] = (x, y)


def person_from_content(c: list) -> Person:
    a = np.asarray(c, float)
    return Person(a[:, :2], a[:, 2].astype(np.int8))


def _elements(shape: dict) -> dict:
    return {str(e["label_id"]): e.get("id") for e in shape.get("elements") or [] if e.get("id") is not None}


@dataclass
class Report:
    """What a push or pull did, for the CLI and the tests."""
    counts: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    refused_jobs: list = field(default_factory=list)     # jobs edited on the server since the last pull
    conflicts: int = 0
    seconds: float = 0.0

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


Progress = Callable[[str, int, int], None]


class CvatSync:
    """Sync one project with one CVAT server (a cvat_client.CvatConnection)."""

    def __init__(self, project, conn, *, progress: Progress | None = None, log: Callable[[str], None] | None = None):
        self.project = project
        self.store = project.store
        self.conn = conn
        self.progress = progress
        self.log = log or (lambda s: None)
        self._lmaps: dict[int, cvat_label.LabelMap] = {}
        ensure_tables(self.store)

    @property
    def server(self) -> str:
        return self.conn.url

    def _q(self, sql: str, args: tuple = ()):
        return self.store.db.execute(sql, args)

    def _lmap(self, cvat_project_id: int) -> cvat_label.LabelMap:
        if cvat_project_id not in self._lmaps:
            labels = self.conn.project_labels(cvat_project_id)
            self._lmaps[cvat_project_id] = cvat_label.LabelMap.from_labels(
                labels, where=f"CVAT project {cvat_project_id}")
        return self._lmaps[cvat_project_id]

    def _tick(self, what: str, done: int, total: int) -> None:
        if self.progress:
            self.progress(what, done, total)

    # =============================================================================== push
    def push(self, cvat_project: str, *, queue: int | None = None, segment_size: int = 0,
             task_size: int = DEFAULT_TASK_SIZE, image_quality: int = 90) -> Report:
        """Create tasks for images not on CVAT yet, then send every local change of people.

        Resumable: tasks are recorded before they are created and frames before
        they are uploaded; annotation writes are recorded per job.
        """
        t0 = time.monotonic()
        rep = Report()
        project, lmap, diffs, created = self.conn.ensure_project(cvat_project)
        self._lmaps[project["id"]] = lmap
        if created:
            rep.notes.append(f"created CVAT project '{cvat_project}' (id {project['id']}) with the skeleton label")
        for d in diffs:
            rep.notes.append(f"label '{cvat_label.LABEL_NAME}' on CVAT differs from ours (left as is): {d}")
        # 1. plan new tasks (recorded before anything is created on the server)
        ids = self._select_images(queue)
        for k in range(0, len(ids), max(1, task_size)):
            self._plan_task(project["id"], ids[k:k + task_size], segment_size)
        # 2. create / upload every unfinished task (new ones and ones an interrupted push left)
        for row in self._q("SELECT id FROM cvat_tasks WHERE server=? AND state!='ready' ORDER BY id",
                           (self.server,)).fetchall():
            self._finish_task(row[0], rep, image_quality)
        # 3. people
        tasks = self._q("SELECT task_id, cvat_project_id FROM cvat_tasks WHERE server=? AND state='ready'"
                        " ORDER BY id", (self.server,)).fetchall()
        for task_id, pid in tasks:
            self._push_task(task_id, self._lmap(pid), rep)
        rep.conflicts = self._q("SELECT count(*) FROM cvat_conflicts").fetchone()[0]
        rep.seconds = time.monotonic() - t0
        return rep

    def _select_images(self, queue: int | None) -> list[int]:
        pushed = {r[0] for r in self._q("SELECT image_id FROM cvat_frames")}
        if queue is not None:
            from annotator.review.queue import image_queue
            return [it.image_id for it in image_queue(self.store) if it.image_id not in pushed][:max(0, queue)]
        return [r.id for r in self.store.images("i.status != 'failed'") if r.id not in pushed]

    def _plan_task(self, cvat_project_id: int, image_ids: list[int], segment_size: int) -> None:
        """Record a task and its frames (frame names CVAT will use: unique base names)."""
        if not image_ids:
            return
        pname = self.project.settings["project"].get("name") or self.project.root.name
        name = f"{pname} {time.strftime('%Y-%m-%d %H:%M')} #{secrets.token_hex(3)}"
        names, used = [], set()
        for iid in image_ids:
            row = self.store.image(iid)
            base = Path(export_name(row.file_name)).name
            if base in used:
                base = f"{iid}_{base}"
            used.add(base)
            names.append(base)
        with self.store.tx():
            tr = self._q("INSERT INTO cvat_tasks(server, cvat_project_id, name, state, segment_size, created_at)"
                         " VALUES(?,?,?,?,?,?)", (self.server, cvat_project_id, name, "planned", int(segment_size),
                                                  time.time())).lastrowid
            self.store.db.executemany("INSERT INTO cvat_frames(image_id, task_row, frame, name) VALUES(?,?,?,?)",
                                      [(iid, tr, k, n) for k, (iid, n) in enumerate(zip(image_ids, names))])

    def _finish_task(self, task_row: int, rep: Report, image_quality: int) -> None:
        cvat_project_id, task_id, name, state, seg = self._q(
            "SELECT cvat_project_id, task_id, name, state, segment_size FROM cvat_tasks WHERE id=?",
            (task_row,)).fetchone()
        task = None
        if task_id is None:        # planned; maybe created before an interruption: look it up by its unique name
            found = [t for t in self.conn.list_tasks(cvat_project_id, name=name) if t.get("name") == name]
            task = found[0] if found else self.conn.create_task_record(name, project_id=cvat_project_id,
                                                                       segment_size=seg)
            task_id = task["id"]
            with self.store.tx():
                self._q("UPDATE cvat_tasks SET task_id=?, state='created' WHERE id=?", (task_id, task_row))
            if not found:
                rep.add("tasks_created")
        else:
            task = self.conn.get_task(task_id)
        frames = self._q("SELECT image_id, frame, name FROM cvat_frames WHERE task_row=? ORDER BY frame",
                         (task_row,)).fetchall()
        if not int(task.get("size") or 0):
            tmp = Path(tempfile.mkdtemp(prefix="pose-annotator-cvat-"))
            try:
                files = [self._upload_file(iid, fname, tmp) for iid, _, fname in frames]
                self.log(f"uploading {len(files)} images to task {task_id}")
                self.conn.upload_task_data(task_id, files, image_quality=image_quality,
                                           progress=self.progress)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            rep.add("images_uploaded", len(frames))
        meta = self.conn.task_frames(task_id)
        got = [Path(f["name"]).name for f in meta]
        want = [f[2] for f in frames]
        if got != want:
            raise UserError(f"CVAT task {task_id} holds frames {got[:3]}... but {want[:3]}... were uploaded; "
                            "delete the task in CVAT and push again")
        jobs = self.conn.list_jobs(task_id)
        with self.store.tx():
            for j in jobs:
                self._record_job(j, task_id)
                self._q("UPDATE cvat_frames SET job_id=? WHERE task_row=? AND frame BETWEEN ? AND ?",
                        (j["id"], task_row, j["start_frame"], j["stop_frame"]))
            self._q("UPDATE cvat_tasks SET state='ready' WHERE id=?", (task_row,))

    def _upload_file(self, image_id: int, name: str, tmp: Path) -> Path:
        """The file to upload under the frame name (the original when its name fits, else a copy)."""
        row = self.store.image(image_id)
        if row.kind == "image":
            src = self.project.source_path(row)
            if src.name == name:
                return src
            dst = tmp / name
            shutil.copyfile(src, dst)
            return dst
        from PIL import Image
        dst = tmp / name
        Image.fromarray(self.project.load_rgb(row)).save(dst, quality=95)
        return dst

    def _record_job(self, j: dict, task_id: int | None = None, pulled: bool = False) -> None:
        assignee = (j.get("assignee") or {}).get("username") if isinstance(j.get("assignee"), dict) else None
        self._q("INSERT INTO cvat_jobs(job_id, task_id, start_frame, stop_frame, updated_date, state, stage, assignee,"
                " pulled_at) VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT(job_id) DO UPDATE SET"
                " updated_date=excluded.updated_date, state=excluded.state, stage=excluded.stage,"
                " assignee=excluded.assignee, pulled_at=COALESCE(excluded.pulled_at, cvat_jobs.pulled_at)",
                (j["id"], task_id if task_id is not None else j.get("task_id"), j.get("start_frame"),
                 j.get("stop_frame"), j.get("updated_date"), j.get("state"), j.get("stage"), assignee,
                 time.time() if pulled else None))

    # -- local changes ----------------------------------------------------------------------------
    def local_ops(self, job_id: int) -> dict:
        """What a push would send for one job: create / update / delete lists (people in conflict left out)."""
        rows = self._q(
            "SELECT p.id, p.deleted, p.rev, f.frame, f.image_id, s.shape_id, s.synced_rev, s.base, s.elements,"
            " c.person_id IS NOT NULL FROM cvat_frames f JOIN persons p ON p.image_id=f.image_id"
            " LEFT JOIN cvat_shapes s ON s.person_id=p.id LEFT JOIN cvat_conflicts c ON c.person_id=p.id"
            " WHERE f.job_id=? ORDER BY f.frame, p.id", (job_id,)).fetchall()
        ops = {"create": [], "update": [], "delete": [], "same_rev": []}
        for pid, deleted, rev, frame, image_id, shape_id, synced_rev, base, elements, conflict in rows:
            if conflict:
                continue
            if shape_id is None:
                if not deleted:
                    ops["create"].append((pid, frame))
            elif deleted:
                ops["delete"].append((pid, shape_id))
            elif rev != synced_rev:
                p = self.store.load_person(pid)
                if same(content(p), json.loads(base)):
                    ops["same_rev"].append((pid, rev))
                else:
                    ops["update"].append((pid, frame, shape_id, json.loads(elements), p))
        return ops

    def _server_edits(self, job_id: int, ann: dict, lmap) -> list[str]:
        """How the server's annotations of a job differ from the last synced state (empty: they do not)."""
        mapped = {r[0]: json.loads(r[1]) for r in self._q("SELECT shape_id, base FROM cvat_shapes WHERE job_id=?",
                                                          (job_id,))}
        out = []
        seen = set()
        for s in ann.get("shapes") or []:
            if s.get("type") != "skeleton" or s.get("label_id") != lmap.label_id:
                continue
            seen.add(s["id"])
            if s["id"] not in mapped:
                out.append(f"new person (shape {s['id']}) on frame {s['frame']}")
            elif not same(content(cvat_label.shape_to_person(s, lmap)), mapped[s["id"]]):
                out.append(f"shape {s['id']} changed")
        out += [f"shape {sid} deleted" for sid in mapped if sid not in seen]
        return out

    def _adopt_pending(self, job_id: int, ann: dict, lmap) -> int:
        """Map server shapes an interrupted push created (content and frame match) to their people."""
        pending = self._q("SELECT person_id, frame, content FROM cvat_pending WHERE job_id=?", (job_id,)).fetchall()
        if not pending:
            return 0
        mapped = {r[0] for r in self._q("SELECT shape_id FROM cvat_shapes WHERE job_id=?", (job_id,))}
        free = [s for s in ann.get("shapes") or [] if s.get("type") == "skeleton"
                and s.get("label_id") == lmap.label_id and s["id"] not in mapped]
        n = 0
        with self.store.tx():
            for pid, frame, c in pending:
                c = json.loads(c)
                for s in free:
                    sc = content(cvat_label.shape_to_person(s, lmap))
                    if s["frame"] == frame and same(sc, c):
                        rev = self._q("SELECT rev FROM persons WHERE id=?", (pid,)).fetchone()[0]
                        rev = rev if same(content(self.store.load_person(pid)), c) else -1
                        self._map(pid, s, job_id, rev, sc)
                        free.remove(s)
                        n += 1
                        break
            self._q("DELETE FROM cvat_pending WHERE job_id=?", (job_id,))
        return n

    def _map(self, person_id: int, shape: dict, job_id: int, rev: int, base: list) -> None:
        self._q("INSERT INTO cvat_shapes(person_id, shape_id, job_id, frame, synced_rev, base, elements)"
                " VALUES(?,?,?,?,?,?,?) ON CONFLICT(person_id) DO UPDATE SET shape_id=excluded.shape_id,"
                " job_id=excluded.job_id, frame=excluded.frame, synced_rev=excluded.synced_rev,"
                " base=excluded.base, elements=excluded.elements",
                (person_id, shape["id"], job_id, shape["frame"], rev, json.dumps(base), json.dumps(_elements(shape))))

    def _push_task(self, task_id: int, lmap, rep: Report) -> None:
        jobs = self.conn.list_jobs(task_id)
        for k, job in enumerate(jobs):
            self._tick("annotations", k, len(jobs))
            self._push_job(job, lmap, rep)
        self._tick("annotations", len(jobs), len(jobs))

    def _push_job(self, job: dict, lmap, rep: Report) -> None:
        jid = job["id"]
        rec = self._q("SELECT updated_date FROM cvat_jobs WHERE job_id=?", (jid,)).fetchone()
        pending = self._q("SELECT 1 FROM cvat_pending WHERE job_id=? LIMIT 1", (jid,)).fetchone()
        ops = self.local_ops(jid)
        if ops["same_rev"]:
            with self.store.tx():
                self.store.db.executemany("UPDATE cvat_shapes SET synced_rev=? WHERE person_id=?",
                                          [(rev, pid) for pid, rev in ops["same_rev"]])
        if not (ops["create"] or ops["update"] or ops["delete"] or pending):
            return
        if pending or rec is None or rec[0] != job.get("updated_date"):
            ann = self.conn.get_job_annotations(jid)
            if pending:
                n = self._adopt_pending(jid, ann, lmap)
                if n:
                    rep.add("people_adopted", n)
            edits = self._server_edits(jid, ann, lmap)
            if edits:
                rep.refused_jobs.append((jid, edits))
                return
            ops = self.local_ops(jid)
        # deletes and updates first (they cannot duplicate anything), then creates
        if ops["delete"]:
            known = {r[0]: (r[1], json.loads(r[2]), json.loads(r[3])) for r in self._q(
                "SELECT shape_id, frame, base, elements FROM cvat_shapes WHERE job_id=?", (jid,))}
            shapes = []
            for _, sid in ops["delete"]:
                frame, base, elements = known[sid]
                shapes.append(cvat_label.person_to_shape(person_from_content(base), frame, lmap, shape_id=sid,
                                                         element_ids=elements))
            body = {"shapes": shapes}
            self.conn.patch_job_annotations(jid, "delete", body)
            with self.store.tx():
                self.store.db.executemany("DELETE FROM cvat_shapes WHERE person_id=?",
                                          [(pid,) for pid, _ in ops["delete"]])
            rep.add("people_deleted_on_cvat", len(ops["delete"]))
        if ops["update"]:
            shapes, revs = [], {}
            for pid, frame, sid, elements, p in ops["update"]:
                shapes.append(cvat_label.person_to_shape(p, frame, lmap, shape_id=sid, element_ids=elements))
                revs[sid] = (pid, p.rev, content(p))
            res = self.conn.patch_job_annotations(jid, "update", {"shapes": shapes})
            by_id = {s["id"]: s for s in (res or {}).get("shapes") or []}
            with self.store.tx():
                for s in shapes:
                    pid, rev, c = revs[s["id"]]
                    self._map(pid, by_id.get(s["id"], s), jid, rev, c)
            rep.add("people_updated_on_cvat", len(shapes))
        if ops["create"]:
            shapes, people = [], []
            for pid, frame in ops["create"]:
                p = self.store.load_person(pid)
                shapes.append(cvat_label.person_to_shape(p, frame, lmap))
                people.append((pid, frame, p.rev, content(p)))
            with self.store.tx():       # an interruption from here on is resolved by adoption, not a duplicate
                self.store.db.executemany("INSERT OR REPLACE INTO cvat_pending(person_id, job_id, frame, content)"
                                          " VALUES(?,?,?,?)", [(pid, jid, fr, json.dumps(c))
                                                              for pid, fr, _, c in people])
            res = self.conn.patch_job_annotations(jid, "create", {"shapes": shapes})
            self._record_created(jid, people, (res or {}).get("shapes") or [], lmap)
            rep.add("people_created_on_cvat", len(people))
            rep.add("points_sent", sum(int((np.asarray(c)[:, 2] > 0).sum()) for *_, c in people))
        with self.store.tx():
            self._record_job(self.conn.get_job(jid))

    def _record_created(self, jid: int, people: list, returned: list, lmap) -> None:
        """Map the people just created to the shape ids the server gave (matched by frame and content)."""
        free = list(returned)
        with self.store.tx():
            for pid, frame, rev, c in people:
                for s in free:
                    if s.get("frame") == frame and same(content(cvat_label.shape_to_person(s, lmap)), c):
                        self._map(pid, s, jid, rev, c)
                        free.remove(s)
                        self._q("DELETE FROM cvat_pending WHERE person_id=?", (pid,))
                        break
        # whatever did not match stays pending: the next push or pull adopts it from the server's copy

    # =============================================================================== pull
    def pull(self, prefer: str | None = None, *, full: bool = False) -> Report:
        """Fetch annotations of our tasks' jobs and merge them three-way (see the module docstring).

        prefer: None (conflicts are recorded), "local" or "server" (conflicts
        are resolved that way). full: download jobs even when their
        updated_date says nothing changed.
        """
        if prefer not in (None, "local", "server"):
            raise UserError(f"--prefer must be 'local' or 'server', not {prefer!r}")
        t0 = time.monotonic()
        rep = Report()
        tasks = self._q("SELECT task_id, cvat_project_id FROM cvat_tasks WHERE server=? AND state='ready' ORDER BY id",
                        (self.server,)).fetchall()
        if not tasks:
            others = self._q("SELECT DISTINCT server FROM cvat_tasks").fetchall()
            hint = f" (tasks were pushed to {', '.join(r[0] for r in others)})" if others else " (push first)"
            raise UserError(f"{self.project.root}: nothing pushed to CVAT at {self.server}{hint}")
        all_jobs = []
        for task_id, pid in tasks:
            lmap = self._lmap(pid)
            all_jobs += [(j, lmap) for j in self.conn.list_jobs(task_id)]
        from annotator.review.suspicion import Rescore
        rescore = Rescore(self.project)          # pulled points are scored for the review queue at the end
        try:
            self._pull_jobs(all_jobs, full, prefer, rep, rescore)
        finally:
            rescore.finish()
        rep.conflicts = self._q("SELECT count(*) FROM cvat_conflicts").fetchone()[0]
        rep.seconds = time.monotonic() - t0
        return rep

    def _pull_jobs(self, all_jobs: list, full: bool, prefer, rep: Report, rescore) -> None:
        session = None
        for k, (job, lmap) in enumerate(all_jobs):
            self._tick("download", k, len(all_jobs))
            jid = job["id"]
            rec = self._q("SELECT updated_date, state FROM cvat_jobs WHERE job_id=?", (jid,)).fetchone()
            open_conf = self._q("SELECT 1 FROM cvat_conflicts WHERE job_id=? LIMIT 1", (jid,)).fetchone()
            pending = self._q("SELECT 1 FROM cvat_pending WHERE job_id=? LIMIT 1", (jid,)).fetchone()
            if (not full and rec is not None and rec[0] == job.get("updated_date") and not pending
                    and not (open_conf and prefer)):
                rep.add("jobs_unchanged")
                continue
            ann = self.conn.get_job_annotations(jid)
            rep.add("jobs_downloaded")
            user = (job.get("assignee") or {}).get("username") or self.conn.user or "cvat"
            if session is None or session.annotator != f"cvat:{user}":
                session = rescore.watch(self.project.session(f"cvat:{user}"))
            if pending:
                n = self._adopt_pending(jid, ann, lmap)
                if n:
                    rep.add("people_adopted", n)
            self._merge_job(job, ann, lmap, prefer, session, user, rep)
            with self.store.tx():
                self._record_job(job, pulled=True)
        self._tick("download", len(all_jobs), len(all_jobs))

    def _merge_job(self, job: dict, ann: dict, lmap, prefer, session, user: str, rep: Report) -> None:
        jid = job["id"]
        accepted = job.get("state") == "completed"
        src = f"cvat:{user}"
        frame_image = dict(self._q("SELECT frame, image_id FROM cvat_frames WHERE job_id=?", (jid,)).fetchall())
        server = {}
        for s in ann.get("shapes") or []:
            if s.get("type") == "skeleton" and s.get("label_id") == lmap.label_id and s.get("frame") in frame_image:
                server[s["id"]] = s
            else:
                rep.add("shapes_ignored")
        tracks = ann.get("tracks") or []
        if tracks:      # said, not dropped in silence: people drawn in CVAT's track mode are not read
            rep.add("tracks_not_pulled", len(tracks))
            rep.notes.append(f"job {jid}: {len(tracks)} track(s) not pulled: pose-annotator reads each frame's "
                             "skeleton shapes; draw people with CVAT's 'Shape' button, not 'Track'")
        mapped = self._q("SELECT person_id, shape_id, base FROM cvat_shapes WHERE job_id=? ORDER BY person_id",
                         (jid,)).fetchall()
        self._q("DELETE FROM cvat_conflicts WHERE job_id=?", (jid,))
        for pid, sid, base in mapped:
            base = json.loads(base)
            local = self.store.load_person(pid)
            lc = content(local)
            shape = server.pop(sid, None)
            sp = cvat_label.shape_to_person(shape, lmap) if shape else None
            sc = content(sp)
            L, S = not same(lc, base), not same(sc, base)
            image_id = self.store.person_image(pid)
            if not S:
                if shape is not None:
                    with self.store.tx():
                        self._q("UPDATE cvat_shapes SET elements=? WHERE person_id=?",
                                (json.dumps(_elements(shape)), pid))
                if not L and accepted and local is not None and not local.fully_verified:
                    after = local.copy()
                    for i in np.flatnonzero(~after.verified):
                        after.source[i] = src
                    after.verified[:] = True
                    session.replace_person(pid, after, "cvat_accept", {"job": jid, "shape": sid})
                    self._set_synced(pid)
                    rep.add("people_verified")
                elif L:
                    rep.add("local_changes_kept")
                continue
            if not L or same(lc, sc):
                if L:                                   # both sides made the same change
                    with self.store.tx():
                        self._q("UPDATE cvat_shapes SET base=?, synced_rev=(SELECT rev FROM persons WHERE id=?)"
                                " WHERE person_id=?", (json.dumps(sc), pid, pid))
                    if lc is None:
                        self._q("DELETE FROM cvat_shapes WHERE person_id=?", (pid,))
                    rep.add("same_on_both_sides")
                    continue
                self._take_server(pid, local, shape, sp, base, jid, accepted, src, session, rep)
                continue
            # changed on both sides, differently
            kind = ("deleted on CVAT, changed here" if sc is None else
                    "deleted here, changed on CVAT" if lc is None else "changed on both sides")
            if prefer == "server":
                self._take_server(pid, local, shape, sp, base, jid, accepted, src, session, rep)
                rep.add("conflicts_resolved_server")
            elif prefer == "local":
                with self.store.tx():
                    if sc is None:           # gone on the server: the person will be created again
                        self._q("DELETE FROM cvat_shapes WHERE person_id=?", (pid,))
                    else:                    # the server's state becomes the base: the next push sends ours
                        self._q("UPDATE cvat_shapes SET base=?, elements=? WHERE person_id=?",
                                (json.dumps(sc), json.dumps(_elements(shape)), pid))
                rep.add("conflicts_resolved_local")
            else:
                with self.store.tx():
                    self._q("INSERT OR REPLACE INTO cvat_conflicts(person_id, shape_id, job_id, image_id, kind, local,"
                            " server, base, cvat_user, detected_at) VALUES(?,?,?,?,?,?,?,?,?,?)",
                            (pid, sid, jid, image_id, kind, json.dumps(lc), json.dumps(sc), json.dumps(base), user,
                             time.time()))
                rep.add("conflicts")
        # people that exist only on the server
        for sid, shape in server.items():
            sp = cvat_label.shape_to_person(shape, lmap)
            self._add_from_server(frame_image[shape["frame"]], sp, shape, jid, accepted, src, session)
            rep.add("people_added_from_cvat")
            rep.add("points_received", int(sp.labelled.sum()))

    def _add_from_server(self, image_id: int, sp: Person, shape: dict, jid: int, accepted: bool, src: str,
                         session, replaces: int | None = None) -> None:
        """Add the server's person sp (shape) to an image through the session and map it to the shape;
        replaces: the person id whose old mapping to the shape goes."""
        p = sp.copy()
        p.source = [src if p.vis[i] else "" for i in range(sk.N)]
        p.verified[:] = accepted
        new_id = session.add_person(image_id, p)
        with self.store.tx():
            if replaces is not None:
                self._q("DELETE FROM cvat_shapes WHERE person_id=?", (replaces,))
            rev = self._q("SELECT rev FROM persons WHERE id=?", (new_id,)).fetchone()[0]
            self._map(new_id, shape, jid, rev, content(sp))

    def resolve(self, person_id: int, prefer: str, session=None) -> None:
        """Settle one recorded conflict without the server (e.g. from the desktop app).

        prefer="server" applies the server's state stored with the conflict
        through the session; "local" keeps ours and makes the server's state the
        base, so the next push sends ours. If the server changed again
        meanwhile, push notices (job updated_date + content) and refuses.
        """
        if prefer not in ("local", "server"):
            raise UserError(f"prefer must be 'local' or 'server', not {prefer!r}")
        r = self._q("SELECT shape_id, job_id, server, cvat_user FROM cvat_conflicts WHERE person_id=?",
                    (person_id,)).fetchone()
        if r is None:
            raise UserError(f"person {person_id} has no open CVAT conflict")
        sid, jid, server_json, user = r
        sc = json.loads(server_json) if server_json else None
        frame, elements = self._q("SELECT frame, elements FROM cvat_shapes WHERE person_id=?", (person_id,)).fetchone()
        if prefer == "local":
            with self.store.tx():
                if sc is None:
                    self._q("DELETE FROM cvat_shapes WHERE person_id=?", (person_id,))
                else:
                    self._q("UPDATE cvat_shapes SET base=? WHERE person_id=?", (json.dumps(sc), person_id))
        else:
            shape = None if sc is None else {"id": sid, "frame": frame, "elements": [
                {"label_id": int(k), "id": v} for k, v in json.loads(elements).items()]}
            session = session or self.project.session(f"cvat:{user or 'cvat'}")
            self._take_server(person_id, self.store.load_person(person_id), shape,
                              None if sc is None else person_from_content(sc), None, jid, False,
                              f"cvat:{user or 'cvat'}", session, Report())
        with self.store.tx():
            self._q("DELETE FROM cvat_conflicts WHERE person_id=?", (person_id,))

    def _set_synced(self, pid: int) -> None:
        with self.store.tx():
            self._q("UPDATE cvat_shapes SET synced_rev=(SELECT rev FROM persons WHERE id=?) WHERE person_id=?",
                    (pid, pid))

    def _take_server(self, pid, local, shape, sp, base, jid, accepted, src, session, rep) -> None:
        """Apply the server's state of one person (edit, delete, or re-create) through the session."""
        if shape is None:
            if local is not None:
                session.delete_person(pid)
                rep.add("people_deleted_from_cvat")
            with self.store.tx():
                self._q("DELETE FROM cvat_shapes WHERE person_id=?", (pid,))
            return
        sc = content(sp)
        if local is None:                       # deleted here, the server kept (and changed) it: bring it back
            self._add_from_server(self.store.person_image(pid), sp, shape, jid, accepted, src, session, replaces=pid)
            rep.add("people_added_from_cvat")
            return
        mask = changed_points(content(local), sc)
        after = local.copy()
        _apply_content(after, sc, mask)
        for i in np.flatnonzero(mask):
            after.source[i] = src
            after.verified[i] = accepted
        if accepted:
            for i in np.flatnonzero(~after.verified):
                after.source[i] = src
            after.verified[:] = True
        session.replace_person(pid, after, "cvat_pull", {"job": jid, "shape": shape["id"]})
        with self.store.tx():
            rev = self._q("SELECT rev FROM persons WHERE id=?", (pid,)).fetchone()[0]
            self._map(pid, shape, jid, rev, sc)
        rep.add("people_updated_from_cvat")
        rep.add("points_received", int(mask.sum()))


# =============================================================================== offline views
def status(project) -> dict:
    """Tasks, jobs, pending local changes and conflicts, from the project alone (no server call)."""
    st = project.store
    ensure_tables(st)
    q = st.db.execute
    tasks = [dict(zip(("task_row", "server", "task_id", "name", "state", "frames"), r)) for r in q(
        "SELECT t.id, t.server, t.task_id, t.name, t.state, count(f.image_id) FROM cvat_tasks t"
        " LEFT JOIN cvat_frames f ON f.task_row=t.id GROUP BY t.id ORDER BY t.id")]
    jobs = [dict(zip(("job_id", "task_id", "start_frame", "stop_frame", "updated_date", "state", "stage",
                      "assignee", "pulled_at"), r)) for r in q("SELECT * FROM cvat_jobs ORDER BY task_id, start_frame")]
    dummy = CvatSync.__new__(CvatSync)
    dummy.store = st
    pending = {"create": 0, "update": 0, "delete": 0}
    for j in jobs:
        ops = CvatSync.local_ops(dummy, j["job_id"])
        for k in pending:
            pending[k] += len(ops[k])
        j["pending"] = {k: len(ops[k]) for k in pending}
        j["conflicts"] = q("SELECT count(*) FROM cvat_conflicts WHERE job_id=?", (j["job_id"],)).fetchone()[0]
    conflicts = [dict(zip(("person_id", "shape_id", "job_id", "image", "kind", "cvat_user", "detected_at"), r))
                 for r in q("SELECT c.person_id, c.shape_id, c.job_id, i.file_name, c.kind, c.cvat_user, c.detected_at"
                            " FROM cvat_conflicts c JOIN images i ON i.id=c.image_id ORDER BY c.job_id, c.person_id")]
    not_pushed = q("SELECT count(*) FROM images WHERE status!='failed' AND id NOT IN"
                   " (SELECT image_id FROM cvat_frames)").fetchone()[0]
    return {"tasks": tasks, "jobs": jobs, "pending": pending, "conflicts": conflicts,
            "images_not_pushed": not_pushed}
