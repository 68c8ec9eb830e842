"""`pose-annotator gui PROJECT`: the desktop app (loaded by cli.py's plugin list).

Dear PyGui is imported only when the command runs, so the rest of the CLI
works on a headless machine; without a display the command says so in one line.
"""
from __future__ import annotations

import os
import sys

from annotator.core.errors import UserError


def check_display() -> None:
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UserError("no display (DISPLAY is not set): run it in a desktop session, or headless with "
                        "`xvfb-run pose-annotator gui PROJECT`")


def cmd_gui(a) -> int:
    from annotator.core.project import Project
    check_display()
    with Project.open(a.project) as proj:
        try:
            from annotator.gui.app import run_app
        except ImportError as e:
            raise UserError(f"the desktop app needs Dear PyGui ({e}); pip install 'dearpygui>=2,<3'") from None
        run_app(proj, annotator=a.annotator)
    return 0


def register(sub) -> None:
    p = sub.add_parser("gui", help="open the desktop annotation app")
    p.add_argument("project")
    p.add_argument("--annotator", help="name recorded with every edit (default: project.toml, then $USER)")
    p.set_defaults(fn=cmd_gui)
