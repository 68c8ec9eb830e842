"""The web app (Flask): the pose check page, `POST /api/pose`, `GET /healthz` and the project viewer.

Why Flask: a small, long-maintained framework whose core is routing, Jinja templates with
autoescaping and Werkzeug's request parsing (upload size limit, multipart), which is all these pages
need; no database layer or build step to carry. `create_app` returns a plain WSGI app, so it can
also sit behind any WSGI server.

Safe by default: uploads are parsed into memory (no temporary files) and are never written;
request data never names a file (images are database ids, the viewer opens the project read-only);
with a loopback address, requests must name a loopback host, so a web page elsewhere cannot read
the project through DNS rebinding.
"""
from __future__ import annotations

import base64
import io
import ipaddress
import time
from pathlib import PurePosixPath

import numpy as np
from flask import Flask, Request, Response, jsonify, render_template, request
from jinja2 import DictLoader
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.review.queue import FILTERS
from annotator.web import pages
from annotator.web.pose import BadUpload, Limits, PoseService, drawing, people_json, read_upload
from annotator.web.viewer import PAGE, ProjectViewer

FORM_OVERHEAD = 64 * 1024        # multipart boundaries and headers on top of the file itself


class MemoryRequest(Request):
    """Keeps uploaded files in memory: Werkzeug would spool files over 500 KB to a temporary file."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


def is_loopback(host: str) -> bool:
    """localhost, or a loopback address literal (127.x.y.z, ::1); a name like 127.example.com is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(service: PoseService, viewer: ProjectViewer | None = None, limits: Limits = Limits(),
               bind_host: str = "127.0.0.1", per_page: int = PAGE) -> Flask:
    app = Flask(__name__)
    app.request_class = MemoryRequest
    app.jinja_loader = DictLoader(pages.TEMPLATES)
    app.config["MAX_CONTENT_LENGTH"] = limits.max_bytes + FORM_OVERHEAD
    local_only = is_loopback(bind_host)
    ranges = {name: "{:.0f}-{:.0f}°".format(*sk.ANGLE_RANGE[name.split("_", 1)[1]]) for name, *_ in sk.ANGLES}
    colors = list(sk.REGION_COLORS.items())
    wants_json = lambda: request.path.startswith("/api/") or request.path == "/healthz"      # noqa: E731

    def model_state() -> str:
        if service.ready:
            return f"model: {service.model_name}"
        return service.error or "the pose model is loading..."

    def page(template: str, status: int = 200, **kw) -> tuple[str, int]:
        return render_template(template, project=viewer.name if viewer else None, model_state=model_state(),
                               model=service.model_name, max_mb=round(limits.max_bytes / 2**20),
                               max_mp=round(limits.max_pixels / 1e6), colors=colors, ranges=ranges,
                               names=sk.NAMES, **kw), status

    @app.before_request
    def check_host():
        if local_only:
            h = request.host            # "name", "name:port", "[::1]" or "[::1]:port"
            host = h if h.endswith("]") else h.rsplit(":", 1)[0]
            if not is_loopback(host):
                return _error(f"this server only answers requests for localhost (got Host: {request.host})", 400)

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' data:;"
                                                   " style-src 'self' 'unsafe-inline'")
        return resp

    def _error(msg: str, status: int):
        if wants_json():
            return jsonify(error=msg), status
        return page("check.html", status, error=msg)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(e):
        return _error(f"upload over the {limits.max_bytes / 2**20:.0f} MB limit: choose a smaller photo", 413)

    @app.errorhandler(HTTPException)
    def http_error(e):
        return _error(f"{e.code} {e.name}: {e.description}", e.code)

    def upload() -> tuple[bytes, str]:
        """The uploaded bytes and a name for messages (the client's file name, never used as a path)."""
        f = request.files.get("image")
        if f is None and request.files:
            f = next(iter(request.files.values()))
        if f is not None:
            name = PurePosixPath((f.filename or "upload").replace("\\", "/")).name[:120] or "upload"
            return f.read(), name
        if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            return b"", "upload"
        return request.get_data(cache=False), "upload"

    @app.errorhandler(BadUpload)
    def bad_upload(e):
        return _error(str(e), e.status)

    def check() -> tuple[dict, np.ndarray, list]:
        """The pose check of the request's upload: (result, the photo's pixels, its people).
        BadUpload (answered by bad_upload) when the model is not ready or the upload is refused."""
        service.check_ready()
        data, name = upload()
        rgb = read_upload(data, name, limits)
        t0 = time.perf_counter()
        persons = service.predict(rgb)
        ms = (time.perf_counter() - t0) * 1e3
        return ({"name": name, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "ms": ms,
                 "people": people_json(persons)}, rgb, persons)

    @app.get("/")
    def index():
        return page("check.html")

    @app.post("/")
    def check_page():
        r, rgb, persons = check()
        jpeg = base64.b64encode(drawing(rgb, persons)).decode()
        r["json"] = {k: r[k] for k in ("name", "width", "height", "people")} | {"model": service.model_name}
        return page("check.html", result=dict(r, jpeg=jpeg))

    @app.post("/api/pose")
    def api_pose():
        """JSON: every person's 33 points in pixels with visibility and confidence, and joint angles."""
        r, _, _ = check()
        return jsonify(model=service.model_name, width=r["width"], height=r["height"], ms=round(r["ms"], 1),
                       people=r["people"])

    @app.get("/healthz")
    def healthz():
        body = {"ready": service.ready, "model": service.model_name, "project": viewer.name if viewer else None,
                "load_seconds": service.load_seconds}
        if service.error:
            body["error"] = service.error
        return jsonify(body), 200 if service.ready else 503

    @app.get("/app.js")
    def script():
        return Response(pages.SCRIPT, mimetype="text/javascript")

    # -- the project viewer -----------------------------------------------------------------------
    def need_viewer():
        if viewer is None:
            return _error("no project: start the server with `pose-annotator serve PROJECT` to see one", 404)

    @app.get("/project")
    def project_page():
        if (r := need_viewer()) is not None:
            return r
        filt = request.args.get("filter", "to review")
        if filt not in FILTERS:
            return _error(f"unknown filter {filt!r} (one of {', '.join(FILTERS)})", 400)
        pg = request.args.get("page", "0")
        if not pg.isdigit():
            return _error(f"page {pg!r}: expected a page number", 400)
        images, total = viewer.page(filt, int(pg), per_page)
        return page("project.html", images=images, total=total, page=int(pg), per_page=per_page,
                    pages=max(1, -(-total // per_page)), filter=filt, filters=list(FILTERS), counts=viewer.counts(),
                    failed=viewer.failed(), rounds=viewer.rounds(), threshold=viewer.threshold)

    @app.get("/project/image/<int:image_id>")
    def image_page(image_id: int):
        if (r := need_viewer()) is not None:
            return r
        im = viewer.image(image_id)
        if im is None:
            return _error(f"no image {image_id} in this project", 404)
        return page("image.html", im=im)

    @app.get("/project/image/<int:image_id>.jpg")
    def image_jpeg(image_id: int):
        if (r := need_viewer()) is not None:
            return r
        try:
            jpeg = viewer.drawing(image_id, 1600 if request.args.get("size") == "full" else 520)
        except UserError as e:          # the file is gone or unreadable: one line, naming it
            return _error(str(e), 404)
        if jpeg is None:
            return _error(f"no image {image_id} in this project", 404)
        return Response(jpeg, mimetype="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/project/rounds.png")
    def rounds_png():
        if (r := need_viewer()) is not None:
            return r
        png = viewer.rounds_plot()
        if png is None:
            return _error("no distillation rounds yet", 404)
        return Response(png, mimetype="image/png", headers={"Cache-Control": "no-store"})

    return app
