"""`cvat push|pull|status` subcommands (loaded by cli.py's plugin list).

The connection comes from --url/--user/--password/--token, else CVAT_URL,
CVAT_USER, CVAT_PASSWORD / CVAT_ACCESS_TOKEN, else project.toml's [cvat] url
and user plus a password prompt. The URL and user are written back to
project.toml after a successful login; a password or token never is.
"""
from __future__ import annotations

import json
import os
import sys

from annotator.core.errors import UserError


def _open(path):
    from annotator.core.project import Project
    return Project.open(path)


class _Bars:
    """tqdm bars keyed by what is being reported (upload bytes, annotation jobs, downloads)."""

    UNITS = {"upload": ("B", True), "annotations": ("job", False), "download": ("job", False)}

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bars = {}

    def __call__(self, what: str, done: int, total: int) -> None:
        if self.quiet:
            return
        from tqdm import tqdm
        bar = self.bars.get(what)
        if bar is None or (total and bar.total != total) or done < bar.n:
            if bar is not None:
                bar.close()
            unit, scale = self.UNITS.get(what, ("it", False))
            bar = self.bars[what] = tqdm(total=total or None, desc=what, unit=unit, unit_scale=scale,
                                         leave=False, file=sys.stderr)
        bar.update(done - bar.n)
        if total and done >= total:
            bar.close()
            del self.bars[what]

    def close(self) -> None:
        for b in self.bars.values():
            b.close()
        self.bars.clear()


def _connect(a, proj):
    from annotator.cvat.client import ENV_TOKEN, ENV_URL, ENV_USER, connect
    cfg = proj.settings.get("cvat", {})
    env = dict(os.environ)
    url = a.url or env.get(ENV_URL) or cfg.get("url") or None
    user = a.user or env.get(ENV_USER) or (cfg.get("user") if not (a.token or env.get(ENV_TOKEN)) else None)
    conn = connect(url, user or None, a.password, a.token, timeout=a.timeout, env=env)
    if cfg.get("url") != conn.url or cfg.get("user") != conn.user:
        proj.settings.setdefault("cvat", {})
        proj.settings["cvat"]["url"] = conn.url
        proj.settings["cvat"]["user"] = conn.user
        proj.save_settings()
    return conn


def _print_report(rep, what: str) -> None:
    c = rep.counts
    parts = [f"{k.replace('_', ' ')} {v}" for k, v in sorted(c.items())]
    print(f"{what} done in {rep.seconds:.1f}s: " + (", ".join(parts) if parts else "nothing to do"))
    for n in rep.notes:
        print(f"  note: {n}")
    if rep.conflicts:
        print(f"  {rep.conflicts} conflicts (changed here and on CVAT): see `pose-annotator cvat status`, "
              "resolve with `pose-annotator cvat pull --prefer local|server`")


def cmd_push(a) -> int:
    from annotator.cvat.sync import CvatSync
    if a.segment_size is not None and a.segment_size < 0:
        raise UserError(f"--segment-size must be >= 0, not {a.segment_size}")
    if a.queue is not None and a.queue <= 0:
        raise UserError(f"--queue must be a positive number of images, not {a.queue}")
    with _open(a.project) as proj:
        name = a.cvat_project or proj.settings.get("cvat", {}).get("project") or proj.settings["project"]["name"] \
            or proj.root.resolve().name
        bars = _Bars(a.quiet)
        conn = _connect(a, proj)
        with conn:
            print(f"connected to CVAT {conn.server_version} at {conn.url} as {conn.user}")
            if proj.settings["cvat"].get("project") != name:
                proj.settings["cvat"]["project"] = name
                proj.save_settings()
            try:
                rep = CvatSync(proj, conn, progress=bars).push(name, queue=a.queue, segment_size=a.segment_size or 0,
                                                               task_size=a.task_size)
            finally:
                bars.close()
        _print_report(rep, "push")
        if rep.refused_jobs:
            jobs = ", ".join(str(j) for j, _ in rep.refused_jobs)
            first = rep.refused_jobs[0][1][0]
            raise UserError(f"CVAT job(s) {jobs} changed on the server since the last pull ({first}); nothing in "
                            f"them was overwritten: run `pose-annotator cvat pull {a.project}` first, then push")
    return 0


