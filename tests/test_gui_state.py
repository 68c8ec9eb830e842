"""Headless GUI logic: view transform, hit-testing, drags, shortcuts, queue, prefetch, propagation.

Runs on a real project (the demo photos and video pre-filled by the real
model) with a real SQLite file; every edit is checked in the database.
"""
from __future__ import annotations

import sqlite3

import threading

import numpy as np
import pytest

from annotator.core import skeleton as sk
from annotator.core.commands import CROWD_SHARE
from annotator.core.errors import UserError
from annotator.gui.state import (AppState, Prefetcher, ReviewQueue, Shortcuts, View, _Job, display_scale, hit_person,
                                 hit_point, parse_combo, template_person, texture_level, texture_size, to_texture)
from annotator.core.model import NOT_LABELLED, OCCLUDED, VISIBLE
from annotator.core.project import Project
from annotator.gui.propagate import plan, propagate
from tests.gui_project import make_project


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("guistate")
    proj = make_project(root, video=True)
    proj.close()
    return root / "proj"


@pytest.fixture
def proj(project_dir, tmp_path):
    import shutil
    dst = tmp_path / "proj"
    shutil.copytree(project_dir, dst)
    # sources are relative paths to ../media: keep them valid
    (tmp_path / "media").symlink_to(project_dir.parent / "media")
    p = Project.open(dst)
    yield p
    p.close()


@pytest.fixture
def state(proj, tmp_path):
    s = AppState(proj, annotator="tester", prefetch=2, user_config=tmp_path / "none.toml")
    s.set_canvas(800, 600)
    assert s.open_first()
    yield s
    s.close()


def db_point(proj, pid, idx):
    db = sqlite3.connect(proj.store.path)
    try:
        return db.execute("SELECT x, y, vis, verified, source FROM points WHERE person_id=? AND idx=?",
                          (pid, idx)).fetchone()
    finally:
        db.close()


def test_view_roundtrip_zoom_to_cursor_and_fit():
    v = View()
    v.fit(1920, 1080, 960, 600, margin=0)
    assert v.zoom == pytest.approx(0.5)
    assert v.to_screen((0, 0))[1] == pytest.approx(30.0)
    before = v.to_image((300, 200))
    v.zoom_at(2.0, 300, 200)
    assert v.zoom == pytest.approx(1.0)
    np.testing.assert_allclose(v.to_image((300, 200)), before)
    np.testing.assert_allclose(v.to_image(v.to_screen((123.0, 45.0))), (123.0, 45.0))


def test_shortcuts_defaults_overrides_and_errors():
    s = Shortcuts()
    assert s.action("z", {"ctrl"}) == "undo"
    assert s.action("z", {"ctrl", "shift"}) == "redo"
    assert s.action("s") == "swap_lr"
    assert s.action("s", {"ctrl"}) is None
    s2 = Shortcuts({"swap_lr": "X"}, {"next_image": "space"})
    assert s2.action("x") == "swap_lr" and s2.action("s") is None
    assert s2.action("space") == "next_image"
    with pytest.raises(UserError, match="unknown action"):
        Shortcuts({"fly": "q"})
    with pytest.raises(UserError, match="bound to both"):
        Shortcuts({"swap_lr": "n"})
    with pytest.raises(UserError, match="modifier"):
        parse_combo("hyper+q")


def test_shortcuts_from_project_toml_and_user_config(proj, tmp_path):
    user = tmp_path / "config.toml"
    user.write_text('[shortcuts]\nfit = "home"\n')
    proj.settings["shortcuts"] = {"swap_lr": "l"}
    s = Shortcuts.load(proj.settings, user)
    assert s.action("home") == "fit" and s.action("l") == "swap_lr"


