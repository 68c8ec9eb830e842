"""The window: canvas (image + skeletons), review queue, points table, angles, video slider, settings.

All decisions live in gui_state.AppState; this module turns its dirty flags
into draw-item updates (one point while dragging, one person after an edit,
everything only for a new image or a zoom/pan) and turns mouse/keyboard
input into AppState calls. Callbacks run on the main thread
(manual_callback_management), the only thread that touches SQLite.
"""
from __future__ import annotations

import time

import dearpygui.dearpygui as dpg
import numpy as np

from annotator.core import render
from annotator.core import skeleton as sk
from annotator.core.commands import complete_images
from annotator.core.errors import UserError
from annotator.gui.conflicts import ghost_segments
from annotator.gui import screen
from annotator.gui.state import (AppState, clamp_to, clip_segment, inside, panel_widths, point_style,
                                 short_source, view_rect)
from annotator.core.model import NOT_LABELLED, OCCLUDED, VIS_NAMES, VISIBLE
from annotator.gui import keys

BOTTOM_H = 56          # frame slider + status line
TOP_H = 34             # toolbar
ROW_H = 17             # a listbox row in the default font
# [x] only for a complete image (people verified AND nobody missing, commands.is_complete);
# [v]: every person verified, the missing-people check (C) not done yet
STATE_MARK = {"to_review": "[ ]", "in_progress": "[~]", "verified": "[v]"}
VIS_LABELS = [VIS_NAMES[VISIBLE], VIS_NAMES[OCCLUDED], VIS_NAMES[NOT_LABELLED]]
VIS_FROM_LABEL = {VIS_NAMES[v]: v for v in (VISIBLE, OCCLUDED, NOT_LABELLED)}
SUSPECT_COLOR = (*render.SUSPECT_COLOR, 255)
SELECT_COLOR = (255, 255, 255, 255)
BAD_ANGLE = (*render.BAD_ANGLE, 255)
GOOD_ANGLE = (*render.GOOD_ANGLE, 230)
GHOST_COLOR = (255, 255, 255, 200)       # the server's skeleton in a CVAT conflict: dashed white
CONFLICT_COLOR = (255, 170, 40, 255)
CROWD_COLOR = (255, 60, 60, 220)         # crowd regions, and the box that marks one


def _rgba(c, a=255):
    return (int(c[0]), int(c[1]), int(c[2]), int(a))


class PersonItems:
    """The draw items of one person: created once per image, then only reconfigured."""

    def __init__(self, node):
        self.node = node
        self.edges = [dpg.draw_line((0, 0), (0, 0), parent=node, show=False) for _ in sk.EDGES]
        self.points = [dpg.draw_circle((0, 0), 1, parent=node, show=False) for _ in range(sk.N)]


