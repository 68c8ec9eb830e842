"""An in-process CVAT REST API server for tests (CI cannot reach a real CVAT).

It implements the endpoints our client and cvat-sdk 2.80 use, as CVAT defines
them (its OpenAPI schema, the shapes of its JSON, its upload protocol and its
behaviour where the schema is silent), with in-memory state:

- auth: basic auth, legacy `Authorization: Token <key>` (the key login returns),
  personal access tokens `Authorization: Bearer <token>` (servers >= 2.48 only),
  session login `/api/auth/login` (sessionid + csrftoken cookies, CSRF checked
  on unsafe methods), `/api/users/self`;
- `/api/server/about` with a configurable version; versions < 2.30 omit
  `logo_url`/`subtitle`, which sdk 2.80's About model requires (the real
  failure seen against e.g. CVAT 2.23);
- projects, labels (skeletons with sublabels, attributes and SVG; the SVG's
  data-label-name is rewritten to data-label-id as CVAT does), tasks, task
  data upload (Upload-Start / Upload-Multiple multipart / TUS / Upload-Finish,
  then a background request polled at `/api/requests/{rq_id}`), data meta,
  frames and chunks, jobs (segments, stage/state/status), annotations for jobs
  and tasks (GET/PUT/PATCH/DELETE; ids kept on update; defaults filled in for
  missing attributes; `version` is 0 like CVAT 2.x unless count_versions);
- as a real CVAT (2.23.1, checked): JSON answers are `application/vnd.cvat+json` and a
  request whose Accept header does not allow that type (e.g. plain `application/json`)
  gets 406; a job's shapes come ordered by frame only (within a frame: newest first);
- failure injection: fail_next(n, status) (optionally per method/path), a
  delay per request (delay, delay_path), set_user_status(user, "unauthorized"
  | "forbidden"), role "worker" (may not create projects/tasks), and stop()
  for "server down" (open connections are cut; start() again on the same port);
- emulation knobs: version, processing_polls (polls before a background
  request finishes), requests_api=False (no /api/requests: the task status
  endpoint is polled instead), count_versions.

    with CvatTestServer(version="2.23.0") as srv:
        srv.add_user("alice", "pw"); token = srv.issue_token("alice")  # (PATs need >= 2.48)
        ... connect(srv.url, "alice", "pw") ...; srv.log lists (method, path, status)

Every JSON response is checked against cvat-sdk 2.80's own models before it
is sent (strict=True), so a drift from the schema fails the test that caused it.
"""
from __future__ import annotations

import base64
import copy
import io
import json
import re
import secrets
import socket
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from PIL import Image, ImageOps

SHAPE_TYPES = ("rectangle", "polygon", "polyline", "points", "ellipse", "cuboid", "mask", "skeleton")
STAGES = ("annotation", "validation", "acceptance")
STATES = ("new", "in progress", "completed", "rejected")
INPUT_TYPES = ("checkbox", "radio", "number", "text", "select")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
JSON_TYPE = "application/vnd.cvat+json"      # the Content-Type of CVAT's JSON answers


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


class ApiError(Exception):
    def __init__(self, status: int, body, headers: dict | None = None):
        super().__init__(f"{status}: {body}")
        self.status, self.body, self.headers = status, body, headers or {}


def _bad(msg) -> ApiError:
    return ApiError(400, msg if isinstance(msg, (dict, list)) else [msg])


def _not_found() -> ApiError:
    return ApiError(404, {"detail": "Not found."})


def _forbidden() -> ApiError:
    return ApiError(403, {"detail": "You do not have permission to perform this action."})


@dataclass
class User:
    id: int
    username: str
    password: str
    role: str = "user"                   # admin | user | worker
    status: str = "ok"                   # ok | unauthorized (401 everywhere) | forbidden (403 on data)
    key: str = field(default_factory=lambda: secrets.token_hex(20))   # legacy token (login response)
    pats: set = field(default_factory=set)
    joined: str = field(default_factory=_now)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    model: str | None = None      # sdk model the JSON must satisfy (strict mode)
    json_data: object = None


def _json(status, data, model=None, headers=None) -> Response:
    return Response(status, json.dumps(data).encode(), {"Content-Type": JSON_TYPE, **(headers or {})},
                    model, data)


def _acceptable(accept: str | None) -> bool:
    """CVAT's API renders only its own media type (and DRF's browsable HTML): an Accept header
    naming neither, e.g. a plain application/json, is answered 406 before anything else."""
    if not accept:
        return True
    types = [t.split(";")[0].strip().lower() for t in accept.split(",")]
    return any(t in ("*/*", "application/*", JSON_TYPE, "text/*", "text/html") for t in types)