def test_hit_point_nearest_within_radius():
    p = template_person((100, 100, 50, 100))
    p.id = 7
    v = View(zoom=2.0)
    sx, sy = v.to_screen(p.xy[25])
    assert hit_point([p], v, sx + 3, sy, radius=10) == (7, 25)
    assert hit_point([p], v, sx + 30, sy + 30, radius=10) is None
    p.vis[25] = NOT_LABELLED            # unlabelled points are not drawn, so not hit
    assert hit_point([p], v, sx, sy, radius=2) is None


def person_with_points(state):
    """Show the first photo in queue order on which the model found a person (so there is a next
    image), and return that person."""
    photos = {iid for (iid,) in state.store.db.execute(
        "SELECT i.id FROM images i JOIN sources s ON s.id=i.source_id WHERE s.kind='image'")}
    for iid in [it.image_id for it in state.queue.items if it.image_id in photos]:
        fr = state.store.load_frame(iid)
        for p in fr.persons:
            if p.labelled.sum() > 20:
                if state.image_id != iid:
                    state.show(iid)
                return state.person(p.id)
    raise AssertionError("the model found nobody on the demo photos")


def test_drag_moves_exactly_one_point_and_saves(state, proj):
    p = person_with_points(state)
    i = int(np.flatnonzero(p.labelled)[5])
    before = p.xy.copy()
    sx, sy = state.view.to_screen(p.xy[i])
    state.press(sx, sy)
    state.motion(sx + 10, sy + 5)
    state.motion(sx + 40, sy - 20)
    aid = state.release(sx + 40, sy - 20)
    assert aid is not None
    x, y, vis, ver, src = db_point(proj, p.id, i)
    exp = before[i] + np.array([40, -20]) / state.view.zoom
    assert (x, y) == pytest.approx(tuple(exp))
    assert ver == 1 and src == "annotator:tester"
    after = proj.store.load_person(p.id)
    others = np.arange(sk.N) != i
    np.testing.assert_allclose(after.xy[others], before[others])
    # the screen's copy is the saved one
    np.testing.assert_allclose(state.person(p.id).xy, after.xy)
    state.undo()
    assert db_point(proj, p.id, i)[:2] == pytest.approx(tuple(before[i]), abs=1e-2)   # history keeps 3 decimals
    state.redo()
    assert db_point(proj, p.id, i)[:2] == pytest.approx(tuple(exp), abs=1e-2)


def test_click_without_motion_only_selects(state, proj):
    p = person_with_points(state)
    i = int(np.flatnonzero(p.labelled)[0])
    n = proj.store.db.execute("SELECT count(*) FROM actions").fetchone()[0]
    sx, sy = state.view.to_screen(p.xy[i])
    state.press(sx, sy)
    state.release(sx + 1, sy)
    assert (state.sel_person, state.sel_point) == (p.id, i)
    assert proj.store.db.execute("SELECT count(*) FROM actions").fetchone()[0] == n


def test_shift_drag_moves_whole_person(state, proj):
    p = person_with_points(state)
    before = p.xy.copy()
    i = int(np.flatnonzero(p.labelled)[3])
    sx, sy = state.view.to_screen(p.xy[i])
    state.press(sx, sy, shift=True)
    state.motion(sx + 30, sy + 30)
    state.release(sx + 30, sy + 30)
    after = proj.store.load_person(p.id)
    d = np.array([30, 30]) / state.view.zoom
    m = p.labelled
    np.testing.assert_allclose(after.xy[m], before[m] + d)


def test_keyboard_actions_visibility_swap_verify(state, proj):
    p = person_with_points(state)
    i = sk.INDEX["left_wrist"]
    state.select(p.id, i)
    v0 = int(p.vis[i])
    assert state.on_key("v") == "cycle_visibility"
    assert db_point(proj, p.id, i)[2] == {VISIBLE: OCCLUDED, OCCLUDED: NOT_LABELLED, NOT_LABELLED: VISIBLE}[v0]
    state.on_key("o")
    assert db_point(proj, p.id, i)[2] == OCCLUDED
    before = proj.store.load_person(p.id)
    state.on_key("s")
    after = proj.store.load_person(p.id)
    np.testing.assert_allclose(after.xy[sk.FLIP[i]], before.xy[i])
    assert state.sel_point == sk.FLIP[i]
    state.on_key("enter")
    if not proj.store.load_person(p.id).fully_verified:     # suspect points: the first Enter shows them
        assert "again" in state.status
        state.on_key("enter")
    assert proj.store.load_person(p.id).fully_verified
    assert db_point(proj, p.id, 0)[4] == "annotator:tester"
    state.on_key("z", {"ctrl"})
    assert not proj.store.load_person(p.id).fully_verified
    state.on_key("z", {"ctrl", "shift"})
    assert proj.store.load_person(p.id).fully_verified


