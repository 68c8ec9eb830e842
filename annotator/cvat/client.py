"""Connecting to a CVAT server, old or new, and the thin calls push/pull are built on.

cvat-sdk 2.80 checks the server version on connect and parses
`/api/server/about` into a model that requires fields older servers (< 2.30,
e.g. 2.23) do not send, which crashes before anything useful happens. So we
build the sdk Client without the version check, read `about` as raw JSON,
and talk JSON dicts for data (no model parsing that a schema change between
server versions could break). The sdk still does what it is good at: login
(session + CSRF, tokens), the upload protocol (batched multipart, TUS for big
files) and connection pooling.

Every failure reaches the user as one line (annotator.core.errors.UserError):
wrong URL, not a CVAT server, bad credentials, no permission, server down,
timeout, server errors. Idempotent calls (GET/PUT/DELETE) are retried with
backoff on 5xx, dropped connections and read timeouts; POST/PATCH are never
replayed. The password is used once to log in and never kept; a token lives
only inside the sdk's request configuration.
"""
from __future__ import annotations

import contextlib
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import quote, urlencode

from annotator.core.errors import UserError

ENV_URL, ENV_USER, ENV_PASSWORD, ENV_TOKEN = "CVAT_URL", "CVAT_USER", "CVAT_PASSWORD", "CVAT_ACCESS_TOKEN"
DEFAULT_TIMEOUT = 60.0
PAT_MIN_VERSION = (2, 48)        # personal access tokens (Authorization: Bearer) exist from 2.48
UPLOAD_REQUEST_BYTES = 16 * 2**20     # images per upload request (bigger files go by TUS)
UPLOAD_MIN_SPEED = 50 * 2**10         # bytes/s an upload request must sustain before it times out
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUS = (500, 502, 503, 504)

Progress = Callable[[str, int, int], None]      # (what, done, total)
_UNSET = object()


class CvatError(UserError):
    """A CVAT call failed (one line); status is the HTTP status, None when no answer came."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def _version_tuple(v: str) -> tuple[int, ...]:
    import re
    return tuple(int(x) for x in re.findall(r"\d+", v or "")[:3])


def _one_line(text, limit: int = 240) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _detail(body) -> str:
    """The useful part of a CVAT error body (DRF: {"detail": ...}, {"field": [...]}, [...])."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        data = json.loads(body) if isinstance(body, str) else body
    except ValueError:
        text = str(body or "")
        return "" if text.lstrip().startswith("<") else _one_line(text, 160)
    if isinstance(data, dict):
        if "detail" in data:
            return _one_line(data["detail"], 160)
        return _one_line("; ".join(f"{k}: {_detail_value(v)}" for k, v in data.items()), 160)
    return _one_line(_detail_value(data), 160)


