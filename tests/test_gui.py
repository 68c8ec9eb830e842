"""The real app in a real window on a virtual X screen, driven by real xdotool input.

Each test starts the Dear PyGui app in this process on a fresh copy of a
small project (the demo photos pre-filled by the real model), renders frames
itself while xdotool moves the mouse and presses keys, and then reads the
SQLite file to check what was saved.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from annotator.core import skeleton as sk
from annotator.core.model import OCCLUDED, VISIBLE
from tests.gui_project import REPO, make_project, start_xvfb

pytestmark = pytest.mark.gui

SCREEN = (1600, 1000)


@pytest.fixture(scope="module")
def display():
    """A private Xvfb server on the first free display number from :90 up."""
    for tool in ("Xvfb", "xdotool"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (apt-get install xvfb xdotool; tests/run.sh does it)")
    got = start_xvfb(*SCREEN)
    if got is None:
        pytest.skip("could not start Xvfb on :90-:139")
    proc, disp = got
    old = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = disp
    yield disp
    if old is None:
        os.environ.pop("DISPLAY", None)
    else:
        os.environ["DISPLAY"] = old
    proc.terminate()
    proc.wait(5)


@pytest.fixture(scope="module")
def base_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("gui")
    make_project(root).close()
    return root


@pytest.fixture
def project_copy(base_project, tmp_path):
    shutil.copytree(base_project / "proj", tmp_path / "proj")
    (tmp_path / "media").symlink_to(base_project / "media")
    return tmp_path / "proj"


@pytest.fixture(scope="module")
def window(display, base_project, tmp_path_factory):
    """One window for the module (Dear PyGui cannot re-create a viewport in the same process)."""
    from annotator.gui.app import App
    from annotator.gui.state import AppState
    from annotator.core.project import Project
    proj = Project.open(base_project / "proj")
    state = AppState(proj, annotator="xdotool", user_config=tmp_path_factory.mktemp("cfg") / "none.toml")
    a = App(state, width=1500, height=920)
    a.build()
    for _ in range(3):
        a.frame()
    yield a
    a.close()
    proj.close()


@pytest.fixture
def app(window, project_copy, tmp_path):
    """The window showing a fresh copy of the project, on the first photo with a person."""
    from annotator.gui.state import AppState
    from annotator.core.project import Project
    proj = Project.open(project_copy)
    state = AppState(proj, annotator="xdotool", user_config=tmp_path / "none.toml")
    window.attach(state)
    for (iid,) in proj.store.db.execute("SELECT id FROM images ORDER BY id"):
        fr = proj.store.load_frame(iid)
        if any(p.labelled.sum() > 20 for p in fr.persons):
            state.show(iid)
            break
    for _ in range(3):
        window.frame()
    window.offset = _calibrate(window)
    yield window
    proj.close()


def xdo(app, *args, settle: int = 4):
    """Run xdotool while rendering frames (the app sees the events as a user's)."""
    p = subprocess.Popen(["xdotool", *[str(x) for x in args]])
    while p.poll() is None:
        app.frame()
    assert p.returncode == 0
    for _ in range(settle):
        app.frame()


def _calibrate(app) -> np.ndarray:
    """X screen position of the viewport's (0, 0)."""
    import dearpygui.dearpygui as dpg
    xdo(app, "mousemove", 700, 500)
    mx, my = dpg.get_mouse_pos(local=False)
    return np.array([700 - mx, 500 - my])


def screen_of(app, xy) -> tuple[int, int]:
    """X screen pixel of an image point."""
    import dearpygui.dearpygui as dpg
    x0, y0 = dpg.get_item_rect_min(app.dl)
    s = app.state.view.to_screen(xy) + (x0, y0) + app.offset
    return int(round(s[0])), int(round(s[1]))


def db_person(app, pid):
    db = sqlite3.connect(app.state.store.path)
    try:
        rows = db.execute("SELECT x, y, vis, verified, source FROM points WHERE person_id=? ORDER BY idx",
                          (pid,)).fetchall()
    finally:
        db.close()
    return (np.array([(r[0], r[1]) for r in rows]), np.array([r[2] for r in rows]), np.array([r[3] for r in rows]),
            [r[4] for r in rows])


def main_person(app):
    return max(app.state.frame.persons, key=lambda p: p.labelled.sum())


def isolated_point(p, name: str = "left_knee") -> int:
    i = sk.INDEX[name]
    assert p.labelled[i]
    return i


def drag(app, start, delta, shift=False):
    x, y = start
    dx, dy = delta
    args = ["mousemove", x, y, "sleep", 0.1]
    if shift:
        args += ["keydown", "shift", "sleep", 0.1]
    args += ["mousedown", 1, "sleep", 0.15, "mousemove", x + dx // 3, y + dy // 3, "sleep", 0.1,
             "mousemove", x + dx, y + dy, "sleep", 0.15, "mouseup", 1, "sleep", 0.1]
    if shift:
        args += ["keyup", "shift"]
    xdo(app, *args)


def key(app, combo):
    """Press a key combo the way a person does: modifiers held while the key goes down and up."""
    *mods, k = combo.split("+")
    args = []
    for m in mods:
        args += ["keydown", m, "sleep", 0.08]
    args += ["key", k, "sleep", 0.08]
    for m in reversed(mods):
        args += ["keyup", m]
    xdo(app, *args)


def test_drag_moves_exactly_one_point(app):
    p = main_person(app)
    i = isolated_point(p)
    xy0, vis0, ver0, _ = db_person(app, p.id)
    drag(app, screen_of(app, p.xy[i]), (40, -25))
    xy1, vis1, ver1, src1 = db_person(app, p.id)
    expected = xy0[i] + np.array([40, -25]) / app.state.view.zoom
    np.testing.assert_allclose(xy1[i], expected, atol=0.6 / app.state.view.zoom)   # pixel-rounded mouse
    moved = np.flatnonzero(np.abs(xy1 - xy0).max(1) > 1e-6)
    assert moved.tolist() == [i]
    assert ver1[i] == 1 and src1[i] == "annotator:xdotool" and ver1.sum() == ver0.sum() + 1
    # a click (no motion) on another point selects it and changes nothing
    j = sk.INDEX["right_knee"]
    xdo(app, "mousemove", *screen_of(app, p.xy[j]), "click", 1)
    assert (app.state.sel_person, app.state.sel_point) == (p.id, j)
    np.testing.assert_allclose(db_person(app, p.id)[0], xy1)


def test_drag_and_picture_with_a_display_size_texture(app):
    """A canvas narrower than the photo: the texture is downscaled, drags and the picture stay in image pixels."""
    import dearpygui.dearpygui as dpg
    st = app.state
    vw, vh = dpg.get_viewport_width(), dpg.get_viewport_height()
    try:
        dpg.set_viewport_width(1100)            # canvas ~320 px wide for a 640 px photo
        for _ in range(6):
            app.frame()
        d = st.decoded
        w, h = d.size
        assert d.scale < 0.6 and app.tex_size == (round(w * d.scale), round(h * d.scale))
        assert st.view.zoom == pytest.approx(d.scale)
        app.offset = _calibrate(app)
        # the photo is where the view transform puts image pixels (not the flipped photo, not the top-left corner)
        st.select(None)
        for _ in range(3):
            app.frame()
        x0, y0 = dpg.get_item_rect_min(app.dl)
        img = d.rgb.astype(int)

        def block(x, y):
            return img[max(0, y - 1):y + 2, max(0, x - 1):x + 2].reshape(-1, 3).mean(0)

        def picture(lo, hi):
            """Median error of screen pixels at random image points in lo..hi, and of the flipped and
            corner-scaled photo (what a wrong texture placement would show)."""
            shot = app.screenshot()[..., :3].astype(int)
            ij = np.random.default_rng(0).uniform(lo, hi, (300, 2))
            sxy = (st.view.to_screen(ij) + (x0, y0)).round().astype(int)
            on_screen = shot[sxy[:, 1], sxy[:, 0]]
            want = np.array([block(int(x), int(y)) for x, y in ij])
            flipped = np.array([block(w - 1 - int(x), int(y)) for x, y in ij])
            corner = np.array([block(int(x * d.scale), int(y * d.scale)) for x, y in ij])
            return [np.median(np.abs(on_screen - o).max(1)) for o in (want, flipped, corner)]
        err, err_flipped, err_corner = picture((0.05 * w, 0.05 * h), (0.95 * w, 0.95 * h))
        assert err < 25
        assert err < 0.5 * err_flipped
        assert err < 0.5 * err_corner
        # a real drag moves exactly one point by the mouse delta / zoom, in image pixels
        p = main_person(app)
        i = isolated_point(p)
        xy0 = db_person(app, p.id)[0]
        drag(app, screen_of(app, p.xy[i]), (30, 20))
        xy1 = db_person(app, p.id)[0]
        np.testing.assert_allclose(xy1[i], xy0[i] + np.array([30, 20]) / st.view.zoom, atol=0.6 / st.view.zoom)
        assert np.flatnonzero(np.abs(xy1 - xy0).max(1) > 1e-6).tolist() == [i]
        # zoomed in past the display size: a texture of the region around the view, not the whole photo,
        # drawn where the image pixels are; panned, the same texture refilled and still in place
        for k in range(2):
            st.view.zoom_at(2.0, *st.view.to_screen(p.xy[i]))
            st.mark("view")
            app.frame()
            key = st.texture()[0]
            assert key[1] == "window" and app.tex_size == key[2:4] and app.tex_key == key
            cw, ch = st.canvas
            assert app.tex_size[0] * app.tex_size[1] <= (1.5 * cw + 64) * (1.5 * ch + 64)
            assert k == 0 or app.tex_size[0] * app.tex_size[1] < w * h / 2
            lo = np.maximum(st.view.to_image((10, 10)), (2, 2))
            hi = np.minimum(st.view.to_image((cw - 10, ch - 10)), (w - 3, h - 3))
            for _ in range(3):
                app.frame()
            err, err_flipped, err_corner = picture(lo, hi)
            assert err < 25 and err < 0.5 * err_flipped and err < 0.5 * err_corner
            st.view.pan(*(60 * np.sign(st.view.to_image((cw / 2, ch / 2)) - (w / 2, h / 2))))
        st.fit()
        app.frame()
        assert app.tex_size == (round(w * d.scale), round(h * d.scale))
    finally:
        dpg.set_viewport_width(vw)
        dpg.set_viewport_height(vh)
        for _ in range(4):
            app.frame()


def test_shift_drag_moves_whole_person(app):
    p = main_person(app)
    i = isolated_point(p, "left_hip")
    xy0, vis0, *_ = db_person(app, p.id)
    drag(app, screen_of(app, p.xy[i]), (30, 20), shift=True)
    xy1, *_ = db_person(app, p.id)
    d = np.array([30, 20]) / app.state.view.zoom
    m = vis0 > 0
    np.testing.assert_allclose(xy1[m], xy0[m] + d, atol=0.6 / app.state.view.zoom)


def test_shortcuts_visibility_swap_verify_undo_redo(app):
    p = main_person(app)
    i = isolated_point(p, "left_elbow")
    xdo(app, "mousemove", *screen_of(app, p.xy[i]), "click", 1)
    assert app.state.sel_point == i
    xy0, vis0, ver0, _ = db_person(app, p.id)
    key(app, "o")
    assert db_person(app, p.id)[1][i] == OCCLUDED
    key(app, "v")                                   # occluded -> not labelled
    assert db_person(app, p.id)[1][i] == 0
    key(app, "v")                                   # -> visible
    assert db_person(app, p.id)[1][i] == VISIBLE
    key(app, "s")                                   # swap left/right
    xy1, *_ = db_person(app, p.id)
    np.testing.assert_allclose(xy1[sk.FLIP[i]], xy0[i], atol=1e-3)
    np.testing.assert_allclose(xy1[i], xy0[sk.FLIP[i]], atol=1e-3)
    key(app, "ctrl+z")                              # undo the swap
    np.testing.assert_allclose(db_person(app, p.id)[0], xy0, atol=1e-2)
    key(app, "ctrl+shift+z")                        # redo it
    np.testing.assert_allclose(db_person(app, p.id)[0][sk.FLIP[i]], xy0[i], atol=1e-2)
    key(app, "Return")                              # verify the person
    xy2, vis2, ver2, src2 = db_person(app, p.id)
    assert ver2.all() and "annotator:xdotool" in src2
    key(app, "ctrl+z")
    assert not db_person(app, p.id)[2].all()


def test_shift_delete_and_a_drag_delete_the_people_in_the_box_and_undo_restores_them(app):
    import dearpygui.dearpygui as dpg
    st = app.state
    p = main_person(app)
    n0 = len(st.store.person_ids(st.image_id))
    x, y, w, h = p.bbox(pad=0.05)
    (x0, y0), (x1, y1) = screen_of(app, (x, y)), screen_of(app, (x + w, y + h))
    key(app, "shift+Delete")
    xdo(app, "mousemove", x0, y0, "sleep", 0.1, "mousedown", 1, "sleep", 0.15,
        "mousemove", (x0 + x1) // 2, (y0 + y1) // 2, "sleep", 0.1, "mousemove", x1, y1, "sleep", 0.15)
    cfg = dpg.get_item_configuration(app.box_item)
    assert cfg["show"] and tuple(int(round(c * 255)) if c <= 1 else int(c) for c in cfg["color"][:3]) == (255, 60, 60)
    xdo(app, "mouseup", 1, "sleep", 0.1)
    left = st.store.person_ids(st.image_id)
    assert p.id not in left and st.box_mode is None
    assert "crowd region marked" in st.status and "deleted" in st.status
    assert len(st.store.crowd_regions(st.image_id)) == 1
    assert len(dpg.get_item_children(app.crowd_node, 2)) == 2        # the region's frame and its label
    # Shift+Delete and a click inside the red frame removes the region; its people stay deleted
    key(app, "shift+Delete")
    xdo(app, "mousemove", (x0 + x1) // 2, (y0 + y1) // 2, "sleep", 0.1, "click", 1, "sleep", 0.15)
    assert st.store.crowd_regions(st.image_id) == [] and not dpg.get_item_children(app.crowd_node, 2)
    assert "crowd region removed" in st.status and p.id not in st.store.person_ids(st.image_id)
    key(app, "ctrl+z")
    assert len(st.store.crowd_regions(st.image_id)) == 1 and len(dpg.get_item_children(app.crowd_node, 2)) == 2
    key(app, "ctrl+z")
    assert len(st.store.person_ids(st.image_id)) == n0 and p.id in st.store.person_ids(st.image_id)
    assert st.store.crowd_regions(st.image_id) == [] and not dpg.get_item_children(app.crowd_node, 2)


def test_verify_image_and_next_in_queue(app):
    st = app.state
    st.queue.poll(wait=True)                     # the ranked page; start at its top, so there is a next image
    st.show(st.queue.items[0].image_id, pos=0)
    for _ in range(3):
        app.frame()
    first = st.image_id
    key(app, "shift+Return")
    db = sqlite3.connect(st.store.path)
    assert db.execute("SELECT review_state FROM images WHERE id=?", (first,)).fetchone()[0] == "verified"
    assert db.execute("SELECT min(p.verified) FROM points p JOIN persons q ON q.id=p.person_id"
                      " WHERE q.image_id=? AND q.deleted=0", (first,)).fetchone()[0] == 1
    db.close()
    queue = [it.image_id for it in st.queue.items]
    key(app, "n")
    assert st.image_id != first
    k = queue.index(first) + 1 if first in queue else 0
    assert st.image_id == queue[k]
    key(app, "p")
    assert st.image_id == (queue[k - 1] if k > 0 else queue[0])


def test_screenshot_shows_region_colors_at_the_points(app):
    import dearpygui.dearpygui as dpg
    st = app.state
    p = main_person(app)
    st.select(None)                 # no selection ring over the points
    for _ in range(3):
        app.frame()
    shot = app.screenshot()[..., :3].astype(int)
    x0, y0 = dpg.get_item_rect_min(app.dl)
    checked = found = 0
    for name in ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_hip", "right_hip",
                 "left_knee", "right_knee"):
        i = sk.INDEX[name]
        if p.vis[i] != VISIBLE:
            continue
        checked += 1
        cx, cy = (st.view.to_screen(p.xy[i]) + (x0, y0)).round().astype(int)
        win = shot[cy - 2:cy + 3, cx - 2:cx + 3].reshape(-1, 3)
        want = np.array(sk.point_color(i))
        if (np.abs(win - want).max(1) < 60).any():
            found += 1
    assert checked >= 4
    assert found == checked
    # left and right are told apart: the left knee is not drawn in the right knee's color
    a = shot[..., :3].reshape(-1, 3)
    for region in ("left_leg", "right_leg", "left_arm", "right_arm"):
        assert (np.abs(a - np.array(sk.REGION_COLORS[region])).max(1) < 30).sum() > 10, region


DRIVER = textwrap.dedent("""
    import json, sys
    import dearpygui.dearpygui as dpg
    from annotator.core.project import Project
    from annotator.gui.state import AppState
    from annotator.gui.app import App
    proj = Project.open(sys.argv[1])
    st = AppState(proj, annotator="killed")
    app = App(st, width=1500, height=920)
    app.build()
    for _ in range(3):
        app.frame()
    for (iid,) in proj.store.db.execute("SELECT id FROM images ORDER BY id"):
        if any(p.labelled.sum() > 20 for p in proj.store.load_frame(iid).persons):
            st.show(iid)
            break
    for _ in range(3):
        app.frame()
    p = max(st.frame.persons, key=lambda p: p.labelled.sum())
    i = 25
    x0, y0 = dpg.get_item_rect_min(app.dl)
    sx, sy = st.view.to_screen(p.xy[i]) + (x0, y0)
    print(json.dumps({"pid": p.id, "idx": i, "screen": [sx, sy], "zoom": st.view.zoom, "xy": p.xy[i].tolist()}),
          flush=True)
    shown = None
    while dpg.is_dearpygui_running():
        app.frame()
        text = dpg.get_value(app.status)
        if text != shown:        # what the status line on screen says, after the frame showing it
            shown = text
            print("screen: " + text, flush=True)
""")


def test_sigkill_right_after_a_drag_loses_nothing(display, project_copy, tmp_path):
    from PIL import ImageGrab
    drv = tmp_path / "driver.py"
    drv.write_text(DRIVER)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, str(drv), str(project_copy)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, cwd=str(REPO))
    try:
        info = json.loads(proc.stdout.readline())
        # the window sits at the screen origin (no window manager on Xvfb)
        sx, sy = (int(round(v)) for v in info["screen"])
        subprocess.run([str(a) for a in ("xdotool", "mousemove", sx, sy, "sleep", 0.3, "mousedown", 1, "sleep", 0.2,
                        "mousemove", sx + 20, sy + 10, "sleep", 0.2, "mousemove", sx + 36, sy + 24, "sleep", 0.2,
                        "mouseup", 1)], check=True)
        deadline = time.time() + 20
        saved = False
        while time.time() < deadline:
            line = proc.stdout.readline()
            if line.startswith("screen: saved: moved left_knee"):
                saved = True
                break
        assert saved, "the app never showed the move as saved"
        # and the point is drawn where it was dropped
        img = np.asarray(ImageGrab.grab(xdisplay=display))[..., :3].astype(int)
        win = img[sy + 24 - 2:sy + 24 + 3, sx + 36 - 2:sx + 36 + 3].reshape(-1, 3)
        assert (np.abs(win - np.array(sk.point_color(25))).max(1) < 60).any()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == -signal.SIGKILL
    db = sqlite3.connect(project_copy / "project.db")
    x, y, ver, src = db.execute("SELECT x, y, verified, source FROM points WHERE person_id=? AND idx=?",
                                (info["pid"], info["idx"])).fetchone()
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    exp = np.array(info["xy"]) + np.array([36, 24]) / info["zoom"]
    assert (x, y) == pytest.approx(tuple(exp), abs=0.6 / info["zoom"])
    assert ver == 1 and src == "annotator:killed"


def test_video_frames_keys_slider_and_propagation(window, tmp_path):
    """Right arrow walks the video's frames (the slider follows); Ctrl+P carries a correction forward."""
    import dearpygui.dearpygui as dpg
    from annotator.gui.state import AppState
    root = tmp_path / "vid"
    proj = make_project(root, video=True)
    try:
        frames = proj.store.db.execute("SELECT i.id FROM images i JOIN sources s ON s.id=i.source_id"
                                       " WHERE s.kind='video' ORDER BY i.frame_index").fetchall()
        ids = [r[0] for r in frames]
        if not all(proj.store.person_ids(i) for i in ids[:3]):
            pytest.skip("the model missed the dancer on one of the first video frames")
        state = AppState(proj, annotator="xdotool", user_config=tmp_path / "none.toml")
        window.attach(state)
        state.show(ids[0])
        for _ in range(3):
            window.frame()
        window.offset = _calibrate(window)
        assert dpg.is_item_shown("frames_bar") and dpg.get_value(window.slider) == 0
        p = main_person(window)
        i = sk.INDEX["left_knee"]
        # the dancer on frame 1: the person with her track id (the frames show a dozen people)
        (twin,) = [q for q in proj.store.load_frame(ids[1]).persons if q.track_id == p.track_id]
        nxt = twin.xy[i].copy()
        drag(window, screen_of(window, p.xy[i]), (24, 0))
        dx = 24 / state.view.zoom
        state.select(p.id, i)
        key(window, "ctrl+p")
        after = proj.store.load_person(twin.id)
        # frame 1 of a 10-frame span gets 10/11 of the correction
        assert after.xy[i, 0] - nxt[0] == pytest.approx(dx * 10 / 11, abs=0.05)
        key(window, "Right")
        assert state.image_id == ids[1] and dpg.get_value(window.slider) == 1
        assert state.sel_person == after.id           # the same dancer stays selected
        key(window, "ctrl+z")                          # undo the propagation
        np.testing.assert_allclose(proj.store.load_person(after.id).xy[i], nxt, atol=1e-2)
    finally:
        proj.close()


def test_points_table_typing_edits_the_point_not_the_shortcuts(app):
    """Type a new x into the table: saved; the letters and Enter typed there trigger no shortcut."""
    import dearpygui.dearpygui as dpg
    st = app.state
    p = main_person(app)
    i = sk.INDEX["left_shoulder"]
    st.select(p.id, None)
    for _ in range(3):
        app.frame()
    x_input = app.rows[i][1]
    dpg.set_y_scroll("points_table", 0)
    for _ in range(2):
        app.frame()
    # scroll the row into view, then click the x field
    (x0, y0), (w, h) = dpg.get_item_rect_min(x_input), dpg.get_item_rect_size(x_input)
    if not dpg.is_item_visible(x_input):
        pytest.skip("the table row is scrolled out of view on this screen size")
    image, n_actions = st.image_id, st.store.db.execute("SELECT count(*) FROM actions").fetchone()[0]
    xdo(app, "mousemove", int(x0 + w / 2 + app.offset[0]), int(y0 + h / 2 + app.offset[1]), "click", 1, "sleep", 0.2)
    key(app, "ctrl+a")
    xdo(app, "type", "--delay", 60, "123.5")
    key(app, "Return")
    xy, vis, ver, src = db_person(app, p.id)
    assert xy[i, 0] == pytest.approx(123.5) and ver[i] == 1
    assert st.image_id == image                                   # no "n"/"p" navigation happened
    assert not ver.all()                                          # Enter did not verify the person
    assert st.store.db.execute("SELECT count(*) FROM actions").fetchone()[0] == n_actions + 1


@pytest.mark.needs_data
def test_cvat_conflict_take_server_button(window, tmp_path, gt_dev, capsys):
    """A real CVAT conflict (test server, sdk edit, pull): flagged in the queue, the server's skeleton drawn
    as a ghost, a click on "Take server" puts the server's points in SQLite and clears the conflict."""
    import dearpygui.dearpygui as dpg
    from annotator.gui.state import AppState
    from annotator.core.project import Project
    from tests.cvat_server import CvatTestServer
    from tests.test_cvat_sync import _conflict_setup, creds, cvat
    with CvatTestServer() as server:
        server.add_user("alice", "alice-pw")
        server.add_user("bob", "bob-pw")
        root, pid, shape, lmap = _conflict_setup(server, tmp_path, gt_dev, capsys)
        assert cvat("cvat", "pull", root, *creds(server), capsys=capsys)[0] == 0
    proj = Project.open(root)
    try:
        state = AppState(proj, annotator="xdotool", user_config=tmp_path / "none.toml")
        window.attach(state)
        image = proj.store.person_image(pid)
        state.show(next(r[0] for r in proj.store.db.execute("SELECT id FROM images WHERE id!=?", (image,))))
        for _ in range(3):
            window.frame()
        window.offset = _calibrate(window)
        key(window, "alt+c")                                   # next image with a conflict
        assert state.image_id == image and state.sel_person == pid
        state.queue.poll(wait=True)
        state.mark("queue")
        for _ in range(3):
            window.frame()
        assert any("!C" in s for s in dpg.get_item_configuration(window.queue_list)["items"])
        assert dpg.is_item_shown("conflict_panel") and dpg.get_item_children(window.ghost_node, 2)
        b = window.conflict_buttons[(pid, "server")]
        (x0, y0), (w, h) = dpg.get_item_rect_min(b), dpg.get_item_rect_size(b)
        xdo(window, "mousemove", int(x0 + w / 2 + window.offset[0]), int(y0 + h / 2 + window.offset[1]),
            "click", 1, "sleep", 0.2)
        xy, vis, ver, src = db_person(window, pid)
        assert tuple(xy[sk.INDEX["left_elbow"]]) == (1.0, 2.0) and src[sk.INDEX["left_elbow"]] == "cvat:bob"
        db = sqlite3.connect(state.store.path)
        assert db.execute("SELECT count(*) FROM cvat_conflicts").fetchone()[0] == 0
        db.close()
        assert not dpg.is_item_shown("conflict_panel") and not dpg.get_item_children(window.ghost_node, 2)
    finally:
        proj.close()