def test_verify_image_and_queue_navigation(state, proj):
    first = state.image_id
    state.on_key("shift+enter".split("+")[1], {"shift"})
    assert proj.store.image(first).review_state == "verified"
    assert state.on_key("n") == "next_image"
    assert state.image_id != first and state.pos == 1
    state.on_key("p")
    assert state.image_id == first
    # the snapshot keeps its order; a refresh drops the verified image
    q = ReviewQueue(proj.store)
    assert first not in [it.image_id for it in q.items]


def test_next_suspect_walks_points_by_suspicion(state):
    state.suspect_threshold = 0.0
    state._suspects = None
    sus = state.suspects()
    if len(sus) < 2:
        pytest.skip("fewer than two unverified points")
    state.on_key("tab")
    assert (state.sel_person, state.sel_point) == sus[0][:2]
    state.on_key("tab")
    assert (state.sel_person, state.sel_point) == sus[1][:2]
    assert sus[0][2] >= sus[1][2]


def test_add_template_and_delete_person_undo(state, proj):
    n0 = len(proj.store.person_ids(state.image_id))
    pid = state.add_template()
    assert len(proj.store.person_ids(state.image_id)) == n0 + 1
    assert state.sel_person == pid
    state.on_key("delete")
    assert len(proj.store.person_ids(state.image_id)) == n0
    state.undo()
    assert pid in proj.store.person_ids(state.image_id)


def test_add_person_in_box_runs_the_model(state, proj):
    # the astronaut photo: the model finds the person inside a box drawn around her
    row = proj.store.db.execute("SELECT id FROM images WHERE file_name LIKE '%astronaut%'").fetchone()
    state.show(row[0])
    n0 = len(proj.store.person_ids(row[0]))
    pid = state.add_person_in_box((100, 20, 380, 490))
    assert len(proj.store.person_ids(row[0])) == n0 + 1
    p = proj.store.load_person(pid)
    assert p.labelled.sum() >= 15 and not p.verified.any()
    legs = [sk.INDEX[n] for n in ("left_knee", "right_knee", "left_ankle", "right_ankle")]
    assert p.hidden_guess[legs].all()          # a half-length portrait: legs kept as guesses, not drawn
    assert "blazepose" in p.source[0]