def _parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], list[tuple[str, str, bytes]]]:
    """Form fields and (field, filename, bytes) files of a multipart/form-data body."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise _bad("Multipart form parse error - Invalid boundary in multipart: None")
    sep = b"--" + m.group(1).encode()
    fields, files = {}, []
    for part in body.split(sep)[1:]:
        if part.startswith(b"--"):
            break
        part = part[2:] if part.startswith(b"\r\n") else part
        head, _, data = part.partition(b"\r\n\r\n")
        data = data[:-2] if data.endswith(b"\r\n") else data
        disp = ""
        for line in head.decode("utf-8", "replace").split("\r\n"):
            if line.lower().startswith("content-disposition:"):
                disp = line
        name = re.search(r'\bname="([^"]*)"', disp)
        fname = re.search(r'\bfilename="([^"]*)"', disp)
        if not name:
            continue
        if fname:
            files.append((name.group(1), fname.group(1), data))
        else:
            fields[name.group(1)] = data.decode("utf-8", "replace")
    return fields, files


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def _frame_image(raw: bytes) -> tuple[bytes, int, int, str]:
    """Bytes as CVAT serves them (EXIF orientation applied), width, height, mime type."""
    with Image.open(io.BytesIO(raw)) as im:
        im.load()
        fmt = (im.format or "JPEG").upper()
        orientation = im.getexif().get(0x0112, 1)
        if orientation in (None, 1):
            return raw, im.width, im.height, Image.MIME.get(fmt, "image/jpeg")
        rot = ImageOps.exif_transpose(im)
        buf = io.BytesIO()
        rot.convert("RGB").save(buf, "JPEG", quality=95)
        return buf.getvalue(), rot.width, rot.height, "image/jpeg"


class CvatTestServer:
    """A CVAT API server on 127.0.0.1:<random port> in a background thread. Use as a context manager."""

    def __init__(self, version: str = "2.80.0", *, strict: bool = True, count_versions: bool = False,
                 processing_polls: int = 0, page_size: int = 10, requests_api: bool = True):
        self.version = version
        self.requests_api = requests_api          # False: no /api/requests (servers before it existed)
        self.strict = strict
        self.count_versions = count_versions
        self.processing_polls = processing_polls
        self.page_size = page_size
        self.lock = threading.RLock()
        self.log: list[tuple[str, str, int]] = []        # (method, path, status) of every request
        self.delay = 0.0                                  # seconds before each matching response
        self.delay_path: str | None = None                # only requests whose path contains this
        self._failures: list[dict] = []
        self._ids: dict[str, int] = {}
        self.users: dict[str, User] = {}
        self.sessions: dict[str, tuple[str, str]] = {}   # sessionid -> (username, csrftoken)
        self.projects: dict[int, dict] = {}
        self.labels: dict[int, dict] = {}
        self.tasks: dict[int, dict] = {}
        self.jobs: dict[int, dict] = {}
        self.requests: dict[str, dict] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self.port: int | None = None
        self.add_user("admin", "admin-password", role="admin")

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "CvatTestServer":
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with app.lock:
                    app._conns.add(self.connection)

            def finish(self):
                try:
                    super().finish()
                finally:
                    with app.lock:
                        app._conns.discard(self.connection)

            def log_message(self, *a):
                pass

            def _serve(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                resp = app._handle(self.command, self.path, self.headers, body)
                try:
                    self.send_response(resp.status)
                    for k, v in resp.headers.items():
                        if isinstance(v, list):
                            for x in v:
                                self.send_header(k, x)
                        else:
                            self.send_header(k, str(v))
                    self.send_header("Content-Length", str(len(resp.body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(resp.body)
                except OSError:
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._httpd = Server(("127.0.0.1", self.port or 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Server down: stop listening and cut every open connection (the port then refuses)."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self.lock:
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- knobs and helpers for tests -----------------------------------------------------------
    def fail_next(self, n: int = 1, status: int = 500, *, method: str | None = None,
                  path: str | None = None) -> None:
        """The next n requests (matching method / path substring, if given) answer `status`."""
        with self.lock:
            self._failures.append({"n": n, "status": status, "method": method, "path": path})

    def add_user(self, username: str, password: str, role: str = "user") -> User:
        with self.lock:
            u = User(self._next("user"), username, password, role)
            self.users[username] = u
            return u

    def set_user_status(self, username: str, status: str) -> None:
        assert status in ("ok", "unauthorized", "forbidden")
        self.users[username].status = status

    def issue_token(self, username: str) -> str:
        """A personal access token (sent as `Authorization: Bearer`; CVAT >= 2.48)."""
        tok = secrets.token_urlsafe(30)
        self.users[username].pats.add(tok)
        return tok

    def legacy_key(self, username: str) -> str:
        """The legacy API key (`Authorization: Token <key>`) that /api/auth/login returns."""
        return self.users[username].key

    @property
    def pats_supported(self) -> bool:
        return _vtuple(self.version) >= (2, 48)

    def requests_to(self, path_part: str, method: str | None = None) -> list[tuple[str, str, int]]:
        return [r for r in self.log if path_part in r[1] and (method is None or r[0] == method)]

    def _next(self, kind: str) -> int:
        self._ids[kind] = self._ids.get(kind, 0) + 1
        return self._ids[kind]

    # -- request handling --------------------------------------------------------------------
    def _handle(self, method: str, raw_path: str, headers, body: bytes) -> Response:
        parts = urlsplit(raw_path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        with self.lock:
            failure = None
            for f in self._failures:
                if f["n"] > 0 and (f["method"] in (None, method)) and (f["path"] is None or f["path"] in path):
                    f["n"] -= 1
                    failure = f["status"]
                    break
            self._failures = [f for f in self._failures if f["n"] > 0]
            delay = self.delay if (self.delay_path is None or self.delay_path in path) else 0.0
        if delay:
            time.sleep(delay)
        if failure is not None:
            resp = Response(failure, b"<h1>Server Error (%d)</h1>" % failure, {"Content-Type": "text/html"})
        else:
            try:
                with self.lock:
                    resp = self._route(method, path, query, headers, body)
            except ApiError as e:
                resp = _json(e.status, e.body, headers=e.headers)
            except Exception as e:    # a bug in this server: make it loud
                resp = _json(500, {"detail": f"test server error: {type(e).__name__}: {e}"})
            if self.strict and resp.model and 200 <= resp.status < 300:
                err = self._check_model(resp.model, resp.json_data)
                if err:
                    resp = _json(500, {"detail": f"test server response breaks sdk model {resp.model}: {err}"})
        with self.lock:
            self.log.append((method, path, resp.status))
        return resp

    @staticmethod
    def _check_model(model: str, data) -> str | None:
        from cvat_sdk.api_client import Configuration, models
        from cvat_sdk.api_client.model_utils import validate_and_convert_types
        try:
            validate_and_convert_types(copy.deepcopy(data), (getattr(models, model),), ["received_data"], True, True,
                                       configuration=Configuration())
        except Exception as e:     # noqa: BLE001 - any failure is a schema mismatch
            return f"{type(e).__name__}: {e}"
        return None

    def _origin(self, headers) -> str:
        return f"http://{headers.get('Host') or f'127.0.0.1:{self.port}'}"

    # -- auth ----------------------------------------------------------------------------------
    def _authenticate(self, method: str, headers) -> User | None:
        auth = headers.get("Authorization") or ""
        scheme, _, cred = auth.partition(" ")
        user = None
        if scheme == "Basic":
            try:
                name, _, pw = base64.b64decode(cred).decode().partition(":")
            except Exception:      # noqa: BLE001
                raise ApiError(401, {"detail": "Invalid basic header. Credentials not correctly base64 encoded."})
            u = self.users.get(name)
            if u is None or u.password != pw:
                raise ApiError(401, {"detail": "Invalid username/password."},
                               {"WWW-Authenticate": 'Basic realm="api"'})
            user = u
        elif scheme == "Token":
            user = next((u for u in self.users.values() if u.key == cred.strip()), None)
            if user is None:
                raise ApiError(401, {"detail": "Invalid token."})
        elif scheme == "Bearer" and self.pats_supported:
            user = next((u for u in self.users.values() if cred.strip() in u.pats), None)
            if user is None:
                raise ApiError(401, {"detail": "Invalid token."})
        if user is None:
            cookies = {}
            for part in (headers.get("Cookie") or "").split(";"):
                k, _, v = part.strip().partition("=")
                if k:
                    cookies[k] = v
            sess = self.sessions.get(cookies.get("sessionid", ""))
            if sess:
                user = self.users.get(sess[0])
                if method not in SAFE_METHODS:
                    token = headers.get("X-CSRFToken")
                    if not token:
                        raise ApiError(403, {"detail": "CSRF Failed: CSRF token missing."})
                    if token != sess[1] or cookies.get("csrftoken") != sess[1]:
                        raise ApiError(403, {"detail": "CSRF Failed: CSRF token incorrect."})
        if user is not None and user.status == "unauthorized":
            raise ApiError(401, {"detail": "User inactive or deleted."})
        return user

    def _basic_user(self, uid: int | None) -> dict | None:
        if uid is None:
            return None
        u = next(x for x in self.users.values() if x.id == uid)
        return {"url": f"{self._base}/api/users/{u.id}", "id": u.id, "username": u.username,
                "first_name": "", "last_name": ""}

    def _user_by_id(self, uid) -> User | None:
        return next((x for x in self.users.values() if x.id == uid), None)

    # -- routing -------------------------------------------------------------------------------
    _ROUTES = [
        ("GET", r"/api/server/about", "about"),
        ("POST", r"/api/auth/login", "login"),
        ("POST", r"/api/auth/logout", "logout"),
        ("GET", r"/api/users/self", "users_self"),
        ("GET", r"/api/users", "users_list"),
        ("GET", r"/api/projects", "projects_list"),
        ("POST", r"/api/projects", "projects_create"),
        ("GET", r"/api/projects/(\d+)", "projects_get"),
        ("PATCH", r"/api/projects/(\d+)", "projects_patch"),
        ("DELETE", r"/api/projects/(\d+)", "projects_delete"),
        ("GET", r"/api/labels", "labels_list"),
        ("GET", r"/api/labels/(\d+)", "labels_get"),
        ("GET", r"/api/tasks", "tasks_list"),
        ("POST", r"/api/tasks", "tasks_create"),
        ("GET", r"/api/tasks/(\d+)", "tasks_get"),
        ("PATCH", r"/api/tasks/(\d+)", "tasks_patch"),
        ("DELETE", r"/api/tasks/(\d+)", "tasks_delete"),
        ("POST", r"/api/tasks/(\d+)/data", "data_upload"),
        ("PATCH", r"/api/tasks/(\d+)/data/([0-9a-f-]{36})", "tus_chunk"),
        ("HEAD", r"/api/tasks/(\d+)/data/([0-9a-f-]{36})", "tus_chunk"),
        ("GET", r"/api/tasks/(\d+)/data", "task_data"),
        ("GET", r"/api/tasks/(\d+)/data/meta", "task_meta"),
        ("GET", r"/api/tasks/(\d+)/status", "task_status"),
        ("GET", r"/api/tasks/(\d+)/annotations", "task_ann_get"),
        ("PUT", r"/api/tasks/(\d+)/annotations", "task_ann_put"),
        ("PATCH", r"/api/tasks/(\d+)/annotations", "task_ann_patch"),
        ("DELETE", r"/api/tasks/(\d+)/annotations", "task_ann_delete"),
        ("GET", r"/api/jobs", "jobs_list"),
        ("GET", r"/api/jobs/(\d+)", "jobs_get"),
        ("PATCH", r"/api/jobs/(\d+)", "jobs_patch"),
        ("GET", r"/api/jobs/(\d+)/data", "job_data"),
        ("GET", r"/api/jobs/(\d+)/data/meta", "job_meta"),
        ("GET", r"/api/jobs/(\d+)/annotations", "job_ann_get"),
        ("PUT", r"/api/jobs/(\d+)/annotations", "job_ann_put"),
        ("PATCH", r"/api/jobs/(\d+)/annotations", "job_ann_patch"),
        ("DELETE", r"/api/jobs/(\d+)/annotations", "job_ann_delete"),
        ("GET", r"/api/requests", "requests_list"),
        ("GET", r"/api/requests/([^/]+)", "requests_get"),
    ]
    _PUBLIC = ("about", "login", "logout")
    _ALWAYS_ALLOWED = ("about", "login", "logout", "users_self")

    def _route(self, method, path, query, headers, body) -> Response:
        self._base = self._origin(headers)
        p = path.rstrip("/") or "/"
        handler, args, path_known = None, (), False
        for m, rx, name in self._ROUTES:
            mt = re.fullmatch(rx, p)
            if mt:
                path_known = True
                if m == method:
                    handler, args = name, mt.groups()
                    break
        if handler is None:
            if path_known:
                raise ApiError(405, {"detail": f'Method "{method}" not allowed.'})
            return Response(404, b"<h1>Not Found</h1><p>The requested resource was not found.</p>",
                            {"Content-Type": "text/html"})
        if not _acceptable(headers.get("Accept")):
            raise ApiError(406, {"detail": "Could not satisfy the request Accept header."})
        user = self._authenticate(method, headers)
        if handler not in self._PUBLIC and user is None:
            raise ApiError(401, {"detail": "Authentication credentials were not provided."})
        if user is not None and user.status == "forbidden" and handler not in self._ALWAYS_ALLOWED:
            raise _forbidden()
        data = None
        ctype = headers.get("Content-Type") or ""
        if body and "json" in ctype:
            try:
                data = json.loads(body)
            except ValueError as e:
                raise _bad({"detail": f"JSON parse error - {e}"})
        req = {"method": method, "query": query, "headers": headers, "body": body, "json": data,
               "ctype": ctype, "user": user, "path": p}
        return getattr(self, "_h_" + handler)(req, *args)

    # -- server / auth endpoints ---------------------------------------------------------------
    def _h_about(self, req):
        about = {"name": "Computer Vision Annotation Tool",
                 "description": "CVAT is completely re-designed and re-implemented version of Video "
                                "Annotation Tool from Irvine, California, USA.",
                 "version": self.version}
        if _vtuple(self.version) >= (2, 30):
            about.update(logo_url=f"{self._base}/static/logo.svg", subtitle="Test server")
            return _json(200, about, "About")
        return _json(200, about)

    def _h_login(self, req):
        d = req["json"] or {}
        name = d.get("username") or ""
        if not name and d.get("email"):
            name = next((u.username for u in self.users.values() if u.username == d["email"]), "")
        u = self.users.get(name)
        if u is None or u.password != d.get("password") or u.status == "unauthorized":
            raise _bad({"non_field_errors": ["Unable to log in with provided credentials."]})
        sid, csrf = secrets.token_hex(16), secrets.token_hex(16)
        self.sessions[sid] = (u.username, csrf)
        return _json(200, {"key": u.key}, "Token", {"Set-Cookie": [
            f"sessionid={sid}; HttpOnly; Path=/; SameSite=Lax", f"csrftoken={csrf}; Path=/; SameSite=Lax"]})

    def _h_logout(self, req):
        cookies = dict(p.strip().partition("=")[::2] for p in (req["headers"].get("Cookie") or "").split(";") if p)
        self.sessions.pop(cookies.get("sessionid", ""), None)
        return _json(200, {"detail": "Successfully logged out."}, "RestAuthDetail")

    def _meta_user(self, u: User) -> dict:
        return {"url": f"{self._base}/api/users/{u.id}", "id": u.id, "username": u.username,
                "first_name": "", "last_name": "", "email": f"{u.username}@example.com",
                "groups": [u.role], "is_staff": u.role == "admin", "is_superuser": u.role == "admin",
                "is_active": True, "last_login": _now(), "date_joined": u.joined,
                "has_analytics_access": u.role == "admin"}

    def _h_users_self(self, req):
        return _json(200, self._meta_user(req["user"]), "MetaUser")

    def _h_users_list(self, req):
        users = sorted(self.users.values(), key=lambda u: u.id)
        if "username" in req["query"]:
            users = [u for u in users if u.username == req["query"]["username"]]
        return self._page(req, [self._meta_user(u) for u in users], "PaginatedMetaUserList")

    # -- pagination ----------------------------------------------------------------------------
    def _page(self, req, items: list, model: str) -> Response:
        q = req["query"]
        try:
            page = int(q.get("page", 1))
            size = min(int(q.get("page_size", self.page_size)), 1000)
        except ValueError:
            raise _not_found()
        if page < 1 or (page > 1 and (page - 1) * size >= len(items)):
            raise ApiError(404, {"detail": "Invalid page."})
        chunk = items[(page - 1) * size: page * size]

        def link(pg):
            qs = dict(q)
            qs["page"] = str(pg)
            return f"{self._base}{req['path']}?" + "&".join(f"{k}={v}" for k, v in qs.items())
        return _json(200, {"count": len(items), "next": link(page + 1) if page * size < len(items) else None,
                           "previous": link(page - 1) if page > 1 else None, "results": chunk}, model)

    # -- visibility ----------------------------------------------------------------------------
    def _sees_project(self, u: User, p: dict) -> bool:
        return u.role == "admin" or p["owner_id"] == u.id or p["assignee_id"] == u.id

    def _owns_task(self, u: User, t: dict) -> bool:
        if u.role == "admin" or t["owner_id"] == u.id or t["assignee_id"] == u.id:
            return True
        return bool(t["project_id"]) and self._sees_project(u, self.projects[t["project_id"]])

    def _sees_task(self, u: User, t: dict) -> bool:
        """Task owners/assignees (and project's) see it; so do assignees of one of its jobs."""
        return self._owns_task(u, t) or any(self.jobs[j]["assignee_id"] == u.id for j in t["jobs"])

    def _sees_job(self, u: User, j: dict) -> bool:
        """A worker sees the jobs assigned to them, not their neighbours."""
        return j["assignee_id"] == u.id or self._owns_task(u, self.tasks[j["task_id"]])

    def _get(self, kind: str, oid, u: User) -> dict:
        table = {"project": self.projects, "task": self.tasks, "job": self.jobs}[kind]
        obj = table.get(int(oid))
        if obj is None:
            raise _not_found()
        if not {"project": self._sees_project, "task": self._sees_task, "job": self._sees_job}[kind](u, obj):
            raise _forbidden()
        return obj

    # -- labels --------------------------------------------------------------------------------
    def _create_labels(self, specs, *, project_id=None, task_id=None) -> list[int]:
        if not isinstance(specs, list):
            raise _bad({"labels": ['Expected a list of items but got type "dict".']})
        names = set()
        ids = []
        for spec in specs:
            if not isinstance(spec, dict) or not spec.get("name"):
                raise _bad({"labels": [{"name": ["This field is required."]}]})
            if spec["name"] in names:
                raise _bad({"labels": [f"Label '{spec['name']}' already exists"]})
            names.add(spec["name"])
            ids.append(self._create_label(spec, project_id, task_id, None))
        return ids

    def _attrs(self, specs) -> list[dict]:
        out, seen = [], set()
        for a in specs or []:
            for k in ("name", "mutable", "input_type", "values"):
                if k not in a:
                    raise _bad({"attributes": [{k: ["This field is required."]}]})
            if a["input_type"] not in INPUT_TYPES:
                raise _bad({"attributes": [{"input_type": [f'"{a["input_type"]}" is not a valid choice.']}]})
            if a["name"] in seen:
                raise _bad([f"Duplicate attribute with name '{a['name']}' exists"])
            seen.add(a["name"])
            values = "\n".join(str(v) for v in a["values"]).split("\n")   # CVAT stores them joined
            out.append({"id": self._next("attribute"), "name": a["name"], "mutable": bool(a["mutable"]),
                        "input_type": a["input_type"], "default_value": str(a.get("default_value") or
                                                                             (values[0] if values else "")),
                        "values": values})
        return out

    def _create_label(self, spec, project_id, task_id, parent_id) -> int:
        ltype = spec.get("type") or "any"
        if ltype not in ("any", "tag") + SHAPE_TYPES:
            raise _bad({"labels": [{"type": [f'"{ltype}" is not a valid choice.']}]})
        lid = self._next("label")
        lab = {"id": lid, "name": spec["name"], "color": spec.get("color") or "#%06x" % (lid * 2654435761 % 0xFFFFFF),
               "type": ltype, "attributes": self._attrs(spec.get("attributes")), "parent_id": parent_id,
               "project_id": project_id, "task_id": task_id, "sublabels": [], "svg": ""}
        self.labels[lid] = lab
        subs = spec.get("sublabels") or []
        if subs and ltype != "skeleton":
            raise _bad(["Only skeleton labels can have sublabels"])
        for s in subs:
            if s.get("type") not in (None, "points"):
                raise _bad([f"Sublabel '{s.get('name')}' of a skeleton must have type 'points'"])
            lab["sublabels"].append(self._create_label(dict(s, type="points"), project_id, task_id, lid))
        if ltype == "skeleton":
            if not subs:
                raise _bad(["Skeleton label must have sublabels"])
            svg = spec.get("svg") or ""
            for sid in lab["sublabels"]:
                svg = svg.replace(f'data-label-name="{self.labels[sid]["name"]}"', f'data-label-id="{sid}"')
            lab["svg"] = svg
        return lid

    def _label_json(self, lid: int) -> dict:
        lab = self.labels[lid]
        out = {"id": lid, "name": lab["name"], "color": lab["color"], "type": lab["type"],
               "attributes": copy.deepcopy(lab["attributes"]), "parent_id": lab["parent_id"],
               "has_parent": lab["parent_id"] is not None,
               "sublabels": [{"id": s, "name": self.labels[s]["name"], "color": self.labels[s]["color"],
                              "type": self.labels[s]["type"], "has_parent": True,
                              "attributes": copy.deepcopy(self.labels[s]["attributes"])} for s in lab["sublabels"]]}
        if lab["type"] == "skeleton":
            out["svg"] = lab["svg"]
        if lab["project_id"]:
            out["project_id"] = lab["project_id"]
        elif lab["task_id"]:
            out["task_id"] = lab["task_id"]
        return out

    def _task_label_ids(self, t: dict) -> list[int]:
        """Top-level labels that apply to a task (its project's, or its own)."""
        if t["project_id"]:
            return [l["id"] for l in self.labels.values() if l["project_id"] == t["project_id"] and not l["parent_id"]]
        return [l["id"] for l in self.labels.values() if l["task_id"] == t["id"] and not l["parent_id"]]

    def _h_labels_list(self, req):
        q, u = req["query"], req["user"]
        if "project_id" in q:
            p = self._get("project", q["project_id"], u)
            ids = [l["id"] for l in self.labels.values() if l["project_id"] == p["id"]]
        elif "task_id" in q:
            ids = self._task_label_ids(self._get("task", q["task_id"], u))
            ids = [i for i in self.labels if i in ids or self.labels[i]["parent_id"] in ids]
        elif "job_id" in q:
            t = self.tasks[self._get("job", q["job_id"], u)["task_id"]]
            top = self._task_label_ids(t)
            ids = [i for i in self.labels if i in top or self.labels[i]["parent_id"] in top]
        else:
            ids = [i for i, l in self.labels.items() if
                   (l["project_id"] and self._sees_project(u, self.projects[l["project_id"]])) or
                   (l["task_id"] and self._sees_task(u, self.tasks[l["task_id"]]))]
        if "parent_id" in q:
            ids = [i for i in ids if str(self.labels[i]["parent_id"]) == q["parent_id"]]
        else:
            ids = [i for i in ids if self.labels[i]["parent_id"] is None]
        if "name" in q:
            ids = [i for i in ids if self.labels[i]["name"] == q["name"]]
        return self._page(req, [self._label_json(i) for i in sorted(ids)], "PaginatedLabelList")

    def _h_labels_get(self, req, lid):
        lab = self.labels.get(int(lid))
        if lab is None:
            raise _not_found()
        if lab["project_id"]:
            self._get("project", lab["project_id"], req["user"])
        else:
            self._get("task", lab["task_id"], req["user"])
        return _json(200, self._label_json(int(lid)), "Label")

    # -- projects ------------------------------------------------------------------------------
    def _storage(self) -> dict:
        return {"id": self._next("storage"), "location": "local", "cloud_storage_id": None}

    def _project_json(self, p: dict) -> dict:
        n = sum(1 for t in self.tasks.values() if t["project_id"] == p["id"])
        return {"url": f"{self._base}/api/projects/{p['id']}", "id": p["id"], "name": p["name"],
                "owner": self._basic_user(p["owner_id"]), "assignee": self._basic_user(p["assignee_id"]),
                "guide_id": None, "bug_tracker": p["bug_tracker"], "task_subsets": [],
                "created_date": p["created"], "updated_date": p["updated"], "status": "annotation",
                "dimension": "2d" if n else None, "organization": None, "organization_id": None,
                "target_storage": p["target_storage"], "source_storage": p["source_storage"],
                "assignee_updated_date": None,
                "tasks": {"count": n, "url": f"{self._base}/api/tasks?project_id={p['id']}"},
                "labels": {"url": f"{self._base}/api/labels?project_id={p['id']}"}}

    def _h_projects_list(self, req):
        q, u = req["query"], req["user"]
        items = [p for p in self.projects.values() if self._sees_project(u, p)]
        if "name" in q:
            items = [p for p in items if p["name"] == q["name"]]
        if "search" in q:
            items = [p for p in items if q["search"].lower() in p["name"].lower()]
        items.sort(key=lambda p: -p["id"])
        return self._page(req, [self._project_json(p) for p in items], "PaginatedProjectReadList")

    def _h_projects_create(self, req):
        u, d = req["user"], req["json"]
        if u.role == "worker":
            raise _forbidden()
        if not isinstance(d, dict) or not d.get("name"):
            raise _bad({"name": ["This field is required."]})
        pid = self._next("project")
        now = _now()
        p = {"id": pid, "name": d["name"], "owner_id": u.id, "assignee_id": d.get("assignee_id"),
             "bug_tracker": d.get("bug_tracker") or "", "created": now, "updated": now,
             "target_storage": self._storage(), "source_storage": self._storage()}
        self.projects[pid] = p
        try:
            self._create_labels(d.get("labels") or [], project_id=pid)
        except ApiError:
            for lid in [i for i, l in self.labels.items() if l["project_id"] == pid]:
                del self.labels[lid]
            del self.projects[pid]
            raise
        return _json(201, self._project_json(p), "ProjectRead")

    def _h_projects_get(self, req, pid):
        return _json(200, self._project_json(self._get("project", pid, req["user"])), "ProjectRead")

    def _h_projects_patch(self, req, pid):
        p = self._get("project", pid, req["user"])
        d = req["json"] or {}
        if req["user"].role != "admin" and p["owner_id"] != req["user"].id:
            raise _forbidden()
        if "name" in d:
            p["name"] = d["name"]
        if "labels" in d:
            self._create_labels([x for x in d["labels"] if not x.get("id")], project_id=p["id"])
        p["updated"] = _now()
        return _json(200, self._project_json(p), "ProjectRead")

    def _h_projects_delete(self, req, pid):
        p = self._get("project", pid, req["user"])
        if req["user"].role != "admin" and p["owner_id"] != req["user"].id:
            raise _forbidden()
        for t in [t for t in self.tasks.values() if t["project_id"] == p["id"]]:
            self._delete_task(t)
        for lid in [i for i, l in self.labels.items() if l["project_id"] == p["id"]]:
            del self.labels[lid]
        del self.projects[p["id"]]
        return Response(204)

    # -- tasks ---------------------------------------------------------------------------------
    def _task_json(self, t: dict) -> dict:
        has_data = bool(t["frames"])
        jobs = [self.jobs[j] for j in t["jobs"]]
        p = self.projects.get(t["project_id"]) if t["project_id"] else None
        return {"url": f"{self._base}/api/tasks/{t['id']}", "id": t["id"], "name": t["name"],
                "project_id": t["project_id"], "project_name": p["name"] if p else None,
                "mode": "annotation" if has_data else "", "owner": self._basic_user(t["owner_id"]),
                "assignee": self._basic_user(t["assignee_id"]), "bug_tracker": t["bug_tracker"],
                "created_date": t["created"], "updated_date": t["updated"], "overlap": t["overlap"],
                "segment_size": t["segment_size"], "status": t["status"],
                "data_chunk_size": t["chunk_size"] if has_data else None,
                "data_compressed_chunk_type": "imageset" if has_data else None,
                "data_original_chunk_type": "imageset" if has_data else None,
                "data_cloud_storage_id": None, "guide_id": None, "size": len(t["frames"]),
                "image_quality": t["image_quality"], "data": t["id"] if has_data else None,
                "dimension": "2d", "media_type": "image", "subset": t["subset"], "organization": None,
                "organization_id": None, "target_storage": t["target_storage"],
                "source_storage": t["source_storage"], "assignee_updated_date": None, "validation_mode": None,
                "jobs": {"count": len(jobs), "completed": sum(j["state"] == "completed" for j in jobs),
                         "validation": sum(j["stage"] == "validation" for j in jobs),
                         "url": f"{self._base}/api/jobs?task_id={t['id']}"},
                "labels": {"url": f"{self._base}/api/labels?task_id={t['id']}"}}

    def _h_tasks_list(self, req):
        q, u = req["query"], req["user"]
        items = [t for t in self.tasks.values() if self._sees_task(u, t)]
        if "project_id" in q:
            items = [t for t in items if str(t["project_id"]) == q["project_id"]]
        if "name" in q:
            items = [t for t in items if t["name"] == q["name"]]
        items.sort(key=lambda t: -t["id"])
        return self._page(req, [self._task_json(t) for t in items], "PaginatedTaskReadList")

    def _h_tasks_create(self, req):
        u, d = req["user"], req["json"]
        if u.role == "worker":
            raise _forbidden()
        if not isinstance(d, dict) or not d.get("name"):
            raise _bad({"name": ["This field is required."]})
        project_id = d.get("project_id")
        if project_id is not None:
            self._get("project", project_id, u)
            if d.get("labels"):
                raise _bad({"labels": ["Task inside a project cannot have its own labels"]})
        elif not d.get("labels"):
            raise _bad({"label_set": ["Label set must not be empty"]})
        seg = d.get("segment_size")
        if seg is not None and (not isinstance(seg, int) or seg < 0):
            raise _bad({"segment_size": ["Ensure this value is greater than or equal to 0."]})
        tid = self._next("task")
        now = _now()
        t = {"id": tid, "name": d["name"], "project_id": project_id, "owner_id": u.id,
             "assignee_id": d.get("assignee_id"), "bug_tracker": d.get("bug_tracker") or "",
             "created": now, "updated": now, "overlap": d.get("overlap"), "segment_size": seg or 0,
             "status": "annotation", "subset": d.get("subset") or "", "frames": [], "jobs": [],
             "chunk_size": None, "image_quality": 70, "upload": None,
             "target_storage": self._storage(), "source_storage": self._storage()}
        self.tasks[tid] = t
        if project_id is None:
            try:
                self._create_labels(d["labels"], task_id=tid)
            except ApiError:
                del self.tasks[tid]
                raise
        if project_id:
            self.projects[project_id]["updated"] = now
        return _json(201, self._task_json(t), "TaskRead")

    def _h_tasks_get(self, req, tid):
        return _json(200, self._task_json(self._get("task", tid, req["user"])), "TaskRead")

    def _h_tasks_patch(self, req, tid):
        t = self._get("task", tid, req["user"])
        d = req["json"] or {}
        for k in ("name", "bug_tracker", "subset"):
            if k in d:
                t[k] = d[k]
        if "assignee_id" in d:
            t["assignee_id"] = d["assignee_id"]
        t["updated"] = _now()
        return _json(200, self._task_json(t), "TaskRead")

    def _delete_task(self, t):
        for j in t["jobs"]:
            self.jobs.pop(j, None)
        for lid in [i for i, l in self.labels.items() if l["task_id"] == t["id"]]:
            del self.labels[lid]
        del self.tasks[t["id"]]

    def _h_tasks_delete(self, req, tid):
        t = self._get("task", tid, req["user"])
        if req["user"].role == "worker":
            raise _forbidden()
        self._delete_task(t)
        return Response(204)

    # -- task data upload ------------------------------------------------------------------------
    _TUS = {"Tus-Resumable": "1.0.0", "Tus-Version": "1.0.0", "Tus-Extension": "", "Tus-Max-Size": "26843545600"}

    def _h_data_upload(self, req, tid):
        t = self._get("task", tid, req["user"])
        h = req["headers"]
        if t["frames"]:
            raise _bad(["Adding more data is not supported"])
        start, finish = h.get("Upload-Start") is not None, h.get("Upload-Finish") is not None
        if finish:
            return self._upload_finish(req, t)
        if start:
            t["upload"] = {"files": {}, "tus": {}}
            return Response(202)
        if h.get("Upload-Length") is not None:
            return self._tus_create(req, t)
        if h.get("Upload-Multiple") is not None:
            if t["upload"] is None:
                t["upload"] = {"files": {}, "tus": {}}
            fields, files = _parse_multipart(req["body"], req["ctype"])
            for name, fname, data in files:
                if not name.startswith("client_files"):
                    continue
                base = fname.replace("\\", "/").rsplit("/", 1)[-1]     # Django keeps the basename only
                t["upload"]["files"][base] = t["upload"]["files"].get(base, b"") + data
            return Response(200)
        return self._upload_finish(req, t)      # one-request upload, no protocol headers

    def _tus_create(self, req, t):
        if t["upload"] is None:
            t["upload"] = {"files": {}, "tus": {}}
        meta = {}
        for kv in (req["headers"].get("Upload-Metadata") or "").split(","):
            k, _, v = kv.strip().partition(" ")
            if k:
                meta[k] = base64.b64decode(v).decode() if v else ""
        fname = meta.get("filename", "")
        if not fname or "/" in fname or fname.startswith("."):
            raise ApiError(400, f"File name {fname} is not allowed", self._TUS)
        if fname in t["upload"]["files"]:
            raise ApiError(409, "File with same name already exists", self._TUS)
        fid = str(uuid.uuid4())
        t["upload"]["tus"][fid] = {"name": fname, "size": int(req["headers"]["Upload-Length"]), "data": bytearray()}
        loc = f"{self._base}/api/tasks/{t['id']}/data/{fid}"
        return Response(201, b"", {**self._TUS, "Location": loc, "Upload-Filename": fname})

    def _h_tus_chunk(self, req, tid, fid):
        t = self._get("task", tid, req["user"])
        up = (t["upload"] or {}).get("tus", {}).get(fid)
        if up is None:
            return Response(404, b"", dict(self._TUS))
        if req["method"] == "HEAD":
            return Response(200, b"", {**self._TUS, "Upload-Offset": str(len(up["data"])),
                                       "Upload-Length": str(up["size"])})
        off = int(req["headers"].get("Upload-Offset") or 0)
        if off != len(up["data"]):
            return Response(409, b"", dict(self._TUS))
        up["data"] += req["body"]
        if len(up["data"]) >= up["size"]:
            t["upload"]["files"][up["name"]] = bytes(up["data"])
        return Response(204, b"", {**self._TUS, "Upload-Offset": str(len(up["data"])),
                                   "Upload-Filename": up["name"]})

    def _upload_finish(self, req, t):
        d = req["json"]
        if d is None and req["body"] and "multipart" in req["ctype"]:
            d, _ = _parse_multipart(req["body"], req["ctype"])
        d = d or {}
        if "image_quality" not in d:
            raise _bad({"image_quality": ["This field is required."]})
        try:
            quality = int(d["image_quality"])
        except (TypeError, ValueError):
            raise _bad({"image_quality": ["A valid integer is required."]})
        if not 0 <= quality <= 100:
            raise _bad({"image_quality": ["Ensure this value is less than or equal to 100."]})
        if d.get("remote_files") or d.get("server_files"):
            raise _bad(["The test server only supports client_files"])
        files = dict((t["upload"] or {}).get("files", {}))
        method = d.get("sorting_method") or "lexicographical"
        order = list(files)
        if method == "lexicographical":
            order.sort()
        elif method == "natural":
            order.sort(key=_natural_key)
        elif method == "predefined":
            wanted = d.get("upload_file_order") or []
            if wanted:
                wanted = [w.replace("\\", "/").rsplit("/", 1)[-1] for w in wanted]
                if sorted(wanted) != sorted(files):
                    raise _bad(["Uploaded files do not match the 'upload_file_order' field contents."])
                order = wanted
        elif method == "random":
            import random
            random.Random(0).shuffle(order)
        else:
            raise _bad({"sorting_method": [f'"{method}" is not a valid choice.']})
        chunk_size = d.get("chunk_size")
        rq_id = f"action=create&target=task&target_id={t['id']}"
        error, frames = None, []
        if not order:
            error = "No media data found"
        for name in order:
            try:
                raw, w, h, mime = _frame_image(files[name])
            except Exception as e:     # noqa: BLE001 - a bad upload fails the background request
                error = f"Couldn't read the image '{name}': {type(e).__name__}: {e}"
                break
            frames.append({"name": name, "width": w, "height": h, "data": raw, "mime": mime})
        now = _now()
        rq = {"id": rq_id, "status": "failed" if error else "queued", "message": error or "",
              "created_date": now, "polls_left": self.processing_polls, "owner_id": req["user"].id,
              "task_id": t["id"], "project_id": t["project_id"]}
        self.requests[rq_id] = rq
        t["upload"] = None
        if not error:
            rq["finalize"] = lambda: self._finish_task(t, frames, quality, chunk_size)
            if self.processing_polls == 0:
                self._complete(rq)
        return _json(202, {"rq_id": rq_id}, "RqId")

    def _complete(self, rq):
        fin = rq.pop("finalize", None)
        if fin:
            fin()
        rq["status"] = "finished"
        rq["finished_date"] = _now()

    def _finish_task(self, t, frames, quality, chunk_size):
        n = len(frames)
        t["frames"] = frames
        t["image_quality"] = quality
        t["chunk_size"] = int(chunk_size) if chunk_size else 36
        seg = t["segment_size"] or n
        t["segment_size"] = seg
        now = _now()
        for start in range(0, n, seg):
            jid = self._next("job")
            self.jobs[jid] = {"id": jid, "task_id": t["id"], "start": start, "stop": min(start + seg, n) - 1,
                              "stage": "annotation", "state": "new", "status": "annotation", "assignee_id": None,
                              "created": now, "updated": now, "version": 0,
                              "ann": {"tags": [], "shapes": [], "tracks": []}}
            t["jobs"].append(jid)
        t["updated"] = now

    def _h_task_status(self, req, tid):
        t = self._get("task", tid, req["user"])
        rq = self.requests.get(f"action=create&target=task&target_id={t['id']}")
        if rq and rq["status"] in ("queued", "started"):
            if rq["polls_left"] > 0:
                rq["polls_left"] -= 1
                rq["status"] = "started"
            else:
                self._complete(rq)
        state = {"queued": "Queued", "started": "Started", "finished": "Finished", "failed": "Failed"}[
            rq["status"]] if rq else ("Finished" if t["frames"] else "Unknown")
        return _json(200, {"state": state, "message": rq["message"] if rq else "", "progress": 100},
                     "RqStatus")

    # -- requests ------------------------------------------------------------------------------
    def _request_json(self, rq) -> dict:
        owner = self._user_by_id(rq["owner_id"])
        return {"id": rq["id"], "status": rq["status"], "message": rq["message"],
                "progress": 1.0 if rq["status"] == "finished" else 0.0,
                "created_date": rq["created_date"], "started_date": rq["created_date"],
                "finished_date": rq.get("finished_date"), "expiry_date": None,
                "owner": {"id": owner.id, "username": owner.username},
                "result_url": None, "result_id": rq["task_id"] if rq["status"] == "finished" else None,
                "operation": {"type": "create:task", "target": "task", "project_id": rq["project_id"],
                              "task_id": rq["task_id"], "job_id": None, "org_id": None, "format": None,
                              "function_id": None}}

    def _h_requests_get(self, req, rq_id):
        from urllib.parse import unquote
        if not self.requests_api:
            raise _not_found()
        rq = self.requests.get(unquote(rq_id))
        if rq is None:
            raise _not_found()
        if rq["owner_id"] != req["user"].id and req["user"].role != "admin":
            raise _forbidden()
        if rq["status"] in ("queued", "started"):
            if rq["polls_left"] > 0:
                rq["polls_left"] -= 1
                rq["status"] = "started"
            else:
                self._complete(rq)
        return _json(200, self._request_json(rq), "Request")

    def _h_requests_list(self, req):
        items = [r for r in self.requests.values() if r["owner_id"] == req["user"].id]
        return self._page(req, [self._request_json(r) for r in items], "PaginatedRequestList")

    # -- media -----------------------------------------------------------------------------------
    def _frames_meta(self, t, start, stop) -> dict:
        frames = [{"name": f["name"], "width": f["width"], "height": f["height"], "related_files": 0,
                   "has_related_context": False} for f in t["frames"][start:stop + 1]]
        return {"chunks_updated_date": t["updated"], "chunk_size": t["chunk_size"], "size": len(frames),
                "image_quality": t["image_quality"], "start_frame": start, "stop_frame": stop,
                "frame_filter": "", "frames": frames, "deleted_frames": [], "included_frames": None,
                "storage": "local", "cloud_storage_id": None}

    def _h_task_meta(self, req, tid):
        t = self._get("task", tid, req["user"])
        if not t["frames"]:
            raise _not_found()
        return _json(200, self._frames_meta(t, 0, len(t["frames"]) - 1), "DataMetaRead")

    def _h_job_meta(self, req, jid):
        j = self._get("job", jid, req["user"])
        return _json(200, self._frames_meta(self.tasks[j["task_id"]], j["start"], j["stop"]), "DataMetaRead")

    def _serve_media(self, t, q, lo, hi):
        kind = q.get("type")
        try:
            number = int(q.get("number", q.get("index", -1)))
        except ValueError:
            raise _bad({"number": ["A valid integer is required."]})
        if kind == "frame":
            if not lo <= number <= hi:
                raise _bad([f"The frame number should be in the [{lo}, {hi}] range"])
            f = t["frames"][number]
            return Response(200, f["data"], {"Content-Type": f["mime"]})
        if kind == "chunk":
            cs = t["chunk_size"]
            first = number * cs
            if number < 0 or first > hi:
                raise _bad([f"The chunk number should be in the [0, {hi // cs}] range"])
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
                for k in range(first, min(first + cs, hi + 1)):
                    ext = {"image/png": ".png"}.get(t["frames"][k]["mime"], ".jpg")
                    z.writestr(f"{k:06d}{ext}", t["frames"][k]["data"])
            return Response(200, buf.getvalue(), {"Content-Type": "application/zip"})
        raise _bad({"type": [f'"{kind}" is not a valid choice.']})

    def _h_task_data(self, req, tid):
        t = self._get("task", tid, req["user"])
        if not t["frames"]:
            raise _not_found()
        return self._serve_media(t, req["query"], 0, len(t["frames"]) - 1)

    def _h_job_data(self, req, jid):
        j = self._get("job", jid, req["user"])
        return self._serve_media(self.tasks[j["task_id"]], req["query"], j["start"], j["stop"])

    # -- jobs ------------------------------------------------------------------------------------
    def _job_json(self, j) -> dict:
        t = self.tasks[j["task_id"]]
        p = self.projects.get(t["project_id"]) if t["project_id"] else None
        return {"url": f"{self._base}/api/jobs/{j['id']}", "id": j["id"], "task_id": t["id"],
                "task_name": t["name"], "project_id": t["project_id"], "project_name": p["name"] if p else None,
                "assignee": self._basic_user(j["assignee_id"]), "guide_id": None, "dimension": "2d",
                "mode": "annotation", "media_type": "image", "bug_tracker": t["bug_tracker"] or None,
                "status": j["status"], "stage": j["stage"], "state": j["state"],
                "frame_count": j["stop"] - j["start"] + 1, "start_frame": j["start"], "stop_frame": j["stop"],
                "data_chunk_size": t["chunk_size"], "data_compressed_chunk_type": "imageset",
                "data_original_chunk_type": "imageset", "created_date": j["created"], "updated_date": j["updated"],
                "type": "annotation", "organization": None, "target_storage": t["target_storage"],
                "source_storage": t["source_storage"], "assignee_updated_date": None, "parent_job_id": None,
                "consensus_replicas": 0,
                "issues": {"count": 0, "url": f"{self._base}/api/issues?job_id={j['id']}"},
                "labels": {"url": f"{self._base}/api/labels?job_id={j['id']}"}}

    def _h_jobs_list(self, req):
        q, u = req["query"], req["user"]
        items = [j for j in self.jobs.values() if self._sees_job(u, j)]
        for key, get in (("task_id", lambda j: str(j["task_id"])),
                         ("project_id", lambda j: str(self.tasks[j["task_id"]]["project_id"])),
                         ("stage", lambda j: j["stage"]), ("state", lambda j: j["state"]),
                         ("type", lambda j: "annotation"),
                         ("assignee", lambda j: (self._user_by_id(j["assignee_id"]) or User(0, "", "")).username)):
            if key in q:
                items = [j for j in items if get(j) == q[key]]
        items.sort(key=lambda j: j["id"])
        return self._page(req, [self._job_json(j) for j in items], "PaginatedJobReadList")

    def _h_jobs_get(self, req, jid):
        return _json(200, self._job_json(self._get("job", jid, req["user"])), "JobRead")

    def _h_jobs_patch(self, req, jid):
        j = self._get("job", jid, req["user"])
        d = req["json"] or {}
        u = req["user"]
        t = self.tasks[j["task_id"]]
        if u.role != "admin" and t["owner_id"] != u.id and j["assignee_id"] != u.id:
            raise _forbidden()
        if "stage" in d and d["stage"] not in STAGES:
            raise _bad({"stage": [f'"{d["stage"]}" is not a valid choice.']})
        if "state" in d and d["state"] not in STATES:
            raise _bad({"state": [f'"{d["state"]}" is not a valid choice.']})
        if "assignee" in d:
            if d["assignee"] is not None and self._user_by_id(d["assignee"]) is None:
                raise _bad({"assignee": [f'Invalid pk "{d["assignee"]}" - object does not exist.']})
            j["assignee_id"] = d["assignee"]
        stage = d.get("stage", j["stage"])
        state = d.get("state", "new" if stage != j["stage"] else j["state"])
        if "stage" in d or "state" in d:
            j["status"] = ("annotation" if stage == "annotation" else
                           "completed" if stage == "acceptance" and state == "completed" else "validation")
        j["stage"], j["state"] = stage, state
        j["updated"] = _now()
        return _json(200, self._job_json(j), "JobRead")

    # -- annotations -----------------------------------------------------------------------------
    def _label_info(self, t) -> dict[int, dict]:
        top = self._task_label_ids(t)
        info = {}
        for lid in top:
            lab = self.labels[lid]
            info[lid] = {"type": lab["type"], "attrs": {a["id"]: a for a in lab["attributes"]},
                         "subs": {s: {a["id"]: a for a in self.labels[s]["attributes"]} for s in lab["sublabels"]}}
        return info

    def _clean_attrs(self, attrs, allowed: dict, where: str) -> list[dict]:
        if not isinstance(attrs, list):
            raise _bad({where: ["Expected a list of items."]})
        out = []
        for a in attrs:
            if not isinstance(a, dict) or "spec_id" not in a or "value" not in a:
                raise _bad({where: [{"spec_id": ["This field is required."]}]})
            sid = a["spec_id"]
            if not isinstance(sid, int) or sid not in allowed:
                raise _bad([f"spec_id `{sid}` is invalid"])
            v = str(a["value"]) if not isinstance(a["value"], bool) else str(a["value"]).lower()
            if len(v) > 4096:
                raise _bad({where: [{"value": ["Ensure this field has no more than 4096 characters."]}]})
            out.append({"spec_id": sid, "value": v})
        return out

    def _clean_shape(self, s, info, lo, hi, sub_attrs=None) -> dict:
        if not isinstance(s, dict):
            raise _bad({"shapes": ["Invalid data. Expected a dictionary."]})
        for k in ("type", "frame", "label_id"):
            if k not in s:
                raise _bad({"shapes": [{k: ["This field is required."]}]})
        if s["type"] not in SHAPE_TYPES:
            raise _bad({"shapes": [{"type": [f'"{s["type"]}" is not a valid choice.']}]})
        if not isinstance(s["frame"], int) or s["frame"] < 0:
            raise _bad({"shapes": [{"frame": ["A valid integer is required."]}]})
        if not lo <= s["frame"] <= hi:
            raise _bad([f"frame {s['frame']} is outside the frame range [{lo}, {hi}]"])
        lid = s["label_id"]
        if sub_attrs is None:
            if lid not in info:
                raise _bad([f"label_id `{lid}` is invalid"])
            allowed = info[lid]["attrs"]
        else:
            if lid not in sub_attrs:
                raise _bad([f"label_id `{lid}` is invalid (not a sublabel of the skeleton's label)"])
            allowed = sub_attrs[lid]
        pts = s.get("points", [])
        if not isinstance(pts, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                for v in pts):
            raise _bad({"shapes": [{"points": ["Value must be a float or an integer"]}]})
        for k in ("occluded", "outside"):
            if k in s and not isinstance(s[k], bool):
                raise _bad({"shapes": [{k: ["Must be a valid boolean."]}]})
        out = {"id": s.get("id"), "type": s["type"], "frame": s["frame"], "label_id": lid,
               "group": s.get("group") or 0, "source": s.get("source") or "manual",
               "occluded": bool(s.get("occluded", False)), "outside": bool(s.get("outside", False)),
               "z_order": int(s.get("z_order") or 0), "rotation": float(s.get("rotation") or 0.0),
               "points": [float(v) for v in pts],
               "attributes": self._clean_attrs(s.get("attributes", []), allowed, "attributes")}
        elements = s.get("elements") or []
        if s["type"] == "skeleton" and sub_attrs is None:
            if info[lid]["type"] not in ("skeleton", "any"):
                raise _bad([f"label_id `{lid}` is not a skeleton label"])
            if not elements:
                raise _bad(["A skeleton shape must have elements"])
            seen = set()
            els = []
            for el in elements:
                e = self._clean_shape(el, info, lo, hi, info[lid]["subs"])
                if e["type"] != "points" or len(e["points"]) != 2:
                    raise _bad(["Skeleton elements must be 'points' shapes with exactly one point"])
                if e["frame"] != s["frame"]:
                    raise _bad(["Skeleton elements must be on the frame of their skeleton"])
                if e["label_id"] in seen:
                    raise _bad([f"Skeleton has two elements with label_id `{e['label_id']}`"])
                seen.add(e["label_id"])
                els.append(e)
            out["elements"] = els
            out["points"] = []
        elif elements:
            raise _bad(["Only skeleton shapes can have elements"])
        elif sub_attrs is None and s["type"] != "skeleton":
            if info[lid]["type"] == "skeleton":
                raise _bad([f"label_id `{lid}` is a skeleton label; shape type must be 'skeleton'"])
            if not out["points"]:
                raise _bad({"shapes": [{"points": ["This list may not be empty."]}]})
            out["elements"] = []
        return out

    def _clean_data(self, d, t, lo, hi) -> dict:
        if not isinstance(d, dict):
            raise _bad({"non_field_errors": ["Invalid data. Expected a dictionary."]})
        info = self._label_info(t)
        out = {"tags": [], "shapes": [], "tracks": []}
        for tag in d.get("tags") or []:
            if not isinstance(tag, dict) or "frame" not in tag or "label_id" not in tag:
                raise _bad({"tags": [{"frame": ["This field is required."]}]})
            if tag["label_id"] not in info:
                raise _bad([f"label_id `{tag['label_id']}` is invalid"])
            if not lo <= tag["frame"] <= hi:
                raise _bad([f"frame {tag['frame']} is outside the frame range [{lo}, {hi}]"])
            out["tags"].append({"id": tag.get("id"), "frame": tag["frame"], "label_id": tag["label_id"],
                                "group": tag.get("group") or 0, "source": tag.get("source") or "manual",
                                "attributes": self._clean_attrs(tag.get("attributes", []),
                                                                info[tag["label_id"]]["attrs"], "attributes")})
        for s in d.get("shapes") or []:
            out["shapes"].append(self._clean_shape(s, info, lo, hi))
        for tr in d.get("tracks") or []:
            if not isinstance(tr, dict) or tr.get("label_id") not in info:
                raise _bad([f"label_id `{(tr or {}).get('label_id')}` is invalid"])
            out["tracks"].append(copy.deepcopy(tr))
        return out

    def _assign_ids(self, ann: dict, kind_ids: set) -> None:
        for key in ("tags", "shapes", "tracks"):
            for a in ann[key]:
                for obj in [a] + a.get("elements", []):
                    if obj.get("id") is None:
                        obj["id"] = self._next("shape" if key != "tags" else "tag")
                    elif obj["id"] in kind_ids:
                        raise _bad([f"An annotation with id {obj['id']} already exists"])
                    kind_ids.add(obj["id"])

    def _all_ids(self) -> set:
        ids = set()
        for j in self.jobs.values():
            for key in ("tags", "shapes", "tracks"):
                for a in j["ann"][key]:
                    ids.add(a["id"])
                    ids.update(e["id"] for e in a.get("elements", []))
        return ids

    def _touch(self, j) -> None:
        now = _now()
        j["updated"] = now
        j["version"] += 1
        t = self.tasks[j["task_id"]]
        t["updated"] = now
        if t["project_id"]:
            self.projects[t["project_id"]]["updated"] = now

    def _with_defaults(self, a: dict, t) -> dict:
        """A stored annotation as CVAT returns it: every attribute of its label present (defaults filled)."""
        a = copy.deepcopy(a)
        for obj in [a] + a.get("elements", []):
            specs = self.labels[obj["label_id"]]["attributes"]
            have = {x["spec_id"] for x in obj["attributes"]}
            for sp in specs:
                if sp["id"] not in have:
                    obj["attributes"].append({"spec_id": sp["id"], "value": sp["default_value"]})
        return a

    def _job_ann(self, j) -> dict:
        t = self.tasks[j["task_id"]]
        return {"version": j["version"] if self.count_versions else 0,
                "tags": [self._with_defaults(x, t) for x in j["ann"]["tags"]],
                # CVAT orders shapes by frame only; within a frame the database's order is
                # arbitrary (newer first is what a real server gave after updates): mimic that
                "shapes": [self._with_defaults(x, t)
                           for x in sorted(j["ann"]["shapes"], key=lambda s: (s["frame"], -s["id"]))],
                "tracks": copy.deepcopy(j["ann"]["tracks"])}

    def _split(self, data, t) -> list[tuple[dict, dict]]:
        parts = []
        for jid in t["jobs"]:
            j = self.jobs[jid]
            parts.append((j, {k: [a for a in data[k] if j["start"] <= a.get("frame", -1) <= j["stop"]]
                              for k in ("tags", "shapes", "tracks")}))
        return parts

    def _apply(self, j, action: str, data: dict) -> dict:
        """PUT (action None) / PATCH create|update|delete on one job; returns what was written."""
        ann = j["ann"]
        changed = False
        if action is None:
            changed = any(ann[k] for k in ann) or any(data[k] for k in data)
            j["ann"] = data
        elif action == "create":
            for k in ann:
                ann[k].extend(data[k])
            changed = any(data[k] for k in data)
        elif action == "update":
            for k in ann:
                by_id = {a["id"]: a for a in data[k]}
                ann[k] = [by_id.pop(a["id"], a) for a in ann[k]]
            changed = any(data[k] for k in data)
        elif action == "delete":
            for k in ann:
                gone = {a["id"] for a in data[k]}
                ann[k] = [a for a in ann[k] if a["id"] not in gone]
            changed = any(data[k] for k in data)
        if changed:
            self._touch(j)
        return data

    def _annotations_write(self, req, t, jobs_data: list[tuple[dict, dict]], action):
        existing = self._all_ids()
        if action in (None, "create"):
            if action is None:
                for j, _ in jobs_data:
                    for k in ("tags", "shapes", "tracks"):
                        for a in j["ann"][k]:
                            existing.discard(a["id"])
                            existing.difference_update(e["id"] for e in a.get("elements", []))
            for _, d in jobs_data:
                self._assign_ids(d, existing)
        elif action == "update":
            for j, d in jobs_data:
                known = {a["id"]: a for k in ("tags", "shapes", "tracks") for a in j["ann"][k]}
                for k in ("tags", "shapes", "tracks"):
                    for a in d[k]:
                        if a.get("id") not in known:
                            raise _bad([f"Cannot update annotation {a.get('id')}: it does not exist in job {j['id']}"])
                        old_el = {e["id"] for e in known[a["id"]].get("elements", [])}
                        for e in a.get("elements", []):
                            if e.get("id") is None:
                                e["id"] = self._next("shape")
                            elif e["id"] not in old_el and e["id"] in existing:
                                raise _bad([f"An annotation with id {e['id']} already exists"])
        out = {"version": 0, "tags": [], "shapes": [], "tracks": []}
        for j, d in jobs_data:
            res = self._apply(j, action, d)
            for k in ("tags", "shapes", "tracks"):
                out[k].extend(res[k])
            out["version"] = j["version"] if self.count_versions else 0
        return _json(200, out, "LabeledData")

    def _action(self, req):
        a = req["query"].get("action")
        if a not in ("create", "update", "delete"):
            raise _bad(["Please specify a correct 'action' for the request"])
        return a

    def _h_job_ann_get(self, req, jid):
        j = self._get("job", jid, req["user"])
        if req["query"].get("format") or req["query"].get("action"):
            raise _bad(["The test server does not export annotation files"])
        return _json(200, self._job_ann(j), "LabeledData")

    def _h_job_ann_put(self, req, jid):
        j = self._get("job", jid, req["user"])
        t = self.tasks[j["task_id"]]
        return self._annotations_write(req, t, [(j, self._clean_data(req["json"], t, j["start"], j["stop"]))], None)

    def _h_job_ann_patch(self, req, jid):
        j = self._get("job", jid, req["user"])
        t = self.tasks[j["task_id"]]
        action = self._action(req)
        d = self._clean_data(req["json"], t, j["start"], j["stop"])
        return self._annotations_write(req, t, [(j, d)], action)

    def _h_job_ann_delete(self, req, jid):
        j = self._get("job", jid, req["user"])
        if any(j["ann"][k] for k in j["ann"]):
            j["ann"] = {"tags": [], "shapes": [], "tracks": []}
            self._touch(j)
        return Response(204)

    def _h_task_ann_get(self, req, tid):
        t = self._get("task", tid, req["user"])
        if req["query"].get("format") or req["query"].get("action"):
            raise _bad(["The test server does not export annotation files"])
        out = {"version": 0, "tags": [], "shapes": [], "tracks": []}
        for jid in t["jobs"]:
            a = self._job_ann(self.jobs[jid])
            for k in ("tags", "shapes", "tracks"):
                out[k].extend(a[k])
            out["version"] = max(out["version"], a["version"])
        return _json(200, out, "LabeledData")

    def _task_write(self, req, tid, action):
        t = self._get("task", tid, req["user"])
        if not t["frames"]:
            raise _bad(["The task has no data"])
        d = self._clean_data(req["json"], t, 0, len(t["frames"]) - 1)
        return self._annotations_write(req, t, self._split(d, t), action)

    def _h_task_ann_put(self, req, tid):
        return self._task_write(req, tid, None)

    def _h_task_ann_patch(self, req, tid):
        return self._task_write(req, tid, self._action(req))

    def _h_task_ann_delete(self, req, tid):
        t = self._get("task", tid, req["user"])
        for jid in t["jobs"]:
            j = self.jobs[jid]
            if any(j["ann"][k] for k in j["ann"]):
                j["ann"] = {"tags": [], "shapes": [], "tracks": []}
                self._touch(j)
        return Response(204)