def cmd_pull(a) -> int:
    from annotator.cvat.sync import CvatSync
    with _open(a.project) as proj:
        bars = _Bars(a.quiet)
        conn = _connect(a, proj)
        with conn:
            print(f"connected to CVAT {conn.server_version} at {conn.url} as {conn.user}")
            try:
                rep = CvatSync(proj, conn, progress=bars).pull(a.prefer, full=a.full)
            finally:
                bars.close()
        _print_report(rep, "pull")
    return 0


def cmd_status(a) -> int:
    from annotator.cvat.sync import status
    with _open(a.project) as proj:
        s = status(proj)
        cfg = proj.settings.get("cvat", {})
    if a.json:
        print(json.dumps(s, indent=1))
        return 0
    print(f"CVAT: {cfg.get('url') or '(no server yet)'} user {cfg.get('user') or '-'} "
          f"project {cfg.get('project') or '-'}")
    if not s["tasks"]:
        print("  nothing pushed yet")
    for t in s["tasks"]:
        print(f"  task {t['task_id'] if t['task_id'] is not None else '(not created)'} '{t['name']}': "
              f"{t['frames']} images, {t['state']}" + ("" if t["state"] == "ready" else " (push again to finish)"))
        for j in (j for j in s["jobs"] if j["task_id"] == t["task_id"]):
            p = j["pending"]
            pend = ", ".join([f"{v} to {k}" for k, v in p.items() if v]
                             + ([f"{j['conflicts']} in conflict"] if j["conflicts"] else [])) or "in sync"
            print(f"    job {j['job_id']} frames {j['start_frame']}-{j['stop_frame']} {j['stage']}/{j['state']}"
                  f"{' (' + j['assignee'] + ')' if j['assignee'] else ''}: {pend}")
    pend = s["pending"]
    print(f"  pending local changes: {pend['create']} new, {pend['update']} changed, {pend['delete']} deleted people;"
          f" {s['images_not_pushed']} images not on CVAT")
    print(f"  conflicts: {len(s['conflicts'])}")
    for c in s["conflicts"]:
        print(f"    person {c['person_id']} (CVAT shape {c['shape_id']}, job {c['job_id']}) on {c['image']}: "
              f"{c['kind']}" + (f" [{c['cvat_user']}]" if c['cvat_user'] else ""))
    if s["conflicts"]:
        print("  resolve with `pose-annotator cvat pull PROJECT --prefer local` or `--prefer server`")
    return 0


def _conn_args(p) -> None:
    p.add_argument("project")
    p.add_argument("--url", help="CVAT server URL (default: $CVAT_URL, then project.toml)")
    p.add_argument("--user", help="CVAT user (default: $CVAT_USER, then project.toml)")
    p.add_argument("--password", help="password (default: $CVAT_PASSWORD, else a prompt); never stored")
    p.add_argument("--token", help="access token (default: $CVAT_ACCESS_TOKEN); never stored")
    from annotator.cvat.client import DEFAULT_TIMEOUT      # stdlib-only module: cheap at start-up
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for an answer")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(sub) -> None:
    p = sub.add_parser("cvat", help="push images and people to a CVAT server, pull corrections back")
    cs = p.add_subparsers(dest="cvat_cmd", required=True)

    q = cs.add_parser("push", help="create tasks for new images, send local changes of people")
    _conn_args(q)
    q.add_argument("--cvat-project", help="CVAT project name (default: project.toml [cvat] project, else the "
                                          "project's name); created with the skeleton label when missing")
    q.add_argument("--queue", type=int, help="only the first N images of the review queue (not all images)")
    q.add_argument("--segment-size", type=int, help="images per CVAT job (default: one job per task)")
    q.add_argument("--task-size", type=int, default=1000, help="images per CVAT task")
    q.set_defaults(fn=cmd_push)

    q = cs.add_parser("pull", help="merge CVAT's annotations of the pushed tasks into the project")
    _conn_args(q)
    q.add_argument("--prefer", choices=["local", "server"], help="resolve conflicts this way (default: list them)")
    q.add_argument("--full", action="store_true", help="download every job, not only those changed on CVAT")
    q.set_defaults(fn=cmd_pull)

    q = cs.add_parser("status", help="pushed tasks and jobs, pending local changes, conflicts (no server call)")
    q.add_argument("project")
    q.add_argument("--json", action="store_true")
    q.set_defaults(fn=cmd_status)