def test_a_box_where_the_model_sees_nobody_adds_hidden_guesses_that_a_drag_places(state, proj):
    # the astronaut photo's top-right corner (the flag, no person): the user says someone is there
    row = proj.store.db.execute("SELECT id FROM images WHERE file_name LIKE '%astronaut%'").fetchone()
    state.show(row[0])
    n0 = len(proj.store.person_ids(row[0]))
    state.box_mode = "add"
    a, b = state.view.to_screen((436.0, 2.0)), state.view.to_screen((510.0, 150.0))
    state.press(*a)
    state.motion((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    pid = state.release(*b)
    assert len(proj.store.person_ids(row[0])) == n0 + 1 and state.sel_person == pid
    p = proj.store.load_person(pid)
    assert not p.labelled.any() and p.hidden_guess.all()      # nothing invented, every joint a guess
    assert (p.xy >= (436.0, 2.0)).all() and (p.xy <= (510.0, 150.0)).all()    # in the box, not on the astronaut
    # the guesses hold the box: a click inside it selects the person, a drag from a guess places it
    assert hit_person(state.frame.persons, state.view, *state.view.to_screen((470.0, 80.0))) == pid
    nose = sk.INDEX["nose"]
    s = state.view.to_screen(p.xy[nose])
    state.press(*s)
    state.motion(s[0] + 10, s[1] + 12)
    state.release(s[0] + 10, s[1] + 12)
    x, y, vis, verified, _ = db_point(proj, pid, nose)
    assert vis == VISIBLE and verified
    np.testing.assert_allclose((x, y), p.xy[nose] + np.array([10, 12]) / state.view.zoom, atol=1e-6)
    assert proj.store.load_person(pid).labelled.sum() == 1


def test_crowd_box_deletes_the_people_inside_and_keeps_the_region_as_one_undoable_command(state, proj):
    # a demo photo with two or more people, one of whose boxes holds nobody else: a box drawn round
    # that person deletes them, the others stay, and the box is the image's crowd region
    counts = proj.store.db.execute(
        "SELECT q.image_id, count(*) FROM persons q JOIN images i ON i.id=q.image_id"
        " WHERE q.deleted=0 AND i.frame_index IS NULL GROUP BY 1 HAVING count(*) >= 2 ORDER BY 2 DESC").fetchall()

    def alone(p, persons):
        return all(q.share_in_box(p.bbox(pad=0.05)) <= CROWD_SHARE for q in persons if q is not p)

    for image_id, n0 in counts:
        state.show(image_id)
        if any(alone(p, state.frame.persons) for p in state.frame.persons):
            break
    else:
        pytest.fail("no demo photo has a person whose box holds nobody else")
    target = max((p for p in state.frame.persons if alone(p, state.frame.persons)),
                 key=lambda p: p.bbox()[2] * p.bbox()[3])
    x, y, w, h = target.bbox(pad=0.05)
    n_actions = proj.store.db.execute("SELECT count(*) FROM actions").fetchone()[0]
    assert state.on_key("delete", {"shift"}) == "mark_crowd" and state.box_mode == "crowd"
    a, b = state.view.to_screen((x, y)), state.view.to_screen((x + w, y + h))
    state.press(*a)
    state.motion((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    state.release(*b)
    left = proj.store.person_ids(image_id)
    assert target.id not in left and len(left) >= 1 and state.box_mode is None
    assert proj.store.db.execute("SELECT count(*) FROM actions").fetchone()[0] == n_actions + 1
    (region,) = proj.store.crowd_regions(image_id)
    np.testing.assert_allclose(region, (x, y, w, h), atol=0.02)
    assert state.frame.crowd_regions == [region]
    state.undo()
    assert sorted(proj.store.person_ids(image_id)) == sorted(p.id for p in state.frame.persons) \
        and len(proj.store.person_ids(image_id)) == n0
    assert proj.store.crowd_regions(image_id) == [] and state.frame.crowd_regions == []
    state.redo()
    assert target.id not in proj.store.person_ids(image_id) and proj.store.crowd_regions(image_id) == [region]
    state.undo()
    # a person a human has verified stays: the box sweeps only what nobody checked
    state.select(target.id)
    state.verify_person()
    state.verify_person()                   # the second Enter verifies when some points are suspect
    assert proj.store.load_person(target.id).verified.all()
    state.run("mark_crowd")
    state.press(*a)
    state.release(*b)
    assert target.id in proj.store.person_ids(image_id) and "kept 1 verified" in state.status
    # a box with nobody inside deletes nobody; it is still a crowd region
    state.run("mark_crowd")
    c, d = state.view.to_screen((1.0, 1.0)), state.view.to_screen((12.0, 12.0))
    state.press(*c)
    state.release(*d)
    assert len(proj.store.person_ids(image_id)) == n0 and "nobody unverified inside" in state.status
    assert len(proj.store.crowd_regions(image_id)) == 2
    # a click (no drag) in crowd-box mode inside a red frame removes that region, one undoable command;
    # a click outside every region leaves the mode waiting for a drag
    regions = proj.store.crowd_regions(image_id)
    state.run("mark_crowd")
    W, H = state.decoded.size
    out = state.view.to_screen(next((px, py) for px in range(20, W, 37) for py in range(20, H, 37)
                                    if not any(rx <= px <= rx + rw and ry <= py <= ry + rh for rx, ry, rw, rh in regions)))
    state.press(*out)
    assert state.release(*out) is None and state.box_mode == "crowd"
    inside = state.view.to_screen((5.0, 5.0))
    state.press(*inside)
    assert state.release(*inside) is not None and state.box_mode is None
    assert proj.store.crowd_regions(image_id) == [regions[0]] and state.frame.crowd_regions == [regions[0]]
    assert "crowd region removed" in state.status and len(proj.store.person_ids(image_id)) == n0
    state.undo()
    assert proj.store.crowd_regions(image_id) == regions and state.frame.crowd_regions == regions
    state.redo()
    assert proj.store.crowd_regions(image_id) == [regions[0]]
    with pytest.raises(UserError, match="no region 5"):
        state.session.remove_crowd_region(image_id, 5)


def test_points_table_edit_and_settings(state, proj):
    p = person_with_points(state)
    state.select(p.id)
    state.set_point(3, x=12.5, y=7.0, vis=OCCLUDED)
    assert db_point(proj, p.id, 3)[:3] == (12.5, 7.0, OCCLUDED)
    state.set_annotator("bob")
    assert Project.open(proj.root).settings["project"]["annotator"] == "bob"
    state.select(p.id, 4)
    state.on_key("v")
    assert db_point(proj, p.id, 4)[4] == "annotator:bob"
    with pytest.raises(UserError):
        state.set_prefill_setting("min_detection_confidence", 3)
    state.set_prefill_setting("min_detection_confidence", 0.3)
    state.set_gui_setting("point_size", 8.0)
    st = Project.open(proj.root).settings
    assert st["prefill"]["min_detection_confidence"] == 0.3 and st["gui"]["point_size"] == 8.0


def test_prefetch_decodes_ahead(state, proj):
    pf = state.prefetcher
    nxt = state.queue.get(state.pos + 1)
    d = pf.take(nxt.image_id, timeout=10)
    for _ in range(100):
        if d is not None:
            break
        import time
        time.sleep(0.05)
        d = pf.take(nxt.image_id)
    assert d is not None
    np.testing.assert_array_equal(d.rgb, proj.load_rgb(nxt.image_id))
    h, w = d.rgb.shape[:2]
    assert d.scale == pytest.approx(display_scale(w, h, 800, 600))       # made at the canvas' display size
    tw, th = texture_size(w, h, d.scale)
    assert d.tex.dtype == np.float32 and d.tex.size == tw * th * 3


def test_prefetcher_reports_a_broken_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    pf = Prefetcher(2)
    try:
        pf.want([_Job(1, bad, "image", None)])
        import time
        for _ in range(100):
            if 1 in pf.errors:
                break
            time.sleep(0.02)
        assert "bad.jpg" in pf.errors[1]
        assert pf.take(1) is None
    finally:
        pf.stop()


def test_prefetcher_holds_while_the_new_image_renders(proj):
    """While held (the window is drawing a just-shown image) nothing new is decoded; released, it catches up."""
    import time
    row = proj.store.images()[0]
    pf = Prefetcher(2)
    try:
        pf.hold(True)
        pf.want([_Job(row.id, proj.source_path(row), row.kind, row.frame_index)])
        time.sleep(0.3)
        assert pf.take(row.id, timeout=0) is None and pf.busy is None
        pf.hold(False)
        for _ in range(200):
            if pf.take(row.id, timeout=0) is not None:
                break
            time.sleep(0.02)
        np.testing.assert_array_equal(pf.take(row.id).rgb, proj.load_rgb(row))
    finally:
        pf.stop()


def test_queue_pages_lazily(proj):
    ReviewQueue.PAGE, old = 2, ReviewQueue.PAGE
    try:
        q = ReviewQueue(proj.store, "all")
        assert len(q.items) == 2 and len(q) > 2
        assert q.get(len(q) - 1) is not None and len(q.items) == len(q)
        assert q.get(len(q)) is None
    finally:
        ReviewQueue.PAGE = old
    with pytest.raises(UserError):
        ReviewQueue(proj.store, "nope")


def test_propagate_interpolates_to_neighbour_frames_undoably(proj):
    s = proj.session("tester")
    frames = proj.store.db.execute(
        "SELECT i.id FROM images i JOIN sources s ON s.id=i.source_id WHERE s.kind='video' ORDER BY frame_index"
    ).fetchall()
    ids = [r[0] for r in frames]
    people = [proj.store.person_ids(i) for i in ids]
    if not all(people):
        pytest.skip("the model missed the person on some video frame")
    pid = people[0][0]
    i = sk.INDEX["left_knee"]
    p0 = proj.store.load_person(pid)
    before = {ids[k]: proj.store.load_person(people[k][0]).xy[i].copy() for k in range(1, len(ids))}
    s.move_point(pid, i, float(p0.xy[i, 0] + 20), float(p0.xy[i, 1]))
    changes = plan(proj.store, pid, span=3)
    assert len(changes) >= 1
    aid, n = propagate(s, pid, span=3)
    assert aid is not None and n == len(changes)
    # frame 1 gets 3/4 of the correction, frame 3 gets 1/4, frame 4 is outside the span
    pf1 = proj.store.load_person(people[1][0])
    assert pf1.xy[i, 0] - before[ids[1]][0] == pytest.approx(20 * 3 / 4, abs=1e-6)
    assert not pf1.verified[i] and pf1.source[i] == "propagate:tester"
    if len(ids) > 3:
        assert proj.store.load_person(people[3][0]).xy[i, 0] - before[ids[3]][0] == pytest.approx(5.0, abs=1e-6)
    if len(ids) > 4:
        np.testing.assert_allclose(proj.store.load_person(people[4][0]).xy[i], before[ids[4]])
    s.undo()
    np.testing.assert_allclose(proj.store.load_person(people[1][0]).xy[i], before[ids[1]], atol=1e-2)


def test_propagate_stops_at_a_verified_keyframe(proj):
    s = proj.session("tester")
    ids = [r[0] for r in proj.store.db.execute(
        "SELECT i.id FROM images i JOIN sources s ON s.id=i.source_id WHERE s.kind='video' ORDER BY frame_index")]
    people = [proj.store.person_ids(i) for i in ids]
    if len(ids) < 3 or not all(people[:3]):
        pytest.skip("the model missed the person on some video frame")
    i = sk.INDEX["right_wrist"]
    a, b = proj.store.load_person(people[0][0]), proj.store.load_person(people[2][0])
    mid = proj.store.load_person(people[1][0]).xy[i].copy()
    s.move_point(a.id, i, float(a.xy[i, 0] + 10), float(a.xy[i, 1]))      # correction +10 at frame 0
    s.move_point(b.id, i, float(b.xy[i, 0] + 30), float(b.xy[i, 1]))      # correction +30 at frame 2
    propagate(s, a.id, span=5)
    # halfway between the keyframes: the mean of the two corrections; the keyframe itself untouched
    assert proj.store.load_person(people[1][0]).xy[i, 0] - mid[0] == pytest.approx(20.0, abs=1e-6)
    assert proj.store.load_person(people[2][0]).xy[i, 0] == pytest.approx(b.xy[i, 0] + 30)


def test_gui_command_without_display_is_one_line_error(project_dir, monkeypatch, capsys):
    from annotator.cli.base import main
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["gui", str(project_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no display") and "\n" not in err


def test_gui_module_imports_no_dearpygui():
    import subprocess
    import sys
    code = ("import sys, annotator.gui.state, annotator.cli.gui, annotator.gui.propagate, annotator.cli.base;"
            "annotator.cli.base.build_parser(); print('dearpygui' in ' '.join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_background_ranking_and_resume_where_left_off(proj, tmp_path):
    s = AppState(proj, annotator="ann", prefetch=0, user_config=tmp_path / "none.toml")
    s.open_first()
    s.queue.poll(wait=True)
    s.idle()
    assert s.pos == 0 and len(s.queue.items) == len(s.queue)
    s.go(+2)
    where = s.image_id
    s.close()
    again = AppState(proj, annotator="ann", prefetch=0, user_config=tmp_path / "none.toml")
    again.open_first()                     # shown before the ranking is needed
    assert again.image_id == where
    again.queue.poll(wait=True)            # someone else takes the ranking first (as show()'s index_of may)...
    again.idle()
    assert again.pos == 2                  # ...and the next frame still places the image in it
    # the same when the ranking lands only after the image is shown (a slow, busy machine)
    gate = threading.Event()
    import annotator.gui.state as gs
    real = gs.image_queue

    def slow_rank(*a, **k):
        gate.wait(10)
        return real(*a, **k)
    gs.image_queue = slow_rank
    try:
        late = AppState(proj, annotator="ann", prefetch=0, user_config=tmp_path / "none.toml")
        late.open_first()
        assert late.image_id == where and late.pos == -1 and not late.queue.ready
        late.idle()
        assert late.pos == -1
        gate.set()
        late.queue.poll(wait=True)
        late.idle()
        assert late.pos == 2
    finally:
        gs.image_queue = real
        gate.set()
    late.close()
    other = AppState(proj, annotator="someone else", prefetch=0, user_config=tmp_path / "none.toml")
    other.open_first()
    assert other.pos == 0
    again.close()
    other.close()


def test_display_size_texture_and_coordinates_at_a_non_1_scale(state, proj):
    """Fit to a small canvas: the texture is downscaled, but points, hit-testing and drags stay in image pixels."""
    assert display_scale(1920, 1080, 820, 894) == pytest.approx(812 / 1920)
    assert texture_size(1920, 1080, 812 / 1920) == (812, 457)
    assert display_scale(640, 480, 820, 894) == 1.0 and texture_size(640, 480, 1.0) == (640, 480)
    assert texture_level(0.5, 0.5) == "display" and texture_level(0.51, 0.5) == "window"
    assert texture_level(0.3, 0.5) == "display" and texture_level(3.0, 1.0) == "display"

    p = person_with_points(state)
    state.set_canvas(300, 200)
    state.fit()
    d = state.decoded
    w, h = d.size
    s = display_scale(w, h, 300, 200)
    assert s < 0.5 and d.scale == pytest.approx(s)
    key, buf = state.texture()
    tw, th = texture_size(w, h, s)
    assert key[1:] == ("display", tw, th, (0, 0, w, h)) and buf.size == tw * th * 3
    # the fit view maps the image onto exactly the texture's pixels: one texture pixel per screen pixel
    assert state.view.zoom == pytest.approx(s)
    assert (w * state.view.zoom, h * state.view.zoom) == pytest.approx((tw, th), abs=0.5)
    # it shows this image, the right way round: quadrant means match the full-resolution pixels
    img = d.rgb.astype(np.float64) / 255
    tex = buf.reshape(th, tw, 3)
    for ys, xs in ((slice(0, 0.5), slice(0, 0.5)), (slice(0.5, 1), slice(0.5, 1)), (slice(0, 0.5), slice(0.5, 1))):
        a = img[int(ys.start * h):int(ys.stop * h), int(xs.start * w):int(xs.stop * w)].mean((0, 1))
        b = tex[int(ys.start * th):int(ys.stop * th), int(xs.start * tw):int(xs.stop * tw)].mean((0, 1))
        np.testing.assert_allclose(b, a, atol=0.02)
    import cv2
    area = cv2.resize(d.rgb, (tw, th), interpolation=cv2.INTER_AREA) / 255
    # as good as an area average, pixel by pixel (which image opens first follows the pre-fill's queue:
    # 0.0102 on the first one after the point model came in)
    assert np.abs(tex - area).mean() < 0.012
    # hit-testing at the point's screen position finds it; a drag moves it by the delta / zoom in image pixels
    # (at this small zoom neighbouring points can be within the hit radius: take one that is alone)
    hits = [i for i in np.flatnonzero(p.labelled)
            if hit_point(state.frame.persons, state.view, *state.view.to_screen(p.xy[i]), prefer=p.id) == (p.id, i)]
    assert hits
    i = int(hits[0])
    others = [q for q in state.frame.persons if q.id != p.id]
    before = p.xy.copy()
    sx, sy = state.view.to_screen(p.xy[i])
    state.press(sx, sy)
    state.motion(sx + 20, sy + 10)
    assert state.release(sx + 20, sy + 10) is not None
    x, y = db_point(proj, p.id, i)[:2]
    assert (x, y) == pytest.approx(tuple(before[i] + np.array([20, 10]) / s))
    after = proj.store.load_person(p.id)
    rest = np.arange(sk.N) != i
    np.testing.assert_allclose(after.xy[rest], before[rest])
    for q in others:
        np.testing.assert_allclose(proj.store.load_person(q.id).xy, q.xy)
    # zoomed in past the display size: a window around what the canvas shows, its exact pixels at
    # min(1, zoom) texture px per image px, much smaller than the whole image
    kept = []
    for zoom, (sx, sy) in ((1.5 * s, (150, 100)), (2.0, (40, 30)), (3.0, (280, 190))):
        state.fit()
        state.view.zoom_at(zoom / state.view.zoom, sx, sy)
        z = state.view.zoom
        key, buf = state.texture()
        assert key[1] == "window"
        x0, y0, x1, y1 = rect = key[4]
        vx0, vy0 = state.view.to_image((0, 0))
        vx1, vy1 = state.view.to_image((300, 200))
        assert x0 <= max(vx0, 0) and y0 <= max(vy0, 0) and x1 >= min(vx1, w) and y1 >= min(vy1, h)
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        zz = min(1.0, z)
        assert key[2:4] == texture_size(x1 - x0, y1 - y0, zz)
        if zz == 1.0:
            np.testing.assert_array_equal(buf, to_texture(d.rgb[y0:y1, x0:x1]))
        assert buf.size <= (1.5 * 300 / z + 64) * (1.5 * 200 / z + 64) * zz * zz * 3 < d.rgb.size
        # a small pan keeps the window (and its buffer); a long one moves it, same size
        state.view.pan(-1, -1)                 # the view moves by far less than the 64 px grid
        key2, buf2 = state.texture()
        kept.append(key2[4] == rect and buf2 is buf)
        cx, cy = state.view.to_image((150, 100))             # towards the image's centre (edges clamp)
        state.view.pan(200 * np.sign(cx - w / 2), 150 * np.sign(cy - h / 2))
        key3, _ = state.texture()
        assert key3[2:4] == key[2:4]                        # the same texture size...
        assert key3[4] != rect or (x1 - x0, y1 - y0) == (w, h)   # ...refilled, unless it is the whole image
    assert sum(kept) >= 2                      # a 1-pixel pan re-uses the buffer (a grid edge may fall between)
    state.fit()
    assert state.texture()[0][1] == "display"
    # the next image (prefetched at the old 800x600 canvas) comes at this canvas' display size
    assert state.go(+1)
    d2 = state.decoded
    assert d2.scale == pytest.approx(display_scale(*d2.size, 300, 200))
    assert state.texture()[1].size == np.prod(texture_size(*d2.size, d2.scale)) * 3
    # a canvas larger than the image: scale 1, one buffer
    state.set_canvas(4000, 3000)
    assert state.decoded.scale == 1.0 and state.texture()[1] is state.decoded.tex
    assert state.texture()[1].size == state.decoded.rgb.size
