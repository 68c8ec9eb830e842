"""`pose-annotator gui PROJECT`: the desktop app (loaded by cli.py's plugin list).

Dear PyGui is imported only when the command runs, so the rest of the CLI
works on a headless machine; without a display the command says so in one line.
"""
from __future__ import annotations

from annotator.core.errors import UserError


def cmd_gui(a) -> int:
    from annotator.core.project import Project
    from annotator.gui.screen import check_display
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