def _detail_value(v) -> str:
    if isinstance(v, list):
        return ", ".join(_detail_value(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_detail_value(x)}" for k, x in v.items())
    return str(v)


class _ProgressAdapter:
    """cvat-sdk ProgressReporter that forwards to a plain callback."""

    def __new__(cls, callback: Progress | None, what: str):
        from cvat_sdk.core.progress import BaseProgressReporter, NullProgressReporter
        if callback is None:
            return NullProgressReporter()

        class Adapter(BaseProgressReporter):
            def start2(self, total, *, desc=None, **kw):
                super().start2(total, desc=desc, **kw)
                self.total, self.done = int(total or 0), 0
                callback(what, 0, self.total)

            def report_status(self, progress):
                super().report_status(progress)
                self.done = int(progress)
                callback(what, self.done, self.total)

            def advance(self, delta):
                super().advance(delta)
                self.done += int(delta)
                callback(what, self.done, self.total)

        return Adapter()


class CvatConnection:
    """An authenticated connection to one CVAT server. Data goes in and out as JSON dicts."""

    def __init__(self, client, url: str, about: dict, user: str, auth: str, timeout: float, retries: int):
        self.client = client                 # the cvat_sdk Client (for sdk features like auto-annotation)
        self.url = url
        self.about = about
        self.server_version: str = str(about.get("version", ""))
        self.user = user
        self.auth = auth                     # "password" | "token" | "legacy-token"
        self.timeout = timeout
        self.retries = retries

    def __repr__(self) -> str:
        return f"CvatConnection({self.url!r}, user={self.user!r}, server={self.server_version!r})"

    @property
    def version(self) -> tuple[int, ...]:
        return _version_tuple(self.server_version)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- errors --------------------------------------------------------------------------------
    def _fail(self, exc: BaseException, what: str) -> CvatError:
        return CvatError(describe_error(exc, self.url, what, self.timeout, self.retries),
                         getattr(exc, "status", None) or None)

    @contextlib.contextmanager
    def _errors(self, what: str):
        try:
            yield
        except UserError:
            raise
        except Exception as e:                # noqa: BLE001 - everything from the wire becomes one line
            if _is_wire_error(e):
                raise self._fail(e, what) from None
            raise

    # -- raw JSON calls --------------------------------------------------------------------------
    def call(self, method: str, path: str, *, query: dict | None = None, body=None, what: str | None = None,
             expect: Iterable[int] = (200, 201, 202, 204), raw: bool = False):
        """One API call; returns parsed JSON (or bytes with raw=True). Raises UserError on failure."""
        from cvat_sdk.core.helpers import make_request_headers
        what = what or f"{method} {path}"
        api = self.client.api_client
        url = self.client.api_map.host + path
        q = {k: v for k, v in (query or {}).items() if v is not None}
        with self._errors(what):
            headers = make_request_headers(api)
            # CVAT renders only its own media type: a plain application/json is answered 406
            headers["Accept"] = "application/vnd.cvat+json" if not raw else "*/*"
            if method in ("GET", "HEAD", "DELETE"):
                if q:
                    url += "?" + urlencode(q)
                r = api.rest_client.request(method, url, headers=headers, _check_status=False)
            else:
                headers["Content-Type"] = "application/json"
                r = api.rest_client.request(method, url, query_params=q or None, headers=headers,
                                            body=body if body is not None else {}, _check_status=False)
        if r.status not in tuple(expect):
            raise CvatError(describe_status(r.status, r.data, self.url, what, self.retries, method), r.status)
        if raw:
            return r.data
        if not r.data:
            return None
        try:
            return json.loads(r.data)
        except ValueError:
            raise CvatError(f"CVAT at {self.url}: {what}: the answer is not JSON "
                            f"(HTTP {r.status}, {_one_line(r.data[:80])})", r.status) from None

    def paginate(self, path: str, *, what: str | None = None, page_size: int = 100, **query) -> list[dict]:
        """All results of a paginated list endpoint."""
        out, page = [], 1
        while True:
            data = self.call("GET", path, query={**query, "page": page, "page_size": page_size}, what=what)
            if isinstance(data, list):          # some old endpoints are not paginated
                return data
            out.extend(data.get("results", []))
            if not data.get("next"):
                return out
            page += 1

    # -- projects and labels ---------------------------------------------------------------------
    def find_project(self, name: str) -> dict | None:
        """The project with exactly this name (the oldest if there are several), or None."""
        found = [p for p in self.paginate("/api/projects", name=name, what=f"looking up project '{name}'")
                 if p.get("name") == name]
        return min(found, key=lambda p: p["id"]) if found else None

    def project_labels(self, project_id: int) -> list[dict]:
        return self.paginate("/api/labels", project_id=project_id, what=f"reading labels of project {project_id}")

    def ensure_project(self, name: str, *, add_missing_label: bool = False):
        """Find or create project `name` with our skeleton label.

        Returns (project, LabelMap, diffs, created): diffs lists how an existing
        server label differs from ours (reported, never modified). A project
        without a `person` label is an error unless add_missing_label.
        """
        from exporters import cvat_label
        project = self.find_project(name)
        created = False
        if project is None:
            project = self.call("POST", "/api/projects", body={"name": name, "labels": [cvat_label.label_spec()]},
                                what=f"creating project '{name}'")
            created = True
        labels = self.project_labels(project["id"])
        label = cvat_label.find_label(labels)
        if label is None:
            if not add_missing_label:
                raise UserError(f"CVAT project '{name}' (id {project['id']}) has no skeleton label "
                                f"'{cvat_label.LABEL_NAME}'; add it in CVAT or allow adding it")
            self.call("PATCH", f"/api/projects/{project['id']}", body={"labels": [cvat_label.label_spec()]},
                      what=f"adding label '{cvat_label.LABEL_NAME}' to project '{name}'")
            labels = self.project_labels(project["id"])
            label = cvat_label.find_label(labels)
        diffs = cvat_label.diff_label(label)
        lmap = cvat_label.LabelMap.from_labels(labels, where=f"CVAT project '{name}'")
        return project, lmap, diffs, created

    # -- tasks -----------------------------------------------------------------------------------
    def list_tasks(self, project_id: int | None = None, name: str | None = None) -> list[dict]:
        return self.paginate("/api/tasks", project_id=project_id, name=name, what="listing tasks")

    def get_task(self, task_id: int) -> dict:
        return self.call("GET", f"/api/tasks/{task_id}", what=f"reading task {task_id}")

    def create_task_record(self, name: str, *, project_id: int, segment_size: int = 0) -> dict:
        """Create an empty task in a project (step 1 of 2; record its id before uploading)."""
        body = {"name": name, "project_id": project_id, "segment_size": int(segment_size), "overlap": 0}
        return self.call("POST", "/api/tasks", body=body, what=f"creating task '{name}'")

    def upload_task_data(self, task_id: int, files: list[str | os.PathLike], *, image_quality: int = 90,
                         chunk_size: int | None = None, progress: Progress | None = None,
                         poll_interval: float = 0.5, wait_timeout: float = 3600.0) -> dict:
        """Upload images to an empty task in the given order and wait until CVAT has processed them.

        Frames are numbered in `files` order; CVAT names each frame by the file's
        base name, so base names must be unique. Returns the task.
        """
        from cvat_sdk.core.uploading import DataUploader
        paths = [Path(f) for f in files]
        if not paths:
            raise UserError(f"task {task_id}: no images to upload")
        seen: dict[str, Path] = {}
        for p in paths:
            if not p.is_file():
                raise UserError(f"{p}: no such image file")
            if p.name in seen:
                raise UserError(f"{p}: same file name as {seen[p.name]}; CVAT names frames by file name")
            seen[p.name] = p
        params = {"image_quality": int(image_quality), "sorting_method": "predefined"}
        if chunk_size:
            params["chunk_size"] = int(chunk_size)
        url = self.client.api_map.make_endpoint_url("/api/tasks/{id}/data/", kwsub={"id": task_id})
        what = f"uploading {len(paths)} images to task {task_id}"
        rest = self.client.api_client.rest_client
        saved = rest.default_timeout
        # a socket send must finish within the timeout: give each upload request time for its size
        rest.default_timeout = (saved[0], max(saved[1], UPLOAD_REQUEST_BYTES / UPLOAD_MIN_SPEED))
        try:
            with self._errors(what):
                uploader = DataUploader(self.client, max_request_size=UPLOAD_REQUEST_BYTES)
                resp = uploader.upload_files(url, paths, pbar=_ProgressAdapter(progress, "upload"), **params)
        finally:
            rest.default_timeout = saved
        rq_id = json.loads(resp.data or b"{}").get("rq_id")
        if rq_id:
            self.wait_request(rq_id, what=f"processing images of task {task_id}", task_id=task_id,
                              poll_interval=poll_interval, timeout=wait_timeout)
        return self.get_task(task_id)

    def create_task(self, name: str, files: list[str | os.PathLike], *, project_id: int, segment_size: int = 0,
                    image_quality: int = 90, chunk_size: int | None = None, progress: Progress | None = None,
                    poll_interval: float = 0.5) -> dict:
        """Create a task from image files (one job per `segment_size` frames; 0 = one job)."""
        task = self.create_task_record(name, project_id=project_id, segment_size=segment_size)
        return self.upload_task_data(task["id"], files, image_quality=image_quality, chunk_size=chunk_size,
                                     progress=progress, poll_interval=poll_interval)

    def wait_request(self, rq_id: str, *, what: str, task_id: int | None = None, poll_interval: float = 0.5,
                     timeout: float = 3600.0) -> dict:
        """Poll a background request until it finishes; a failed request is a UserError."""
        deadline = time.monotonic() + timeout
        legacy = False
        while True:
            if not legacy:
                rq = self.call("GET", f"/api/requests/{quote(rq_id, safe='')}", what=what, expect=(200, 404))
                if rq is None or "status" not in rq:        # server without the requests API
                    legacy = task_id is not None
                    if not legacy:
                        raise UserError(f"CVAT at {self.url}: {what}: request {rq_id} not found")
                    continue
                status = str(rq["status"]).lower()
                message = rq.get("message") or ""
            else:
                st = self.call("GET", f"/api/tasks/{task_id}/status", what=what)
                status, message = str(st.get("state", "")).lower(), st.get("message") or ""
            if status == "finished":
                return rq if not legacy else st
            if status == "failed":
                raise UserError(f"CVAT at {self.url}: {what} failed: {_one_line(message, 200) or 'no reason given'}")
            if time.monotonic() > deadline:
                raise UserError(f"CVAT at {self.url}: {what} did not finish within {timeout:g} s")
            time.sleep(poll_interval)

    def task_frames(self, task_id: int) -> list[dict]:
        """Frame names and sizes of a task, by frame number."""
        return self.call("GET", f"/api/tasks/{task_id}/data/meta", what=f"reading frames of task {task_id}")["frames"]

    def frame_bytes(self, task_id: int, frame: int, quality: str = "original") -> bytes:
        return self.call("GET", f"/api/tasks/{task_id}/data/", query={"type": "frame", "number": frame,
                                                                     "quality": quality},
                         what=f"downloading frame {frame} of task {task_id}", raw=True)

    # -- jobs ------------------------------------------------------------------------------------
    def list_jobs(self, task_id: int) -> list[dict]:
        """Jobs of a task: id, start_frame, stop_frame, state, stage, status, assignee{username}, updated_date."""
        jobs = self.paginate("/api/jobs", task_id=task_id, what=f"listing jobs of task {task_id}")
        return sorted(jobs, key=lambda j: j.get("start_frame", 0))

    def get_job(self, job_id: int) -> dict:
        return self.call("GET", f"/api/jobs/{job_id}", what=f"reading job {job_id}")

    def update_job(self, job_id: int, *, stage: str | None = None, state: str | None = None,
                   assignee_id: int | None | object = _UNSET) -> dict:
        """Set a job's stage (annotation|validation|acceptance), state (new|in progress|completed|rejected)
        and/or assignee (a user id, None to unassign)."""
        body = {k: v for k, v in (("stage", stage), ("state", state)) if v is not None}
        if assignee_id is not _UNSET:
            body["assignee"] = assignee_id
        return self.call("PATCH", f"/api/jobs/{job_id}", body=body, what=f"updating job {job_id}")

    # -- annotations -----------------------------------------------------------------------------
    def get_job_annotations(self, job_id: int) -> dict:
        return self.call("GET", f"/api/jobs/{job_id}/annotations/", what=f"reading annotations of job {job_id}")

    def put_job_annotations(self, job_id: int, data: dict) -> dict:
        """Replace all annotations of a job; returns them with the ids the server gave."""
        return self.call("PUT", f"/api/jobs/{job_id}/annotations/", body=_labeled_data(data),
                         what=f"writing annotations of job {job_id}")

    def patch_job_annotations(self, job_id: int, action: str, data: dict) -> dict:
        """action: create | update | delete (not retried: create is not idempotent)."""
        return self.call("PATCH", f"/api/jobs/{job_id}/annotations/", query={"action": action},
                         body=_labeled_data(data), what=f"{action} annotations in job {job_id}")

    def get_task_annotations(self, task_id: int) -> dict:
        return self.call("GET", f"/api/tasks/{task_id}/annotations/", what=f"reading annotations of task {task_id}")


def _labeled_data(data: dict) -> dict:
    return {"version": int(data.get("version") or 0), "tags": list(data.get("tags") or []),
            "shapes": list(data.get("shapes") or []), "tracks": list(data.get("tracks") or [])}


# -- error descriptions ------------------------------------------------------------------------------
def _is_wire_error(e: BaseException) -> bool:
    import urllib3
    from cvat_sdk.api_client.exceptions import ApiException, OpenApiException
    from cvat_sdk.core.exceptions import CvatSdkException
    return isinstance(e, (urllib3.exceptions.HTTPError, ApiException, OpenApiException, CvatSdkException,
                          ConnectionError, TimeoutError))


def describe_status(status: int, body, url: str, what: str, retries: int = 0, method: str = "GET") -> str:
    detail = _detail(body)
    tail = f": {detail}" if detail else ""
    if status == 401:
        return f"CVAT at {url} did not accept the credentials (401) while {what}{tail}"
    if status == 403:
        return f"no permission for {what} on CVAT at {url} (403){tail}"
    if status == 404:
        return f"CVAT at {url}: {what}: not found (404){tail}"
    if status >= 500:
        tries = f" after {retries + 1} tries" if method in IDEMPOTENT and retries and status in RETRY_STATUS else ""
        return f"CVAT at {url} failed with HTTP {status} while {what}{tries}{tail}"
    return f"CVAT at {url} refused {what} (HTTP {status}){tail}"


def describe_error(e: BaseException, url: str, what: str, timeout: float | None, retries: int = 0) -> str:
    """One line for a transport or API exception."""
    import urllib3
    from cvat_sdk.api_client.exceptions import ApiException
    from cvat_sdk.core.exceptions import BackgroundRequestException

    if isinstance(e, ApiException):
        if e.status:
            return describe_status(e.status, e.body, url, what, retries)
        return f"CVAT at {url}: {what} failed: {_one_line(e.reason)}"
    if isinstance(e, BackgroundRequestException):
        return f"CVAT at {url}: {what} failed: {_one_line(e)}"
    reason = e.reason if isinstance(e, urllib3.exceptions.MaxRetryError) else e
    if isinstance(reason, urllib3.exceptions.ResponseError):
        return f"CVAT at {url} kept failing while {what}: {_one_line(reason)}"
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 2: test it first
    if isinstance(reason, urllib3.exceptions.NameResolutionError):
        return f"cannot reach CVAT at {url}: host name not found (check the URL)"
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        if "refused" in str(reason).lower():
            return f"cannot reach CVAT at {url}: connection refused (is the server running?)"
        return f"cannot reach CVAT at {url}: {_one_line(reason, 160)}"
    if isinstance(reason, (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ConnectTimeoutError,
                           TimeoutError)):
        return f"CVAT at {url} did not answer within {timeout:g} s while {what} (timeout)"
    if isinstance(reason, urllib3.exceptions.SSLError):
        return f"cannot reach CVAT at {url}: TLS/SSL error ({_one_line(reason, 120)}); is it http:// rather than https://?"
    if isinstance(reason, (urllib3.exceptions.ProtocolError, ConnectionError)):
        return f"connection to CVAT at {url} was lost while {what}: {_one_line(reason, 120)}"
    return f"CVAT at {url}: {what} failed: {type(e).__name__}: {_one_line(e, 160)}"


# -- connecting ------------------------------------------------------------------------------------
def _install_transport(client, timeout: float, retries: int, backoff: float) -> None:
    """Retries with backoff for idempotent calls, and a timeout on every request."""
    import urllib3
    from cvat_sdk.api_client.rest import RESTClientObject
    api = client.api_client
    api.configuration.retries = urllib3.util.Retry(
        total=retries, connect=retries, read=min(retries, 1), status=retries, other=0,
        allowed_methods=IDEMPOTENT, status_forcelist=RETRY_STATUS, backoff_factor=backoff,
        raise_on_status=False, respect_retry_after_header=True)
    rest = RESTClientObject(api.configuration)
    plain = rest.request
    rest.default_timeout = (min(timeout, 15.0), timeout)      # (connect, read/send) seconds

    def request(method, url, *args, _request_timeout=None, **kw):
        return plain(method, url, *args, _request_timeout=_request_timeout or rest.default_timeout, **kw)

    rest.request = request
    api.rest_client = rest


def resolve_credentials(user: str | None = None, password: str | None = None, token: str | None = None,
                        *, env: dict | None = None, interactive: bool | None = None,
                        url: str = "CVAT") -> tuple[str, str | None, str | None]:
    """('password', user, password) or ('token', None, token) from args, then env, then a prompt."""
    env = os.environ if env is None else env
    if user and password:
        return "password", user, password
    if token:
        return "token", None, token
    if not user and env.get(ENV_TOKEN):
        return "token", None, env[ENV_TOKEN]
    user = user or env.get(ENV_USER) or None
    password = password or (env.get(ENV_PASSWORD) if user else None) or None
    if user and password:
        return "password", user, password
    if interactive is None:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    if not interactive:
        missing = "password" if user else "credentials"
        raise UserError(f"no CVAT {missing} for {url}: pass user and password or an access token, or set "
                        f"{ENV_USER}/{ENV_PASSWORD} or {ENV_TOKEN}")
    if not user:
        user = input(f"CVAT user at {url}: ").strip()
        if not user:
            raise UserError("no CVAT user given")
    password = getpass.getpass(f"CVAT password for {user} at {url}: ")
    if not password:
        raise UserError("no CVAT password given")
    return "password", user, password


def connect(url: str | None = None, user: str | None = None, password: str | None = None,
            token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT, retries: int = 3,
            backoff: float = 0.5, env: dict | None = None, interactive: bool | None = None,
            cache_dir: str | os.PathLike | None = None) -> CvatConnection:
    """Log in to a CVAT server (2.2x .. 2.80) and return the connection.

    url/user/password/token default to CVAT_URL, CVAT_USER, CVAT_PASSWORD,
    CVAT_ACCESS_TOKEN, then to a prompt when stdin is a terminal. A token is a
    personal access token on servers >= 2.48 and the legacy API key
    (`Authorization: Token`) on older ones; both are tried when unsure.
    """
    from cvat_sdk.core.client import Client, Config
    from cvat_sdk.core.exceptions import InvalidHostException

    env = os.environ if env is None else env
    url = (url or env.get(ENV_URL) or "").strip()
    if not url:
        raise UserError(f"no CVAT server URL: pass one or set {ENV_URL}")
    config = Config(status_check_period=0.5)
    if cache_dir is not None:
        config.cache_dir = Path(cache_dir)
    try:
        client = Client(url, config=config, check_server_version=False)
    except InvalidHostException as e:
        raise UserError(f"{url}: not a usable CVAT URL ({_one_line(e)})") from None
    url = client.api_map.host
    _install_transport(client, timeout, retries, backoff)
    conn = CvatConnection(client, url, {}, "", "", timeout, retries)

    # 1. Is there a CVAT server? (public endpoint, raw JSON: old servers lack fields sdk 2.80 requires)
    try:
        about = conn.call("GET", "/api/server/about", what="reading the server version")
        if not isinstance(about, dict) or "version" not in about:
            raise CvatError(f"{url} does not look like a CVAT server (/api/server/about has no version)")
        conn.about, conn.server_version = about, str(about["version"])
        kind, user, secret = resolve_credentials(user, password, token, env=env, interactive=interactive, url=url)
        # 2. Log in: the sdk keeps the session cookies or the token, we keep neither.
        if kind == "password":
            conn.auth = "password"
            _login_password(conn, user, secret)
        else:
            _login_token(conn, secret)
        me = conn.call("GET", "/api/users/self", what="reading the logged-in user")
        conn.user = str(me.get("username", user or ""))
    except CvatError as e:
        client.close()
        if e.status is not None and e.status not in (401, 403) and e.status < 500 and not conn.about:
            raise UserError(f"{url} does not look like a CVAT server (no /api/server/about)") from None
        raise
    except BaseException:
        client.close()
        raise
    return conn


def _login_password(conn: CvatConnection, user: str, password: str) -> None:
    try:
        with conn._errors(f"logging in as '{user}'"):
            conn.client.login((user, password))
    except CvatError as e:
        if e.status in (400, 401):        # CVAT answers a bad login with 400
            raise CvatError(f"CVAT at {conn.url} rejected user '{user}' or the password (HTTP {e.status})",
                            e.status) from None
        raise
    except AssertionError:              # the sdk asserts that the session cookies came
        raise CvatError(f"CVAT at {conn.url} did not start a session for '{user}' (no session cookies)") from None


def _login_token(conn: CvatConnection, token: str) -> None:
    """A personal access token (Bearer, >= 2.48) or a legacy API key (`Token`); try the likely one first."""
    order = ["token", "legacy-token"] if conn.version >= PAT_MIN_VERSION else ["legacy-token", "token"]
    for how in order:
        _set_token(conn.client, token, how)
        try:
            conn.call("GET", "/api/users/self", what="checking the access token", expect=(200,))
            conn.auth = how
            return
        except CvatError as e:
            if e.status != 401:
                raise
    raise CvatError(f"CVAT at {conn.url} rejected the access token (401)", 401)


def _set_token(client, token: str, how: str) -> None:
    from cvat_sdk.core.client import AccessTokenCredentials
    cfg = client.api_client.configuration
    cfg.access_token = None
    cfg.api_key.pop("tokenAuth", None)
    cfg.api_key_prefix.pop("tokenAuth", None)
    if how == "token":
        client.login(AccessTokenCredentials(token))
    else:
        cfg.api_key["tokenAuth"] = token
        cfg.api_key_prefix["tokenAuth"] = "Token"