class App:
    def __init__(self, state: AppState, width: int | None = None, height: int | None = None,
                 title: str = "pose-annotator", size_file=None):
        """width/height None: the size this user last left the window at, else the screen's (screen.py)."""
        self.state = state
        state.hold_prefetch_until_drawn = True
        self.title = title
        self.size_file = size_file
        self._remember = size_file is not None or width is None     # tests with a fixed size leave it alone
        if width is None or height is None:
            width, height = screen.initial_size(screen.x_screen_size(), screen.saved_size(size_file))
        self.width, self.height = width, height
        self.left_w, self.right_w = panel_widths(width)
        self._layout_key = None
        self.persons: dict[int, PersonItems] = {}
        self.edges_of = [[k for k, (a, b) in enumerate(sk.EDGES) if i in (a, b)] for i in range(sk.N)]
        # each edge's region, by skeleton.edge_color's rule (region colors are distinct); colors are user settings
        region_of = {c: r for r, c in sk.REGION_COLORS.items()}
        self.edge_region = [region_of[sk.edge_color(a, b)] for a, b in sk.EDGES]
        self.tex = None
        self.tex_size = None
        self.tex_key = None              # AppState.texture's key of what is uploaded; [4] = the image region it covers
        self.inputs: list = []
        self.frame_ms: list[float] = []
        self.queue_rows: list[int] = []
        self.conflicts_here: list = []
        self.conflict_buttons: dict[tuple[int, str], int] = {}     # (person id, "local"/"server") -> button
        self._closed = False
        self._was_typing = False
        self.poll_mouse = True          # the benchmark drives drags itself

    # -- setup ---------------------------------------------------------------------------------------
    def build(self) -> None:
        dpg.create_context()
        dpg.configure_app(manual_callback_management=True)
        dpg.create_viewport(title=self.title, width=self.width, height=self.height, x_pos=0, y_pos=0,
                            resizable=True, min_width=screen.MIN_SIZE[0] // 2, min_height=screen.MIN_SIZE[1] // 2)
        dpg.setup_dearpygui()
        self.texreg = dpg.add_texture_registry()
        with dpg.window(tag="main", no_scrollbar=True):
            self._toolbar()
            with dpg.group(horizontal=True):
                with dpg.child_window(width=self.left_w, height=-BOTTOM_H, tag="left"):
                    self._queue_panel()
                with dpg.child_window(width=-self.right_w, height=-BOTTOM_H, tag="center", no_scrollbar=True,
                                      border=False, no_scroll_with_mouse=True):
                    self.dl = dpg.add_drawlist(600, 600, tag="canvas")
                    self.img_item = None
                    self.layer = dpg.add_draw_node(parent=self.dl)
                    self.sel_node = dpg.add_draw_node(parent=self.dl)
                    self.angle_node = dpg.add_draw_node(parent=self.dl)
                    self.ghost_node = dpg.add_draw_node(parent=self.dl)
                    self.crowd_node = dpg.add_draw_node(parent=self.dl)
                    self.box_item = dpg.draw_rectangle((0, 0), (0, 0), parent=self.dl, color=(255, 255, 0, 255),
                                                       thickness=2, show=False)
                with dpg.child_window(width=-1, height=-BOTTOM_H, tag="right"):
                    self._right_panel()
            with dpg.group(horizontal=True, tag="frames_bar", show=False):
                dpg.add_text("frame")
                self.slider = dpg.add_slider_int(width=-260, callback=self._on_slider, min_value=0, max_value=0)
                dpg.add_button(label="Propagate correction", callback=lambda: self._act("propagate"))
            self.status = dpg.add_text("", tag="status")
        self._help_window()
        with dpg.handler_registry():
            dpg.add_mouse_click_handler(button=-1, callback=self._on_click)
            dpg.add_mouse_release_handler(button=-1, callback=self._on_release)
            dpg.add_mouse_wheel_handler(callback=self._on_wheel)
            dpg.add_key_press_handler(callback=self._on_key)      # no key: every key
        dpg.set_primary_window("main", True)
        dpg.show_viewport()

    def _toolbar(self) -> None:
        sc = self.state.shortcuts.table
        with dpg.group(horizontal=True):
            for label, action in (("< Prev", "prev_image"), ("Next >", "next_image"), ("Suspect", "next_suspect"),
                                  ("Visibility", "cycle_visibility"), ("Swap L/R", "swap_lr"),
                                  ("Verify person", "verify_person"), ("Verify image", "verify_image"),
                                  ("Nobody missing", "confirm_people"),
                                  ("Add (box)", "add_person_box"), ("Template", "add_template"),
                                  ("Delete", "delete_person"), ("Undo", "undo"), ("Redo", "redo"), ("Fit", "fit"),
                                  ("Help", "help")):
                b = dpg.add_button(label=label, callback=lambda s, a, u: self._act(u), user_data=action)
                with dpg.tooltip(b):
                    dpg.add_text(f"{action.replace('_', ' ')}  [{sc[action]}]")

    def _queue_panel(self) -> None:
        # CVAT conflicts first (only shown when there are any): they block the person's sync
        with dpg.group(tag="conflict_panel", show=False):
            self.conflict_count = dpg.add_text("", color=CONFLICT_COLOR)
            dpg.add_button(label="Next conflict image", width=-1, callback=lambda: self._act("next_conflict"))
            self.conflict_rows = dpg.add_group()
            dpg.add_separator()
        dpg.add_text("Review queue")
        from annotator.gui.state import FILTERS
        dpg.add_combo(list(FILTERS), default_value=self.state.queue.filter, width=-1,
                      callback=lambda s, a: self._set_filter(a))
        self.queue_count = dpg.add_text("")
        self.queue_list = dpg.add_listbox([], num_items=28, width=-1, callback=self._on_queue_pick)
        dpg.add_button(label="Load more", width=-1, callback=self._load_more)
        dpg.add_button(label="Refresh order", width=-1, callback=lambda: self._set_filter(self.state.queue.filter))
        dpg.add_spacer(height=6)
        dpg.add_text("Suspect points here", color=(255, 150, 220))
        self.suspect_text = dpg.add_text("", wrap=self.left_w - 20)

    def _right_panel(self) -> None:
        with dpg.tab_bar():
            with dpg.tab(label="Points"):
                self.person_label = dpg.add_text("no person selected")
                with dpg.table(header_row=True, resizable=False, policy=dpg.mvTable_SizingFixedFit,
                               scrollY=True, height=-190, row_background=True, tag="points_table"):
                    for name in ("point", "x", "y", "visibility", "conf", "by"):
                        dpg.add_table_column(label=name)
                    self.rows = []
                    for i in range(sk.N):
                        with dpg.table_row():
                            name = dpg.add_selectable(label=sk.NAMES[i], span_columns=False, user_data=i,
                                                      callback=lambda s, a, u: self._pick_point(u))
                            x = dpg.add_input_float(width=52, step=0, format="%.1f", on_enter=True, user_data=(i, "x"),
                                                    callback=self._on_table_edit)
                            y = dpg.add_input_float(width=52, step=0, format="%.1f", on_enter=True, user_data=(i, "y"),
                                                    callback=self._on_table_edit)
                            v = dpg.add_combo(VIS_LABELS, width=88, no_arrow_button=True, user_data=(i, "vis"), callback=self._on_table_edit)
                            c = dpg.add_text("")
                            src = dpg.add_text("")
                            self.inputs += [x, y]
                            self.rows.append((name, x, y, v, c, src))
                dpg.add_text("Joint angles (selected person)")
                self.angle_texts = {}
                with dpg.table(header_row=False, policy=dpg.mvTable_SizingStretchSame):
                    dpg.add_table_column()
                    dpg.add_table_column()
                    for k in range(0, len(sk.ANGLES), 2):
                        with dpg.table_row():
                            for name, *_ in sk.ANGLES[k:k + 2]:
                                self.angle_texts[name] = dpg.add_text(f"{name}: -")
                self.angle_check = dpg.add_checkbox(label="draw angles on the canvas", default_value=self.state.show_angles,
                                                    callback=lambda s, a: self._setting("show_angles", a))
            with dpg.tab(label="Settings"):
                st = self.state
                dpg.add_text("Annotator name (recorded with every edit)")
                with dpg.group(horizontal=True):
                    self.name_input = dpg.add_input_text(default_value=st.session.annotator, width=200, on_enter=True,
                                                         callback=lambda s, a: self._set_name(a))
                    dpg.add_button(label="Set", callback=lambda: self._set_name(dpg.get_value(self.name_input)))
                self.inputs.append(self.name_input)
                dpg.add_slider_float(label="point size", default_value=st.point_size, min_value=2, max_value=15,
                                     callback=lambda s, a: self._setting("point_size", round(a, 1)))
                dpg.add_slider_float(label="suspect threshold", default_value=st.suspect_threshold, min_value=0,
                                     max_value=1, callback=lambda s, a: self._setting("suspect_threshold", round(a, 2)))
                dpg.add_text("Model pre-fill (add person in a box)")
                for key in ("min_detection_confidence", "min_pose_presence"):
                    dpg.add_slider_float(label=key.replace("_", " "), default_value=float(st.settings["prefill"][key]),
                                         min_value=0, max_value=1, user_data=key,
                                         callback=lambda s, a, u: self._prefill_setting(u, round(a, 2)))
                dpg.add_text("Colors by body region")
                for region in sk.REGION_COLORS:
                    dpg.add_color_edit(_rgba(st.colors[region]), label=region, no_alpha=True, width=200,
                                       user_data=region, callback=self._on_color)

    def _help_window(self) -> None:
        with dpg.window(label="Shortcuts (F1 closes)", tag="help", show=False, autosize=True, pos=(40, 40),
                        modal=False, no_collapse=True):
            with dpg.table(header_row=True, policy=dpg.mvTable_SizingStretchProp):
                dpg.add_table_column(label="key")
                dpg.add_table_column(label="action")
                for combo, _, desc in self.state.shortcuts.rows():
                    with dpg.table_row():
                        dpg.add_text(combo)
                        dpg.add_text(desc)
            dpg.add_text("Mouse: drag a point moves only that point; Shift+drag moves the whole person;\n"
                         "drag empty space or right-drag pans; wheel zooms at the cursor.\n"
                         "Every edit is saved at once; Ctrl+Z / Ctrl+Shift+Z undo and redo.\n"
                         "CVAT conflicts (!C in the queue): the server's version is the dashed white skeleton;\n"
                         "Keep local / Take server in the left panel settle one person (undoable).\n"
                         "Shortcuts: [shortcuts] in project.toml or ~/.config/pose-annotator/config.toml")
        with dpg.theme() as compact:          # tight rows: the whole help fits a 768-pixel-high screen
            with dpg.theme_component(dpg.mvAll):
                dpg.add_theme_style(dpg.mvStyleVar_CellPadding, 4, 0)
                dpg.add_theme_style(dpg.mvStyleVar_ItemSpacing, 8, 2)
        dpg.bind_item_theme("help", compact)

    # -- input -----------------------------------------------------------------------------------------------
    def _canvas_pos(self) -> tuple[float, float]:
        mx, my = dpg.get_mouse_pos(local=False)
        x0, y0 = dpg.get_item_rect_min(self.dl)
        return mx - x0, my - y0

    def _over_canvas(self) -> bool:
        if dpg.is_item_shown("help") and dpg.is_item_hovered("help"):
            return False
        x, y = self._canvas_pos()
        w, h = self.state.canvas
        return 0 <= x < w and 0 <= y < h

    def _on_click(self, sender, app_data) -> None:
        button = app_data if isinstance(app_data, int) else app_data[0]
        if not self._over_canvas() or self.state.drag is not None:
            return
        x, y = self._canvas_pos()
        self._guard(self.state.press, x, y, "left" if button == dpg.mvMouseButton_Left else "other",
                    "shift" in keys.modifiers())

    def _on_release(self, sender, app_data) -> None:
        if self.state.drag is None:
            return
        x, y = self._canvas_pos()
        self._guard(self.state.release, x, y)

    def _on_wheel(self, sender, app_data) -> None:
        if self._over_canvas():
            x, y = self._canvas_pos()
            self.state.wheel(x, y, float(app_data))

    def _typing(self) -> bool:
        """A text field has (or had, last frame: Enter ends the edit) the keyboard: no shortcuts."""
        return self._was_typing or any(dpg.is_item_active(i) for i in self.inputs)

    def _on_key(self, sender, app_data) -> None:
        code = app_data if isinstance(app_data, int) else app_data[0]
        if keys.is_modifier(code) or self._typing():
            return
        name = keys.key_name(code)
        if name is None:
            return
        cursor = self._canvas_pos() if self._over_canvas() else None
        self.state.on_key(name, keys.modifiers(), cursor)

    def _act(self, action: str) -> None:
        self.state.run(action)

    def _guard(self, fn, *a):
        try:
            return fn(*a)
        except UserError as e:
            self.state.drag = None
            self.state.say(f"error: {e}")

    def _pick_point(self, idx: int) -> None:
        if self.state.sel_person is not None:
            self.state.select(self.state.sel_person, idx)

    def _on_table_edit(self, sender, app_data, user) -> None:
        idx, field = user
        if field == "vis":
            self._guard(self.state.set_point, idx, None, None, VIS_FROM_LABEL[app_data])
        else:
            self._guard(self.state.set_point, idx, float(app_data) if field == "x" else None,
                        float(app_data) if field == "y" else None, None)

    def _on_queue_pick(self, sender, app_data) -> None:
        try:
            k = dpg.get_item_configuration(self.queue_list)["items"].index(app_data)
        except ValueError:
            return
        self._guard(self.state.show, self.queue_rows[k], k)

    def _on_slider(self, sender, value) -> None:
        frames = self.state.video_frames()
        if 0 <= value < len(frames) and frames[value][0] != self.state.image_id:
            self._guard(self.state.show, frames[value][0])

    def _set_filter(self, name: str) -> None:
        self.state.set_filter(name)

    def _load_more(self) -> None:
        self.state.queue.ensure(len(self.state.queue.items) + self.state.queue.PAGE - 1)
        self.state.mark("queue")

    def _set_name(self, name: str) -> None:
        self._guard(self.state.set_annotator, name)

    def _setting(self, key, value) -> None:
        self._guard(self.state.set_gui_setting, key, value)
        if key == "show_angles":
            dpg.set_value(self.angle_check, bool(value))

    def _prefill_setting(self, key, value) -> None:
        self._guard(self.state.set_prefill_setting, key, value)

    def _on_color(self, sender, value, region) -> None:
        rgb = [int(round(c * 255)) if isinstance(c, float) and c <= 1.0 else int(c) for c in value[:3]]
        self._guard(self.state.set_gui_setting, f"color_{region}", rgb)

    # -- per-frame update -------------------------------------------------------------------------------
    def _layout(self) -> None:
        """The panels and the canvas follow the viewport (a resize, or the first frames)."""
        vw, vh = dpg.get_viewport_client_width(), dpg.get_viewport_client_height()
        if (vw, vh) != self._layout_key:
            self._layout_key = (vw, vh)
            self.left_w, self.right_w = panel_widths(vw)
            dpg.configure_item("left", width=self.left_w)
            dpg.configure_item("center", width=-self.right_w)
            dpg.configure_item(self.suspect_text, wrap=self.left_w - 20)
            # the queue list takes the left panel's height less its other rows (filter, counts, buttons,
            # the 8 suspect lines)
            dpg.configure_item(self.queue_list, num_items=int(max(4, (vh - TOP_H - BOTTOM_H - 330) // ROW_H)))
            self.state.mark("queue")
        cw, ch = dpg.get_item_rect_size("center")
        if cw < 50 or ch < 50:             # before the first render: what the panels leave
            cw, ch = vw - self.left_w - self.right_w - 24, vh - TOP_H - BOTTOM_H - 16
        w, h = max(100, int(cw)), max(100, int(ch))
        if (w, h) != tuple(self.state.canvas):
            dpg.configure_item(self.dl, width=w, height=h)
            self.state.set_canvas(w, h)
            self.state.fit()

    def tick(self) -> None:
        """Poll the drag, then redraw whatever the state marked dirty."""
        st = self.state
        self._layout()
        st.idle()
        if st.drag is not None and self.poll_mouse:
            x, y = self._canvas_pos()
            st.motion(x, y)
        dirty = st.take_dirty()
        if not dirty:
            return
        if "image" in dirty or "view" in dirty:
            self._upload_texture(force="image" in dirty)    # places the image (new image, zoom, pan)
        if "people" in dirty:
            dpg.set_value(self.angle_check, st.show_angles)
            self._rebuild_people()
            dirty |= {"selection"}
        elif "view" in dirty or "image" in dirty:
            for p in st.frame.persons if st.frame else []:
                self._update_person(p)
            dirty |= {"selection"}
        if "conflicts" in dirty:
            self._update_conflicts()
            dirty |= {"selection"}
        if not ("image" in dirty or "people" in dirty or "view" in dirty):
            if "persons" in dirty:
                for p in st.frame.persons:
                    self._update_person(p)
                dirty |= {"selection"}
            for d in dirty:
                if isinstance(d, tuple) and d[0] == "point":
                    self._update_point(st.person(d[1]), d[2])
                elif isinstance(d, tuple) and d[0] == "person":
                    self._update_person(st.person(d[1]))
        if "selection" in dirty or any(isinstance(d, tuple) for d in dirty):
            self._draw_selection()
        if "selection" in dirty:
            self._draw_ghosts()
        if "box" in dirty:
            self._draw_box()
        if dirty & {"crowd", "image", "view", "people"}:
            self._draw_crowd()
        if "table" in dirty or "selection" in dirty or any(isinstance(d, tuple) for d in dirty):
            self._update_table(values="table" in dirty or any(isinstance(d, tuple) for d in dirty))
        if "queue" in dirty:
            self._update_queue()
        if "frames" in dirty:
            self._update_frames()
        if "help" in dirty:
            dpg.configure_item("help", show=not dpg.is_item_shown("help"), pos=(max(0, self.left_w - 40), 24))
        if "status" in dirty or "queue" in dirty:
            s = st.session
            done = "complete" if st.complete else "not complete"
            dpg.set_value(self.status, f"{st.status}    |  {done}  |  annotator: {s.annotator}  |  undo: {len(s._undo)}"
                          f"  redo: {len(s._redo)}  |  zoom {st.view.zoom:.2f}")

    def _upload_texture(self, force: bool = True) -> None:
        """Point a raw texture at the prefetched float buffer (no copy; one texture per texture size).

        Dear PyGui re-uploads raw textures every frame; a static texture would
        upload once but costs a full copy (~40-60 ms for 1920x1080) per image,
        which is what "next image" must avoid. The buffer is at the canvas'
        display size, or zoomed in past it a window around the visible region
        (AppState.texture), so a 1920x1080 photo uploads ~1/9 of its floats
        fit to the window and no more than ~2.3 canvases' worth zoomed in.
        The image item spans the image region the texture covers, in image
        pixels, so points and hit-testing never see the texture size.
        """
        t = self.state.texture()
        if t is None:
            return
        key, buf = t
        if key == self.tex_key and not force:
            self._place_image()
            return
        size = key[2:4]
        if self.tex_size != size:
            old = self.tex
            self.tex = dpg.add_raw_texture(size[0], size[1], buf, format=dpg.mvFormat_Float_rgb, parent=self.texreg)
            self.tex_size = size
            if self.img_item is not None:
                dpg.delete_item(self.img_item)
            self.img_item = dpg.draw_image(self.tex, (0, 0), size, parent=self.dl, before=self.layer)
            if old is not None:
                dpg.delete_item(old)
        else:
            dpg.set_value(self.tex, buf)
        self.tex_key = key
        self._place_image()

    def _place_image(self) -> None:
        if self.img_item is None or self.state.decoded is None or self.tex_key is None:
            return
        x0, y0, x1, y1 = self.tex_key[4]
        v = self.state.view
        dpg.configure_item(self.img_item, pmin=tuple(v.to_screen((x0, y0))), pmax=tuple(v.to_screen((x1, y1))))

    def _rebuild_people(self) -> None:
        dpg.delete_item(self.layer, children_only=True)
        self.persons.clear()
        for p in self.state.frame.persons if self.state.frame else []:
            self.persons[p.id] = PersonItems(dpg.add_draw_node(parent=self.layer))
            self._update_person(p)

    def _clip_rect(self):
        st = self.state
        if st.decoded is None:
            return (0.0, 0.0, *st.canvas)
        return view_rect(st.view, *st.decoded.size, *st.canvas)

    def _point_cfg(self, p, i, s, sel: bool, rect=None) -> dict:
        rect = rect or self._clip_rect()
        if not inside(s[i], rect):
            if p.vis[i] == NOT_LABELLED and not (sel and p.hidden_guess[i]):
                return {"show": False}
            # outside the photo (or the visible part of it): a small ring at the edge, where it went
            col = (200, 200, 200, 150) if p.vis[i] == NOT_LABELLED else _rgba(self.state.colors[sk.REGIONS[i]])
            return {"show": True, "center": clamp_to(s[i], rect), "radius": 3.0, "fill": (0, 0, 0, 0),
                    "color": col, "thickness": 2.0}
        if p.vis[i] == NOT_LABELLED:
            if not (sel and p.hidden_guess[i]):
                return {"show": False}
            # the model's guess for a point it does not see: a small grey ring on the selected
            # person only (v brings it back as visible, a drag places it)
            return {"show": True, "center": (float(s[i, 0]), float(s[i, 1])), "radius": 3.0,
                    "fill": (0, 0, 0, 0), "color": (200, 200, 200, 150), "thickness": 1.0}
        st = self.state
        r, alpha = point_style(p.conf[i], st.point_size)
        col = st.colors[sk.REGIONS[i]]
        if sel:
            r += 1.5
        cfg = {"show": True, "center": (float(s[i, 0]), float(s[i, 1])), "radius": r}
        if p.vis[i] == OCCLUDED:          # occluded: hollow ring
            cfg.update(fill=(0, 0, 0, 0), color=_rgba(col, alpha), thickness=2.0)
        else:                              # verified: white rim; predicted: dark rim
            cfg.update(fill=_rgba(col, alpha), color=(255, 255, 255, 255) if p.verified[i] else (0, 0, 0, 160),
                       thickness=1.5 if p.verified[i] else 1.0)
        return cfg

    def _edge_cfg(self, p, k, s, sel: bool, rect=None) -> dict:
        a, b = sk.EDGES[k]
        if p.vis[a] == NOT_LABELLED or p.vis[b] == NOT_LABELLED:
            return {"show": False}
        seg = clip_segment(s[a], s[b], rect or self._clip_rect())     # nothing drawn outside the photo
        if seg is None:
            return {"show": False}
        alpha = 230 if sel or self.state.sel_person is None else 150
        return {"show": True, "p1": seg[0], "p2": seg[1],
                "color": _rgba(self.state.colors[self.edge_region[k]], alpha), "thickness": 3.0 if sel else 2.0}

    def _update_person(self, p) -> None:
        if p is None or p.id not in self.persons:
            return
        items = self.persons[p.id]
        s = self.state.view.to_screen(self.state.display_xy(p))
        sel = p.id == self.state.sel_person
        rect = self._clip_rect()
        for k, it in enumerate(items.edges):
            dpg.configure_item(it, **self._edge_cfg(p, k, s, sel, rect))
        for i, it in enumerate(items.points):
            dpg.configure_item(it, **self._point_cfg(p, i, s, sel, rect))

    def _update_point(self, p, i: int) -> None:
        """While dragging: one circle and the edges touching it, nothing else."""
        if p is None or p.id not in self.persons:
            return
        items = self.persons[p.id]
        s = self.state.view.to_screen(self.state.display_xy(p))
        sel = p.id == self.state.sel_person
        dpg.configure_item(items.points[i], **self._point_cfg(p, i, s, sel))
        for k in self.edges_of[i]:
            dpg.configure_item(items.edges[k], **self._edge_cfg(p, k, s, sel))

    def _draw_selection(self) -> None:
        st = self.state
        dpg.delete_item(self.sel_node, children_only=True)
        dpg.delete_item(self.angle_node, children_only=True)
        for pid, idx, _ in st.suspects()[:8]:
            p = st.person(pid)
            if p is not None:
                c = st.view.to_screen(st.display_xy(p)[idx])
                dpg.draw_circle(tuple(c), st.point_size + 5, color=SUSPECT_COLOR, thickness=1.5, parent=self.sel_node)
        p = st.selected
        if p is None:
            return
        xy = st.display_xy(p)
        m = p.labelled
        if m.any():
            s = st.view.to_screen(xy[m])
            pad = 8
            dpg.draw_rectangle(tuple(s.min(0) - pad), tuple(s.max(0) + pad), color=(255, 255, 255, 200),
                               thickness=1.5, parent=self.sel_node)
        if st.sel_point is not None and p.vis[st.sel_point] != NOT_LABELLED:
            c = st.view.to_screen(xy[st.sel_point])
            dpg.draw_circle(tuple(c), st.point_size + 4, color=SELECT_COLOR, thickness=2.5, parent=self.sel_node)
        if st.show_angles:
            angles, bad = st.angles()
            for name, a, v, b in sk.ANGLES:
                val = angles.get(name)
                if val is None:
                    continue
                self._draw_arc(xy[a], xy[v], xy[b], val, name in bad)

    def _draw_arc(self, a, v, b, deg: float, bad: bool) -> None:
        st = self.state
        sv = st.view.to_screen(v)
        # the arc's directions in image space; the view only scales and shifts, so they hold on screen
        pts = [(float(x), float(y)) for x, y in render.angle_arc(a - v + sv, sv, b - v + sv, 18.0)]
        col = BAD_ANGLE if bad else GOOD_ANGLE
        dpg.draw_polyline(pts, color=col, thickness=2, parent=self.angle_node)
        dpg.draw_text((float(sv[0] + 10), float(sv[1] - 24)), f"{deg:.0f}", color=col, size=14, parent=self.angle_node)

    def _draw_crowd(self) -> None:
        """The image's crowd regions: a thin red frame each (people there are not labelled one by one)."""
        st = self.state
        dpg.delete_item(self.crowd_node, children_only=True)
        for x, y, w, h in (st.frame.crowd_regions if st.frame else []):
            a, b = st.view.to_screen((x, y)), st.view.to_screen((x + w, y + h))
            dpg.draw_rectangle(tuple(a), tuple(b), color=CROWD_COLOR, thickness=1, parent=self.crowd_node)
            dpg.draw_text((float(a[0]) + 3, float(a[1]) + 2), "crowd", color=CROWD_COLOR, size=13, parent=self.crowd_node)

    def _draw_box(self) -> None:
        st = self.state
        if st.box is None:
            dpg.configure_item(self.box_item, show=False)
            return
        x, y, w, h = st.box
        dpg.configure_item(self.box_item, show=True, pmin=tuple(st.view.to_screen((x, y))),
                           pmax=tuple(st.view.to_screen((x + w, y + h))),
                           color=CROWD_COLOR if st.box_mode == "crowd" else (255, 255, 0, 255))

    def _update_table(self, values: bool = True) -> None:
        st = self.state
        p = st.selected
        sus = {(pid, i) for pid, i, _ in st.suspects()}
        if p is None:
            dpg.set_value(self.person_label, "no person selected (click a person; W cycles)")
            for i, (name, x, y, v, c, src) in enumerate(self.rows):
                # nothing of the previous person stays: no suspect marks, no editable 0.0 fields
                dpg.configure_item(name, label=sk.NAMES[i])
                for item in (x, y, v):
                    dpg.configure_item(item, show=False)
                dpg.set_value(c, "")
                dpg.set_value(src, "")
                dpg.set_value(name, False)
            for n, t in self.angle_texts.items():
                dpg.set_value(t, f"{n}: -")
            return
        nv = int(p.verified.sum())
        dpg.set_value(self.person_label, f"person {p.id}: {nv}/{sk.N} verified"
                      + (f", selected: {sk.NAMES[st.sel_point]}" if st.sel_point is not None else ""))
        xy = st.display_xy(p)
        for i, (name, x, y, v, c, src) in enumerate(self.rows):
            dpg.set_value(name, i == st.sel_point)
            if values:
                for item in (x, y, v):
                    dpg.configure_item(item, show=True)
                dpg.configure_item(name, label=("! " if (p.id, i) in sus else "") + sk.NAMES[i])
                dpg.set_value(x, float(xy[i, 0]))
                dpg.set_value(y, float(xy[i, 1]))
                dpg.set_value(v, VIS_NAMES[int(p.vis[i])])
                dpg.set_value(c, "" if np.isnan(p.conf[i]) else f"{p.conf[i]:.2f}")
                dpg.set_value(src, ("* " if p.verified[i] else "") + short_source(p.source[i]))
        angles, bad = st.angles()
        for n, t in self.angle_texts.items():
            val = angles.get(n)
            dpg.set_value(t, f"{n}: " + ("-" if val is None else f"{val:.0f} deg" + ("  IMPLAUSIBLE" if n in bad else "")))
            dpg.configure_item(t, color=BAD_ANGLE if n in bad else (255, 255, 255, 255))

    def _update_queue(self) -> None:
        st = self.state
        q = st.queue
        states = q.state_of([it.image_id for it in q.items])
        conflicted = set(st.conflicts.images())
        complete = complete_images(st.store)
        labels = []
        self.queue_rows = []
        for n, it in enumerate(q.items):
            state = states.get(it.image_id, it.review_state)
            mark = "[x]" if it.image_id in complete else STATE_MARK.get(state, "[?]")
            name = it.file_name.rsplit("/", 1)[-1]
            flag = "!C " if it.image_id in conflicted else ""
            score = f"{it.score:.1f}"
            room = max(6, (self.left_w - 34) // 7 - 12 - len(flag) - len(score))   # 7 px a character
            labels.append(f"{n + 1:>4} {mark} {flag}{name if len(name) <= room else name[:room - 1] + '~'} {score}")
            self.queue_rows.append(it.image_id)
        dpg.configure_item(self.queue_list, items=labels)
        if 0 <= st.pos < len(labels):
            dpg.set_value(self.queue_list, labels[st.pos])
        dpg.set_value(self.queue_count, f"{(st.pos + 1) if st.pos >= 0 else '-'} / {len(q)} images"
                      f" ({len(q.items)} loaded)")
        sus = st.suspects()
        dpg.set_value(self.suspect_text, "\n".join(
            f"{sk.NAMES[i]} (person {pid}): {s:.2f}" for pid, i, s in sus[:8]) or "none above the threshold")

    def _update_conflicts(self) -> None:
        """The CVAT conflict panel: how many images, and per person here: what clashed, keep local / take server."""
        st = self.state
        images = st.conflicts.images()
        self.conflicts_here = st.conflicts_here()
        dpg.configure_item("conflict_panel", show=bool(images))
        dpg.delete_item(self.conflict_rows, children_only=True)
        self.conflict_buttons.clear()
        if not images:
            return
        sc = st.shortcuts.table
        dpg.set_value(self.conflict_count, f"CVAT conflicts: {len(images)} image(s)"
                      + (f", {len(self.conflicts_here)} here" if self.conflicts_here else ""))
        for c in self.conflicts_here:
            dpg.add_text(c.label + ("\n(server: dashed white skeleton)" if c.server is not None else ""),
                         wrap=self.left_w - 20, parent=self.conflict_rows)
            with dpg.group(horizontal=True, parent=self.conflict_rows):
                for label, prefer in (("Keep local", "local"), ("Take server", "server")):
                    b = dpg.add_button(label=label, user_data=(c.person_id, prefer),
                                       callback=lambda s, a, u: self._guard(self.state.resolve_conflict, u[1], u[0]))
                    with dpg.tooltip(b):
                        dpg.add_text(f"[{sc['conflict_keep_local' if prefer == 'local' else 'conflict_take_server']}]"
                                     " on the selected person; undo with Ctrl+Z")
                    self.conflict_buttons[(c.person_id, prefer)] = b

    def _draw_ghosts(self) -> None:
        """The server's version of each person in conflict: dashed skeleton, rings, and where our points differ."""
        st = self.state
        dpg.delete_item(self.ghost_node, children_only=True)
        for c in self.conflicts_here:
            if c.server is None or c.image_id != st.image_id:
                continue
            sv = c.server.vis > 0
            s = st.view.to_screen(c.server.xy)
            for p0, p1 in ghost_segments(s, sv, sk.EDGES):
                dpg.draw_line(p0, p1, color=GHOST_COLOR, thickness=1.5, parent=self.ghost_node)
            ours = st.person(c.person_id)
            o = st.view.to_screen(st.display_xy(ours)) if ours is not None else None
            for i in np.flatnonzero(sv):
                dpg.draw_circle((float(s[i, 0]), float(s[i, 1])), max(2.0, st.point_size * 0.7), color=GHOST_COLOR,
                                thickness=1.0, parent=self.ghost_node)
                if o is not None and ours.vis[i] and np.hypot(*(o[i] - s[i])) > 2.0:
                    dpg.draw_line(tuple(o[i]), (float(s[i, 0]), float(s[i, 1])), color=CONFLICT_COLOR,
                                  thickness=1.0, parent=self.ghost_node)
            if sv.any():
                top = s[sv].min(0)
                dpg.draw_text((float(top[0]), float(top[1]) - 18), f"CVAT ({c.cvat_user or 'server'})",
                              color=GHOST_COLOR, size=14, parent=self.ghost_node)

    def _update_frames(self) -> None:
        frames = self.state.video_frames()
        dpg.configure_item("frames_bar", show=bool(frames))
        if frames:
            ids = [f[0] for f in frames]
            dpg.configure_item(self.slider, max_value=len(frames) - 1)
            dpg.set_value(self.slider, ids.index(self.state.image_id))

    def attach(self, state: AppState) -> None:
        """Show another project state in this window (Dear PyGui allows one context per process)."""
        old, self.state = self.state, state
        state.hold_prefetch_until_drawn = True
        if old is not state:
            old.close()
        dpg.delete_item(self.layer, children_only=True)
        self.persons.clear()
        state.set_canvas(*old.canvas)
        dpg.set_value(self.name_input, state.session.annotator)
        state.mark("image", "people", "selection", "table", "queue", "frames", "status", "conflicts")

    # -- loop ----------------------------------------------------------------------------------------------
    def frame(self) -> float:
        """One frame: callbacks (input), state -> draw items, render. Returns seconds spent."""
        t0 = time.perf_counter()
        dpg.run_callbacks(dpg.get_callback_queue())
        self.tick()
        self._was_typing = any(dpg.is_item_active(i) for i in self.inputs)
        t1 = time.perf_counter()
        dpg.render_dearpygui_frame()
        self.state.drawn()
        dt = time.perf_counter() - t0
        self.last_split = (t1 - t0, dt - (t1 - t0))     # (our work: input + state + draw items, rendering)
        if len(self.frame_ms) < 10000:
            self.frame_ms.append(dt * 1000)
        return dt

    def run(self, max_fps: float = 60.0) -> None:
        """Until the window closes; capped at max_fps where there is no vsync (e.g. Xvfb) to spare the CPU."""
        period = 1.0 / max_fps
        while dpg.is_dearpygui_running():
            dt = self.frame()
            if dt < period:
                time.sleep(period - dt)
        self.close()

    def screenshot(self, frames: int = 3) -> np.ndarray:
        """The rendered window as uint8 RGBA (H, W, 4)."""
        got = {}
        dpg.output_frame_buffer(callback=lambda s, a: got.setdefault("buf", a))
        for _ in range(30):
            self.frame()
            if "buf" in got:
                break
        b = got["buf"]
        a = np.asarray(b, dtype=np.float32).reshape(b.get_height(), b.get_width(), 4)
        return (a * 255 + 0.5).astype(np.uint8)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._remember:
                screen.save_size(dpg.get_viewport_width(), dpg.get_viewport_height(), self.size_file)
            self.state.close()
            dpg.destroy_context()


def run_app(project, annotator: str | None = None) -> None:
    state = AppState(project, annotator=annotator)
    app = App(state, title=f"pose-annotator: {project.settings['project']['name']}")
    app.build()
    for _ in range(2):       # let the layout settle so the first image fits the canvas
        app.frame()
    state.open_first()
    app.run()
