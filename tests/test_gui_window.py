"""The window fits the screen it opens on: a real app on a real Xvfb screen of each size, in its own
process (Dear PyGui makes one viewport per process), checked against what it rendered."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.gui_project import DEMO_IMAGES, REPO

pytestmark = pytest.mark.gui

SCRIPT = textwrap.dedent(r'''
    import json, os, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from tests.gui_project import start_xvfb
    W, H, root = int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    proc, disp = start_xvfb(W, H)
    os.environ["DISPLAY"] = disp
    import dearpygui.dearpygui as dpg
    import numpy as np
    from annotator.core.project import Project
    from annotator.gui.app import App
    from annotator.gui.state import AppState, template_person, view_rect
    proj = Project.open(root / "proj")
    st = AppState(proj, annotator="t", user_config=root / "none.toml", prefetch=0)
    app = App(st, size_file=root / "window.json")       # no size given: the screen's
    app.build()
    for _ in range(3):
        app.frame()
    st.open_first()
    iid = st.image_id
    p = template_person((-200, 40, 300, 300))            # half of it left of the photo
    pid = st.session.add_person(iid, p, source="blazepose-heavy/mediapipe-0.10.21")   # the longest "by"
    st.select(pid)
    for _ in range(5):
        app.frame()
    out = {"viewport": [dpg.get_viewport_client_width(), dpg.get_viewport_client_height()],
           "canvas": list(st.canvas), "center": dpg.get_item_rect_size("center"),
           "drawlist": dpg.get_item_rect_size(app.dl), "shot": list(app.screenshot().shape[:2])}
    rect = view_rect(st.view, *st.decoded.size, *st.canvas)
    items = app.persons[pid]
    centers = [dpg.get_item_configuration(c)["center"] for c in items.points if dpg.get_item_configuration(c)["show"]]
    lines = [(dpg.get_item_configuration(e)["p1"], dpg.get_item_configuration(e)["p2"]) for e in items.edges
             if dpg.get_item_configuration(e)["show"]]
    pts = np.array(centers + [q for l in lines for q in l], dtype=float)[:, :2]
    out["outside_photo"] = int(((pts[:, 0] < rect[0] - 0.5) | (pts[:, 0] > rect[2] + 0.5)
                                | (pts[:, 1] < rect[1] - 0.5) | (pts[:, 1] > rect[3] + 0.5)).sum())
    out["n_drawn"] = len(pts)
    # the points table's last column and the queue's labels end inside their panels
    right_x1 = dpg.get_item_pos("right")[0] + dpg.get_item_rect_size("right")[0]
    out["by_x1"] = max(dpg.get_item_state(r[5])["rect_max"][0] for r in app.rows)
    out["right_x1"] = right_x1
    labels = dpg.get_item_configuration(app.queue_list)["items"]
    out["label_w"] = max(dpg.get_text_size(s)[0] for s in labels)
    out["list_w"] = dpg.get_item_rect_size(app.queue_list)[0]
    st.run("help")
    for _ in range(4):
        app.frame()
    s = dpg.get_item_state("help")
    out["help"] = [*dpg.get_item_pos("help"), *s["rect_size"]]
    out["help_scroll"] = list(s["scroll_max"])
    bottom = max(dpg.get_item_state(c).get("rect_max", (0, 0))[1] for c in dpg.get_item_children("help", 1))
    out["help_last_y"] = bottom
    app.close()
    proc.terminate()
    print("RESULT " + json.dumps(out))
''')


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One demo photo, no model run: the window is the subject here."""
    for tool in ("Xvfb", "xdotool"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (tests/run.sh installs it)")
    from annotator.core.project import Project
    root = tmp_path_factory.mktemp("win")
    (root / "media").mkdir()
    shutil.copy(DEMO_IMAGES / "coco_000000214753.jpg", root / "media")
    Project.create(root / "proj", [root / "media"])[0].close()
    return root


@pytest.mark.parametrize("size", [(1920, 1080), (1366, 768)])
def test_window_fills_the_screen_and_nothing_is_cut(tiny, size, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(tiny, root, symlinks=True)
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(REPO), *map(str, size), str(root)], capture_output=True,
                       text=True, timeout=120, env=env)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, r.stdout[-2000:] + r.stderr[-3000:]
    out = json.loads(line[7:])
    W, H = size
    assert out["viewport"] == [W, H] and out["shot"] == [H, W]        # the screen's size, rendered whole
    # the canvas is its panel: no empty space around it
    assert out["center"] == [int(c) for c in out["canvas"]] == out["drawlist"][:2]
    assert out["canvas"][0] >= 0.45 * W - 80 and out["canvas"][1] >= H - 120
    # skeleton parts left of the photo are clipped to it (the half-outside person still shows)
    assert out["n_drawn"] > 10 and out["outside_photo"] == 0
    assert out["by_x1"] <= out["right_x1"], out                           # the table's "by" column is whole
    assert out["label_w"] <= out["list_w"], out                            # queue labels end in the list
    x, y, w, h = out["help"]
    assert x >= 0 and y >= 0 and x + w <= W and y + h <= H, out          # the whole help on the screen
    assert out["help_scroll"] == [0.0, 0.0] and out["help_last_y"] <= y + h, out
    assert json.loads((root / "window.json").read_text()) == {"width": W, "height": H}   # remembered


def test_initial_size_prefers_the_last_size_within_the_screen():
    from annotator.gui.screen import FALLBACK, initial_size
    assert initial_size((1920, 1080), None) == (1920, 1080)
    assert initial_size((1920, 1080), (1400, 900)) == (1400, 900)
    assert initial_size((1366, 768), (1920, 1080)) == (1366, 768)      # a saved size never exceeds the screen
    assert initial_size(None, None) == FALLBACK


def test_display_naming_no_server_is_one_line(tmp_path):
    """GLFW aborts the process (SIGABRT) on a DISPLAY with no X server; the CLI asks Xlib first."""
    n = next(k for k in range(199, 260) if not os.path.exists(f"/tmp/.X11-unix/X{k}"))
    r = subprocess.run([sys.executable, "-m", "annotator", "gui", str(tmp_path / "p")], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, DISPLAY=f":{n}"))
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1 and f"cannot open display ':{n}'" in r.stderr
