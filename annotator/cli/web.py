"""`pose-annotator serve [PROJECT]`: the web page (loaded by cli.py's plugin list).

The pose model is loaded once, at start, on a thread of the server process (GET /healthz says when
it is ready); with PROJECT it is the project's own (project.toml's pre-fill settings and its latest
accepted distillation round, as `prefill` uses) and the project viewer is on, read only. Served by
Werkzeug's threaded server, which comes with Flask: a page for a few people at a time, where the
model and not the server sets the pace (bench/web.py).
"""
from __future__ import annotations

import errno
import socket
import sys
import threading

from annotator.core.errors import UserError


def cmd_serve(a) -> int:
    from werkzeug.serving import make_server

    from annotator.core import settings as settings_mod
    from annotator.prefill.estimator import default_model_name, estimator_settings
    from annotator.web.app import create_app, is_loopback
    from annotator.web.pose import Limits, PoseService
    from annotator.web.viewer import ProjectViewer

    viewer, landmark_model, model_name = None, None, None
    if a.project:
        viewer = ProjectViewer(a.project)
        with viewer.open() as proj:
            settings = proj.settings
            from annotator.distill.registry import project_model
            landmark_model, model_name, _ = project_model(proj)
    else:
        settings = settings_mod.DEFAULTS
    kwargs = estimator_settings(settings)
    if a.max_upload_mb <= 0 or a.max_megapixels <= 0:
        raise UserError("--max-upload-mb and --max-megapixels must be positive")
    limits = Limits(int(a.max_upload_mb * 2**20), int(a.max_megapixels * 1e6))
    service = PoseService(kwargs, landmark_model, model_name or default_model_name(kwargs))
    app = create_app(service, viewer, limits, bind_host=a.host)
    try:        # bound here, not by Werkzeug, which prints its own lines and exits on an error
        sock = socket.create_server((a.host, a.port), family=socket.AF_INET6 if ":" in a.host else socket.AF_INET)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"{a.host}:{a.port}: the port is in use (choose another with --port)") from None
        why = str(e.strerror or e).split(" (while attempting")[0]
        raise UserError(f"{a.host}:{a.port}: cannot listen there ({why})") from None
    server = make_server(a.host, sock.getsockname()[1], app, threaded=True, fd=sock.fileno())
    sock.close()                # the server holds its own duplicate
    host = f"[{a.host}]" if ":" in a.host else a.host
    print(f"serving http://{host}:{server.port}/"
          + (f" (project {viewer.name}, read only: /project)" if viewer else "")
          + "; loading the pose model...", flush=True)
    if not is_loopback(a.host):
        print(f"note: listening on {a.host}: anyone who can reach this machine can use the page"
              + (" and see the project" if viewer else ""), flush=True)
    service.start()

    def announce():
        if service.wait():
            print(f"ready: {service.model_name} ({service.load_seconds:.1f} s)", flush=True)
        else:
            print(f"error: {service.error}", file=sys.stderr, flush=True)
    threading.Thread(target=announce, daemon=True).start()
    server.serve_forever()          # Werkzeug's returns on Ctrl+C (and closes the socket)
    print("stopped", flush=True)
    return 0


def register(sub) -> None:
    p = sub.add_parser("serve", help="the web page: pose check on upload, and a read-only project viewer")
    p.add_argument("project", nargs="?", help="project to show (read only) and whose pre-fill settings to use")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload accepted (default 20)")
    p.add_argument("--max-megapixels", type=float, default=40.0, help="largest photo accepted (default 40)")
    p.set_defaults(fn=cmd_serve)
