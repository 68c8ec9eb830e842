"""The screen the window opens on, and the window size each user last left it at.

No Dear PyGui import: GLFW aborts the whole process (SIGABRT) when DISPLAY names
an X server that is not running, so the X server is asked first, through Xlib
(ctypes), which simply returns NULL; that also gives the screen's size before
the viewport exists (Dear PyGui has no call for it).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys
from pathlib import Path

from annotator.core.errors import UserError

FALLBACK = (1500, 920)        # no way to ask the screen (not X11): the old fixed size
MIN_SIZE = (1024, 640)


def x_screen_size(display: str | None = None) -> tuple[int, int] | None:
    """(width, height) of the X server's default screen; None when it cannot be opened
    (no server at DISPLAY) and also when libX11 is not installed (then nothing is known)."""
    name = ctypes.util.find_library("X11")
    if not name:
        return None
    x11 = ctypes.CDLL(name)
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XDefaultScreen.argtypes = [ctypes.c_void_p]
    x11.XDisplayWidth.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XDisplayHeight.argtypes = [ctypes.c_void_p, ctypes.c_int]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    d = x11.XOpenDisplay(display.encode() if display else None)
    if not d:
        return None
    try:
        s = x11.XDefaultScreen(d)
        return int(x11.XDisplayWidth(d, s)), int(x11.XDisplayHeight(d, s))
    finally:
        x11.XCloseDisplay(d)


def check_display() -> tuple[int, int] | None:
    """One line instead of a crash when there is no display to open; the screen size when known."""
    if not sys.platform.startswith("linux"):
        return None
    disp = os.environ.get("DISPLAY")
    if not disp and not os.environ.get("WAYLAND_DISPLAY"):
        raise UserError("no display (DISPLAY is not set): run it in a desktop session, or headless with "
                        "`xvfb-run pose-annotator gui PROJECT`")
    if not disp:
        return None                      # Wayland only: GLFW's own business
    if not ctypes.util.find_library("X11"):
        return None
    size = x_screen_size(disp)
    if size is None:
        raise UserError(f"cannot open display {disp!r} (no X server running there?): check DISPLAY, or run "
                        "headless with `xvfb-run pose-annotator gui PROJECT`")
    return size


def window_file() -> Path:
    from annotator.gui.state import user_config_path
    return user_config_path().with_name("window.json")


def saved_size(path: Path | None = None) -> tuple[int, int] | None:
    try:
        d = json.loads((path or window_file()).read_text())
        return int(d["width"]), int(d["height"])
    except (OSError, ValueError, KeyError, TypeError):
        return None                      # never saved, or unreadable: the screen size is as good


def save_size(width: int, height: int, path: Path | None = None) -> None:
    """Remember the window's size for this user (a file beside the user's config.toml)."""
    path = path or window_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"width": int(width), "height": int(height)}))
    except OSError:
        pass                             # a read-only home must not stop the app from closing


def initial_size(screen: tuple[int, int] | None, saved: tuple[int, int] | None) -> tuple[int, int]:
    """The last size this user left the window at, else the whole screen; never larger than the screen."""
    w, h = saved or screen or FALLBACK
    lo = (min(MIN_SIZE[0], screen[0]), min(MIN_SIZE[1], screen[1])) if screen else MIN_SIZE
    if screen:
        w, h = min(w, screen[0]), min(h, screen[1])
    return max(lo[0], w), max(lo[1], h)
