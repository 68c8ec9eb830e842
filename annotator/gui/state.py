"""Headless state and logic of the desktop app; annotator/gui/ only draws it.

Everything the annotator can do is decided here (hit-testing, what a drag
means, which key does what, which image comes next) and every edit goes
through commands.Session, so it is written to SQLite before the next frame
is drawn. No Dear PyGui import: this module is unit-tested without a display
and reused by the benchmark. The GUI asks `take_dirty()` each frame and
redraws only what changed (one point while dragging, one person after an
edit, everything only on a new image or view change).
"""
from __future__ import annotations

import os
import threading
import time
import tomllib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.gui.conflicts import Conflict, ConflictTracker
from annotator.core.model import NOT_LABELLED, OCCLUDED, VIS_NAMES, VISIBLE, Frame, Person
from annotator.core.model import TEMPLATE_UV, template_person  # noqa: F401  (the app's templates)
from annotator.core.commands import is_complete
from annotator.review.queue import FILTERS, SUSPECT_THRESHOLD, QueueItem, image_queue, suspect_points

# -- shortcuts -------------------------------------------------------------------------------

DEFAULT_SHORTCUTS: dict[str, str] = {
    "next_image": "n",
    "prev_image": "p",
    "next_suspect": "tab",
    "next_person": "w",
    "cycle_visibility": "v",
    "set_occluded": "o",
    "swap_lr": "s",
    "verify_person": "enter",
    "verify_image": "shift+enter",
    "confirm_people": "c",
    "add_person_box": "a",
    "mark_crowd": "shift+delete",
    "add_template": "t",
    "delete_person": "delete",
    "undo": "ctrl+z",
    "redo": "ctrl+shift+z",
    "zoom_in": "equal",
    "zoom_out": "minus",
    "fit": "f",
    "toggle_angles": "g",
    "prev_frame": "left",
    "next_frame": "right",
    "propagate": "ctrl+p",
    "help": "f1",
    "cancel": "escape",
    "next_conflict": "alt+c",
    "conflict_keep_local": "alt+l",
    "conflict_take_server": "alt+s",
}

SHORTCUT_HELP: dict[str, str] = {
    "next_image": "next image in the review queue",
    "prev_image": "previous image in the review queue",
    "next_suspect": "select the next most suspicious point (then the next image)",
    "next_person": "select the next person",
    "cycle_visibility": "point: visible -> occluded -> not labelled",
    "set_occluded": "point: occluded",
    "swap_lr": "swap left/right of the selected person",
    "verify_person": "verify the selected person (all points)",
    "verify_image": "verify every person on the image",
    "confirm_people": "nobody is missing here (an image is complete once this and its people are verified)",
    "add_person_box": "add a person: drag a box, the model fills it",
    "mark_crowd": "crowd region: drag a box; the unverified people mostly inside are deleted, the box exports as COCO iscrowd",
    "add_template": "add a template skeleton at the cursor",
    "delete_person": "delete the selected person",
    "undo": "undo", "redo": "redo",
    "zoom_in": "zoom in", "zoom_out": "zoom out", "fit": "fit image to window",
    "toggle_angles": "show joint angles on the canvas",
    "prev_frame": "previous video frame", "next_frame": "next video frame",
    "propagate": "propagate the selected person's correction to neighbouring frames",
    "help": "this help", "cancel": "cancel box / deselect",
    "next_conflict": "next image with a CVAT conflict",
    "conflict_keep_local": "CVAT conflict: keep our version of the person",
    "conflict_take_server": "CVAT conflict: take the server's version of the person",
}

MODS = ("ctrl", "shift", "alt")


def parse_combo(combo: str) -> tuple[frozenset, str]:
    """'Ctrl+Shift+Z' -> ({'ctrl', 'shift'}, 'z')."""
    parts = [p.strip().lower() for p in combo.replace(" ", "").split("+") if p.strip()]
    if not parts:
        raise UserError(f"empty shortcut {combo!r}")
    mods = frozenset(p for p in parts[:-1])
    bad = mods - set(MODS)
    if bad:
        raise UserError(f"shortcut {combo!r}: unknown modifier {sorted(bad)[0]!r} (use ctrl, shift, alt)")
    return mods, parts[-1]


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "pose-annotator" / "config.toml"


class Shortcuts:
    """Action <-> key combo table: defaults, then the user config, then project.toml [shortcuts]."""

    def __init__(self, *overrides: dict):
        table = dict(DEFAULT_SHORTCUTS)
        for o in overrides:
            for action, combo in (o or {}).items():
                if action not in DEFAULT_SHORTCUTS:
                    raise UserError(f"[shortcuts] {action}: unknown action (known: {', '.join(DEFAULT_SHORTCUTS)})")
                table[action] = str(combo)
        self.table = table
        self._by_combo: dict[tuple[frozenset, str], str] = {}
        for action, combo in table.items():
            key = parse_combo(combo)
            other = self._by_combo.get(key)
            if other:
                raise UserError(f"[shortcuts] {combo!r} is bound to both {other} and {action}")
            self._by_combo[key] = action

    @classmethod
    def load(cls, settings: dict, user_config: Path | None = None) -> "Shortcuts":
        user = {}
        path = user_config or user_config_path()
        if path.exists():
            try:
                user = tomllib.loads(path.read_text()).get("shortcuts", {})
            except tomllib.TOMLDecodeError as e:
                raise UserError(f"{path}: invalid TOML: {e}") from None
        return cls(user, settings.get("shortcuts", {}))

    def action(self, key: str, mods=()) -> str | None:
        return self._by_combo.get((frozenset(mods), key.lower()))

    def rows(self) -> list[tuple[str, str, str]]:
        """(combo, action, description) for the help overlay."""
        return [(self.table[a], a, SHORTCUT_HELP.get(a, a)) for a in DEFAULT_SHORTCUTS]


# -- view transform -----------------------------------------------------------------------------

@dataclass
class View:
    """image -> canvas (screen px relative to the canvas' top-left): s = i * zoom + offset."""
    zoom: float = 1.0
    ox: float = 0.0
    oy: float = 0.0
    min_zoom: float = 0.02
    max_zoom: float = 40.0

    def to_screen(self, xy) -> np.ndarray:
        return np.asarray(xy, dtype=np.float64) * self.zoom + (self.ox, self.oy)

    def to_image(self, sxy) -> np.ndarray:
        return (np.asarray(sxy, dtype=np.float64) - (self.ox, self.oy)) / self.zoom

    def fit(self, w: float, h: float, cw: float, ch: float, margin: float = 4.0) -> None:
        """Whole image visible and centred in a cw x ch canvas."""
        if w <= 0 or h <= 0 or cw <= 0 or ch <= 0:
            return
        self.zoom = float(np.clip(min((cw - 2 * margin) / w, (ch - 2 * margin) / h), self.min_zoom, self.max_zoom))
        self.ox = (cw - w * self.zoom) / 2
        self.oy = (ch - h * self.zoom) / 2

    def zoom_at(self, factor: float, sx: float, sy: float) -> None:
        """Zoom keeping the image point under the cursor where it is."""
        ix, iy = self.to_image((sx, sy))
        self.zoom = float(np.clip(self.zoom * factor, self.min_zoom, self.max_zoom))
        self.ox = sx - ix * self.zoom
        self.oy = sy - iy * self.zoom

    def pan(self, dx: float, dy: float) -> None:
        self.ox += dx
        self.oy += dy


# -- review queue ------------------------------------------------------------------------------------

class ReviewQueue:
    """The review order, fetched a page at a time (a 100,000-image project opens without reading it all).

    Ranking needs an aggregate over every unverified point, which takes
    hundreds of ms at 100,000 images; with background=True the first page is
    ranked on a thread with its own read connection (SQLite WAL lets it read
    while the app writes), so the window and the last-seen image appear at
    once and the list fills in when ready. The order is a snapshot: editing
    an image does not reshuffle the list under the annotator's feet;
    `refresh()` re-ranks.
    """
    PAGE = 200

    def __init__(self, store, filter: str = "to review", diverse: bool = False, background: bool = False):
        if filter not in FILTERS:
            raise UserError(f"unknown queue filter {filter!r} (one of {', '.join(FILTERS)})")
        self.store = store
        self.filter = filter
        self.diverse = diverse
        self.background = background
        self._thread: threading.Thread | None = None
        self.generation = 0     # bumped whenever `items` is replaced, whoever polled: AppState.idle follows it
        self.refresh()

    def refresh(self) -> None:
        self.items: list[QueueItem] = []
        self.generation += 1
        self.complete = False
        states = FILTERS[self.filter]
        marks = ",".join("?" * len(states))
        self.total = self.store.db.execute(
            f"SELECT count(*) FROM images WHERE review_state IN ({marks}) AND status != 'failed'", states).fetchone()[0]
        if not self.background:
            self._load(self.PAGE)
            return
        self._result: list | BaseException | None = None
        path, states, n, diverse = self.store.path, FILTERS[self.filter], self.PAGE, self.diverse

        def rank():
            from annotator.core.store import Store
            st = None
            try:
                st = Store(path)
                self._result = image_queue(st, states, limit=n, diverse=diverse)
            except BaseException as e:      # handed to the main thread, raised there
                self._result = e
            finally:
                if st is not None:
                    st.close()
        self._thread = threading.Thread(target=rank, name="rank-queue", daemon=True)
        self._thread.start()

    @property
    def ready(self) -> bool:
        return self._thread is None or not self._thread.is_alive()

    def poll(self, wait: bool = False) -> bool:
        """Take the background ranking when it is done; True when the list just changed."""
        if self._thread is None:
            return False
        if wait:
            self._thread.join()
        elif self._thread.is_alive():
            return False
        self._thread = None
        r = self._result
        if isinstance(r, BaseException):
            raise r
        self.items = r
        self.generation += 1
        self.complete = len(r) < self.PAGE
        return True

    def _load(self, n: int) -> None:
        if self.complete:
            return
        got = image_queue(self.store, FILTERS[self.filter], limit=n, diverse=self.diverse)
        self.items = got
        self.generation += 1
        self.complete = len(got) < n

    def ensure(self, index: int) -> None:
        """Make items[index] available if it exists (loads the next page)."""
        self.poll(wait=True)
        while index >= len(self.items) and not self.complete:
            self._load(len(self.items) + self.PAGE)

    def __len__(self) -> int:
        return self.total

    def get(self, index: int) -> QueueItem | None:
        if index < 0:
            return None
        self.ensure(index)
        return self.items[index] if index < len(self.items) else None

    def index_of(self, image_id: int) -> int | None:
        self.poll()
        for i, it in enumerate(self.items):
            if it.image_id == image_id:
                return i
        return None

    def state_of(self, image_ids: list[int]) -> dict[int, str]:
        """Current review state of the listed (visible) rows; the snapshot order stays."""
        if not image_ids:
            return {}
        marks = ",".join("?" * len(image_ids))
        return dict(self.store.db.execute(f"SELECT id, review_state FROM images WHERE id IN ({marks})", image_ids))


# -- image decoding and prefetch ----------------------------------------------------------------------

def to_texture(rgb: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> the flat float32 RGB buffer a Dear PyGui raw texture reads, optionally downscaled.

    Dear PyGui only takes float textures (12 bytes a pixel), and a raw texture is
    uploaded every frame, so the fit-to-window view gets a buffer at display size.
    """
    if scale < 1.0:
        rgb = downscale(rgb, texture_size(rgb.shape[1], rgb.shape[0], scale))
    out = np.empty(rgb.shape[:2] + (3,), np.float32)
    np.multiply(rgb, np.float32(1.0 / 255.0), out=out, casting="unsafe")
    return out.reshape(-1)


def downscale(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Anti-aliased shrink to size=(w, h): Gaussian halvings (pyrDown) while 2x too big, then bilinear.

    cv2's INTER_AREA at a non-integer ratio took 36-55 ms for 1920x1080 -> 812x457
    here; this takes ~4 ms and differs from it by ~1.5/255 on average.
    """
    import cv2
    tw, th = size
    while rgb.shape[1] >= 2 * tw and rgb.shape[0] >= 2 * th:
        rgb = cv2.pyrDown(rgb)
    if (rgb.shape[1], rgb.shape[0]) != (tw, th):
        rgb = cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_LINEAR)
    return rgb


def display_scale(w: float, h: float, cw: float, ch: float, margin: float = 4.0) -> float:
    """Texture pixels per image pixel for the fit-to-window view of a w x h image in a cw x ch canvas (<= 1)."""
    if w <= 0 or h <= 0 or cw <= 2 * margin or ch <= 2 * margin:
        return 1.0
    return float(min(1.0, (cw - 2 * margin) / w, (ch - 2 * margin) / h))


def texture_size(w: int, h: int, scale: float) -> tuple[int, int]:
    """(width, height) of the texture for a w x h image at this scale."""
    if scale >= 1.0:
        return int(w), int(h)
    return max(1, int(round(w * scale))), max(1, int(round(h * scale)))


def texture_level(zoom: float, scale: float) -> str:
    """"display" while one texture pixel covers at least one screen pixel, else "window" (zoomed in past
    it: only the part of the image around the visible region, at up to full resolution).

    The texture is always drawn over the image region it covers, in image
    coordinates, so points and hit-testing never see the texture scale.
    """
    return "display" if scale >= 1.0 or zoom <= scale * (1.0 + 1e-6) else "window"


TEX_GRID = 64        # image px: a zoomed-in texture window's corner snaps to this grid
TEX_MARGIN = 0.25    # of the visible width/height on each side, so small pans re-use the window


def texture_window(view: View, w: int, h: int, cw: float, ch: float) -> tuple[int, int, int, int]:
    """The image region (x0, y0, x1, y1) a zoomed-in canvas uploads: what it shows plus a margin.

    Its size depends only on the zoom and its corner sits on a grid, so panning
    within the margin re-uses the buffer and panning further refills a
    texture of the same size; a whole 1920x1080 (or 4000x3000) photo is no
    longer re-uploaded every frame at full resolution.
    """
    g = TEX_GRID
    sw = min(int(w), g * int(np.ceil((1 + 2 * TEX_MARGIN) * cw / view.zoom / g)))
    sh = min(int(h), g * int(np.ceil((1 + 2 * TEX_MARGIN) * ch / view.zoom / g)))
    cx, cy = view.to_image((cw / 2, ch / 2))
    x0 = int(np.clip(g * round((cx - sw / 2) / g), 0, w - sw))
    y0 = int(np.clip(g * round((cy - sh / 2) / g), 0, h - sh))
    return x0, y0, x0 + sw, y0 + sh


@dataclass
class Decoded:
    image_id: int
    rgb: np.ndarray
    tex: np.ndarray                  # float buffer at `scale` (the display size, or full resolution when 1)
    seconds: float
    scale: float = 1.0
    _window: tuple | None = None     # ((rect, texture size), buffer) of the last zoomed-in window

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the image in original pixels."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])

    def window(self, rect: tuple[int, int, int, int], zoom: float) -> tuple[tuple[int, int], np.ndarray]:
        """((tex w, tex h), buffer) for the image region rect at min(1, zoom) texture px per image px;
        the last one is kept, so frames that pan within it cost nothing."""
        z = min(1.0, float(zoom))
        x0, y0, x1, y1 = rect
        size = texture_size(x1 - x0, y1 - y0, z)
        if self._window is None or self._window[0] != (rect, size):
            crop = self.rgb[y0:y1, x0:x1]
            self._window = ((rect, size), to_texture(downscale(crop, size) if z < 1.0 else crop))
        return size, self._window[1]

    def rescale(self, scale: float) -> None:
        """The canvas changed size: remake the display buffer."""
        if abs(scale - self.scale) > 1e-6:
            self.tex = to_texture(self.rgb, scale)
            self.scale = scale


@dataclass
class _Job:
    image_id: int
    path: Path
    kind: str
    frame_index: int | None


class Prefetcher:
    """A thread that decodes the next K images of the queue (pixels + texture buffer) ahead of time.

    The main thread owns SQLite; it hands the thread resolved file paths.
    Decoding (PIL/OpenCV, numpy) releases the GIL, so the UI stays responsive.
    """

    def __init__(self, capacity: int = 4):
        from annotator.core import media
        self.media = media
        self.capacity = max(1, capacity)
        self.cache: OrderedDict[int, Decoded] = OrderedDict()
        self.errors: dict[int, str] = {}
        self.todo: list[_Job] = []
        self.busy: int | None = None
        self.cv = threading.Condition()
        self.readers: dict[str, object] = {}
        self.stopped = False
        self.canvas = (800.0, 600.0)     # set by AppState: buffers are made at its fit-to-window size
        self.held = False                # True: start no new decode (the window is drawing a new image)
        self.thread = threading.Thread(target=self._run, name="prefetch", daemon=True)
        self.thread.start()

    def decode(self, job: _Job) -> Decoded:
        t0 = time.perf_counter()
        if job.kind == "video":
            rd = self.readers.get(str(job.path))
            if rd is None:
                rd = self.readers[str(job.path)] = self.media.VideoReader(job.path)
            rgb = rd.read(job.frame_index)
        else:
            rgb = self.media.load_image(job.path)
        scale = display_scale(rgb.shape[1], rgb.shape[0], *self.canvas)
        return Decoded(job.image_id, rgb, to_texture(rgb, scale), time.perf_counter() - t0, scale)

    def hold(self, held: bool) -> None:
        """Pause starting new decodes while the new image's frame renders (2 shared cores: they competed)."""
        with self.cv:
            self.held = held
            self.cv.notify_all()

    def want(self, jobs: list[_Job]) -> None:
        """Replace the wish list (nearest first); drop cached images no longer wanted."""
        with self.cv:
            keep = {j.image_id for j in jobs}
            self.todo = [j for j in jobs if j.image_id not in self.cache and j.image_id != self.busy]
            for k in [k for k in self.cache if k not in keep]:
                if len(self.cache) > self.capacity:
                    del self.cache[k]
            self.cv.notify_all()

    def take(self, image_id: int, timeout: float = 5.0) -> Decoded | None:
        """The decoded image if cached or being decoded right now (waits for that one), else None."""
        with self.cv:
            if self.busy == image_id:
                self.cv.wait_for(lambda: self.busy != image_id, timeout)
            d = self.cache.get(image_id)
            if d is not None:
                self.cache.move_to_end(image_id)
            return d

    def _run(self) -> None:
        while True:
            with self.cv:
                self.cv.wait_for(lambda: self.stopped or (self.todo and not self.held))
                if self.stopped:
                    return
                job = self.todo.pop(0)
                self.busy = job.image_id
            try:
                d = self.decode(job)
                err = None
            except UserError as e:
                d, err = None, str(e)
            except Exception as e:   # a decoder bug must not kill the thread; the main thread retries
                d, err = None, f"{job.path}: {e}"
            with self.cv:
                if d is not None:
                    self.cache[job.image_id] = d
                    while len(self.cache) > self.capacity:
                        self.cache.popitem(last=False)
                else:
                    self.errors[job.image_id] = err
                self.busy = None
                self.cv.notify_all()

    def stop(self) -> None:
        with self.cv:
            self.stopped = True
            self.cv.notify_all()
        self.thread.join(timeout=2)
        for r in self.readers.values():
            r.close()


# -- hit testing and dragging -----------------------------------------------------------------------

def hit_point(persons: list[Person], view: View, sx: float, sy: float, radius: float = 10.0,
              prefer: int | None = None) -> tuple[int, int] | None:
    """(person id, point index) of the labelled point nearest the cursor within `radius` screen px
    (for the `prefer` person, the selected one, also its hidden guesses, which the app draws faint).

    Ties (points on top of each other) go to the `prefer` person (the selected one); a labelled
    point wins over a hidden guess at the same distance.
    """
    best, best_d = None, radius
    for p in persons:
        m = p.labelled | (p.hidden_guess if p.id == prefer else False)
        if not m.any():
            continue
        s = view.to_screen(p.xy)
        d = np.hypot(s[:, 0] - sx, s[:, 1] - sy)
        d[~m] = np.inf
        d[p.hidden_guess] += 0.25
        i = int(np.argmin(d))
        di = float(d[i]) - (0.5 if p.id == prefer else 0.0)
        if di <= best_d:
            best, best_d = (p.id, i), di
    return best


def hit_person(persons: list[Person], view: View, sx: float, sy: float) -> int | None:
    """The person whose box (labelled points, 10% pad; its hidden guesses when none is labelled)
    holds the cursor; the smallest box wins."""
    ix, iy = view.to_image((sx, sy))
    best, best_a = None, np.inf
    for p in persons:
        b = p.bbox(pad=0.1) or p.bbox(pad=0.1, guesses=True)    # a template of guesses only
        if b and b[0] <= ix <= b[0] + b[2] and b[1] <= iy <= b[1] + b[3] and b[2] * b[3] < best_a:
            best, best_a = p.id, b[2] * b[3]
    return best


@dataclass
class Drag:
    kind: str                  # "point", "person", "pan", "box"
    start: tuple[float, float]  # screen px
    person_id: int | None = None
    idx: int | None = None
    orig: np.ndarray | None = None
    moved: bool = False
    last: tuple[float, float] = (0.0, 0.0)


DRAG_THRESHOLD = 2.0    # screen px: less is a click (select), not a move


# -- the app state ----------------------------------------------------------------------------------

class AppState:
    """What the app shows and what each input does. One per open project."""

    def __init__(self, project, annotator: str | None = None, prefetch: int | None = None,
                 queue_filter: str = "to review", user_config: Path | None = None, background_queue: bool = True):
        self.project = project
        self.store = project.store
        self.settings = project.settings
        name = annotator or self.settings["project"].get("annotator") or None
        self.session = project.session(name)
        self.session.listeners.append(self._on_commit)
        self.shortcuts = Shortcuts.load(self.settings, user_config)
        g = self.settings.get("gui", {})
        self.point_size = float(g.get("point_size", 5.0))
        self.show_angles = bool(g.get("show_angles", False))
        self.suspect_threshold = float(g.get("suspect_threshold", SUSPECT_THRESHOLD))
        self.colors = {r: tuple(g.get(f"color_{r}", c)) for r, c in sk.REGION_COLORS.items()}
        k = int(prefetch if prefetch is not None else g.get("prefetch", 3))
        self.prefetch_k = k
        self.prefetcher = Prefetcher(k + 2) if k > 0 else None
        self.hold_prefetch_until_drawn = False      # the window sets it and calls drawn() after each frame
        self.queue = ReviewQueue(self.store, queue_filter, background=background_queue)
        self.pos = -1                      # index in the queue (-1: an image not in the queue)
        self._queue_generation = -1        # the queue list idle() last placed `pos` in
        self.view = View()
        self.canvas = (800.0, 600.0)
        self.image_id: int | None = None
        self.row = None
        self.frame: Frame | None = None
        self.decoded: Decoded | None = None
        self.sel_person: int | None = None
        self.sel_point: int | None = None
        self.drag: Drag | None = None
        self.box_mode: str | None = None     # "add" (a person) / "crowd" (a crowd region), while a box is wanted
        self.box: tuple[float, float, float, float] | None = None   # image coords, while drawing
        self.preview: dict[int, np.ndarray] = {}                    # person id -> xy while dragging
        self.dirty: set = set()
        self.status = ""
        self.last_show_seconds = 0.0
        self._estimator = None
        self._suspects: list[tuple[int, int, float]] | None = None
        self._confirm_verify: int | None = None     # person whose suspects the last Enter showed
        self.conflicts = ConflictTracker(project)

    # -- plumbing --------------------------------------------------------------------------------------
    def close(self) -> None:
        if self.prefetcher:
            self.prefetcher.stop()
            self.prefetcher = None

    def mark(self, *what) -> None:
        self.dirty.update(what)

    def take_dirty(self) -> set:
        d, self.dirty = self.dirty, set()
        return d

    def say(self, msg: str) -> None:
        self.status = msg
        self.mark("status")

    def _on_commit(self, images: set[int]) -> None:
        """After any command: reload the touched people from SQLite, so the screen shows what is saved."""
        if self.image_id in images:
            self._reload_people()
        self.mark("queue", "conflicts")

    def _reload_people(self) -> None:
        old = {p.id for p in self.frame.persons} if self.frame else set()
        self.frame = self.store.load_frame(self.image_id)
        self.row = self.store.image(self.image_id)
        new = {p.id for p in self.frame.persons}
        if self.sel_person not in new:
            self.sel_person, self.sel_point = None, None
        self._suspects = None
        self.mark("people" if old != new else "persons", "selection", "table", "crowd")

    def person(self, pid: int | None) -> Person | None:
        if self.frame is None or pid is None:
            return None
        for p in self.frame.persons:
            if p.id == pid:
                return p
        return None

    @property
    def selected(self) -> Person | None:
        return self.person(self.sel_person)

    def display_xy(self, p: Person) -> np.ndarray:
        return self.preview.get(p.id, p.xy)

    # -- images ---------------------------------------------------------------------------------------------
    def _job(self, image_id: int) -> _Job:
        r = self.store.image(image_id)
        return _Job(image_id, self.project.source_path(r), r.kind, r.frame_index)

    def show(self, image_id: int, pos: int | None = None) -> None:
        """Make image_id current: pixels (from the prefetch cache when there), people, view fit."""
        t0 = time.perf_counter()
        d = self.prefetcher.take(image_id) if self.prefetcher else None
        if d is None:
            row = self.store.image(image_id)
            rgb = self.project.load_rgb(row)      # UserError: the GUI shows it and stays on the old image
            scale = display_scale(rgb.shape[1], rgb.shape[0], *self.canvas)
            d = Decoded(image_id, rgb, to_texture(rgb, scale), time.perf_counter() - t0, scale)
        else:
            d.rescale(display_scale(*d.size, *self.canvas))      # prefetched before a window resize
        self.decoded = d
        self.image_id = image_id
        self.frame = self.store.load_frame(image_id)
        self.row = self.store.image(image_id)
        self.pos = self.queue.index_of(image_id) if pos is None else pos
        if self.pos is None:
            self.pos = -1
        self.sel_person = self.frame.persons[0].id if len(self.frame.persons) == 1 else None
        here = {p.id for p in self.frame.persons}
        first = next((c.person_id for c in self.conflicts.on_image(image_id) if c.person_id in here), None)
        if first is not None:
            self.sel_person = first
        self.sel_point = None
        self.preview.clear()
        self.drag = None
        self._suspects = None
        self._confirm_verify = None
        h, w = d.rgb.shape[:2]
        self.view.fit(w, h, *self.canvas)
        self.mark("image", "people", "selection", "table", "queue", "view", "frames", "conflicts")
        if self.prefetcher and self.hold_prefetch_until_drawn:
            self.prefetcher.hold(True)            # released by drawn(), after the window rendered this image
        self._schedule_prefetch()
        self.store.set_kv(self._last_key, image_id)
        self.last_show_seconds = time.perf_counter() - t0
        self.say(f"{self.row.file_name}  ({self.row.review_state.replace('_', ' ')})")

    def _schedule_prefetch(self) -> None:
        if not self.prefetcher:
            return
        jobs = []
        if self.pos >= 0:
            for k in range(1, self.prefetch_k + 1):
                it = self.queue.get(self.pos + k)
                if it is None:
                    break
                jobs.append(self._job(it.image_id))
            prev = self.queue.get(self.pos - 1)
            if prev is not None:
                jobs.append(self._job(prev.image_id))
        nxt = self.neighbour_frame(+1)
        if nxt is not None:
            jobs.insert(0, self._job(nxt))
        self.prefetcher.want(jobs)

    def drawn(self) -> None:
        """The window rendered a frame: the prefetch thread may decode again."""
        if self.prefetcher and self.prefetcher.held:
            self.prefetcher.hold(False)

    def idle(self) -> None:
        """Called every frame: pick up the background queue ranking when it lands (also when another
        call, e.g. show()'s index_of, took it first: the queue's generation says the list changed)."""
        self.queue.poll()
        if self.queue.generation != self._queue_generation:
            self._queue_generation = self.queue.generation
            p = self.queue.index_of(self.image_id) if self.image_id is not None else None
            self.pos = -1 if p is None else p
            self.mark("queue")
            self._schedule_prefetch()

    @property
    def _last_key(self) -> str:
        return f"gui.last_image.{self.session.annotator}"

    def open_first(self) -> bool:
        """Where this annotator left off (shown at once), else the top of the review queue."""
        last = self.store.get_kv(self._last_key)
        if last is not None and self.store.db.execute(
                "SELECT 1 FROM images WHERE id=? AND status != 'failed'", (last,)).fetchone():
            try:
                self.show(int(last))
                return True
            except UserError:
                pass
        it = self.queue.get(0)
        if it is None:
            row = self.store.db.execute("SELECT id FROM images WHERE status != 'failed' ORDER BY id LIMIT 1").fetchone()
            if row is None:
                self.say("the project has no images")
                return False
            self.show(row[0], pos=-1)
            return True
        self.show(it.image_id, pos=0)
        return True

    def go(self, step: int) -> bool:
        """Next/previous image in the review queue."""
        target = max(0, self.pos + step) if self.pos >= 0 else 0
        it = self.queue.get(target)
        if it is None or (it.image_id == self.image_id and target == self.pos):
            self.say("end of the queue" if step > 0 else "start of the queue")
            return False
        self.show(it.image_id, pos=target)
        return True

    def set_filter(self, name: str) -> None:
        self.queue = ReviewQueue(self.store, name, self.queue.diverse, background=self.queue.background)
        self._queue_generation = -1
        self.pos = self.queue.index_of(self.image_id) if self.image_id is not None else -1
        if self.pos is None:
            self.pos = -1
        self.mark("queue")

    # -- video frames -------------------------------------------------------------------------------------
    def video_frames(self) -> list[tuple[int, int]]:
        """(image id, frame index) of the current image's video, in order ([] for photos)."""
        if self.row is None or self.row.kind != "video":
            return []
        return self.store.db.execute(
            "SELECT i.id, i.frame_index FROM images i WHERE i.source_id=(SELECT source_id FROM images WHERE id=?)"
            " ORDER BY i.frame_index", (self.image_id,)).fetchall()

    def neighbour_frame(self, step: int) -> int | None:
        if self.row is None or self.row.kind != "video":
            return None
        op, order = (">", "ASC") if step > 0 else ("<", "DESC")
        r = self.store.db.execute(
            f"SELECT id FROM images WHERE source_id=(SELECT source_id FROM images WHERE id=?) AND frame_index {op} ?"
            f" ORDER BY frame_index {order} LIMIT 1", (self.image_id, self.row.frame_index)).fetchone()
        return r[0] if r else None

    def step_frame(self, step: int) -> bool:
        nxt = self.neighbour_frame(step)
        if nxt is None:
            self.say("not a video frame" if self.row is None or self.row.kind != "video" else "no more frames")
            return False
        sel = self.selected
        self.show(nxt)
        if sel is not None:        # keep following the same person across frames
            from annotator.gui.propagate import match_person
            m = match_person(sel, self.frame.persons)
            if m is not None:
                self.select(m.id)
        return True

    # -- selection ----------------------------------------------------------------------------------------------
    def select(self, pid: int | None, idx: int | None = None) -> None:
        self.sel_person, self.sel_point = pid, idx
        self.mark("selection", "table")

    def next_person(self) -> None:
        ids = [p.id for p in self.frame.persons] if self.frame else []
        if not ids:
            return
        i = ids.index(self.sel_person) + 1 if self.sel_person in ids else 0
        self.select(ids[i % len(ids)])

    def suspects(self) -> list[tuple[int, int, float]]:
        """(person id, idx, score) of unverified points worth a look, most suspicious first."""
        if self._suspects is None:
            persons = self.frame.persons if self.frame else []
            self._suspects = [(persons[k].id, i, s) for k, i, s in suspect_points(persons, self.suspect_threshold)]
        return self._suspects

    def next_suspect(self) -> bool:
        sus = self.suspects()
        if not sus:
            self.say("no suspicious points left here; next image")
            return self.go(+1)
        keys = [(p, i) for p, i, _ in sus]
        cur = (self.sel_person, self.sel_point)
        k = keys.index(cur) + 1 if cur in keys else 0
        pid, idx = keys[k % len(keys)]
        self.select(pid, idx)
        self.say(f"suspect: {sk.NAMES[idx]} (score {sus[k % len(keys)][2]:.2f})")
        return True

    # -- mouse -------------------------------------------------------------------------------------------------------
    def hover_hit(self, sx: float, sy: float):
        return hit_point(self.frame.persons, self.view, sx, sy, self.hit_radius(), self.sel_person) \
            if self.frame else None

    def hit_radius(self) -> float:
        return max(8.0, 2.0 * self.point_size)

    def press(self, sx: float, sy: float, button: str = "left", shift: bool = False) -> None:
        """Mouse down on the canvas (screen px relative to the canvas)."""
        if self.frame is None:
            return
        if button != "left":
            self.drag = Drag("pan", (sx, sy), last=(sx, sy))
            return
        if self.box_mode:
            self.drag = Drag("box", (sx, sy), last=(sx, sy))
            return
        hit = self.hover_hit(sx, sy)
        if hit is not None:
            pid, idx = hit
            p = self.person(pid)
            if shift:
                self.drag = Drag("person", (sx, sy), pid, None, p.xy.copy(), last=(sx, sy))
                self.select(pid, self.sel_point if pid == self.sel_person else None)
            else:
                self.drag = Drag("point", (sx, sy), pid, idx, p.xy[idx].copy(), last=(sx, sy))
                self.select(pid, idx)
            return
        sel = self.selected
        if sel is not None and self.sel_point is not None and sel.vis[self.sel_point] == NOT_LABELLED:
            # a point that was not labelled is placed where the annotator clicks
            x, y = self.view.to_image((sx, sy))
            self.session.move_point(sel.id, self.sel_point, float(x), float(y))
            self.say(f"placed {sk.NAMES[self.sel_point]}")
            return
        pid = hit_person(self.frame.persons, self.view, sx, sy)
        if shift and pid is not None:
            p = self.person(pid)
            self.drag = Drag("person", (sx, sy), pid, None, p.xy.copy(), last=(sx, sy))
            self.select(pid)
            return
        self.select(pid)
        self.drag = Drag("pan", (sx, sy), last=(sx, sy))

    def motion(self, sx: float, sy: float) -> None:
        d = self.drag
        if d is None:
            return
        if not d.moved and np.hypot(sx - d.start[0], sy - d.start[1]) < DRAG_THRESHOLD:
            return
        d.moved = True
        if d.kind == "pan":
            self.view.pan(sx - d.last[0], sy - d.last[1])
            self.mark("view")
        elif d.kind == "point":
            p = self.person(d.person_id)
            xy = self.preview.get(p.id)
            if xy is None:
                xy = self.preview[p.id] = p.xy.copy()
            xy[d.idx] = d.orig + (np.array([sx, sy]) - d.start) / self.view.zoom
            self.mark(("point", p.id, d.idx))
        elif d.kind == "person":
            p = self.person(d.person_id)
            delta = (np.array([sx, sy]) - d.start) / self.view.zoom
            xy = d.orig.copy()
            xy[p.labelled] += delta
            self.preview[p.id] = xy
            self.mark(("person", p.id))
        elif d.kind == "box":
            a = self.view.to_image(d.start)
            b = self.view.to_image((sx, sy))
            self.box = (float(min(a[0], b[0])), float(min(a[1], b[1])), float(abs(b[0] - a[0])), float(abs(b[1] - a[1])))
            self.mark("box")
        d.last = (sx, sy)

    def release(self, sx: float, sy: float) -> int | None:
        """Mouse up: a moved point/person is committed (one command, saved before the next frame)."""
        self.motion(sx, sy)             # the release point counts (a box ends where the button comes up)
        d, self.drag = self.drag, None
        if d is None:
            return None
        self.preview.pop(d.person_id, None)
        if not d.moved:
            if d.kind in ("point", "person"):
                self.mark(("person", d.person_id))
            if d.kind == "box":
                self.box = None
                self.mark("box")
                if self.box_mode == "crowd":
                    return self._click_crowd_region(*self.view.to_image(d.start))
            return None
        delta = (np.array([sx, sy]) - d.start) / self.view.zoom
        if d.kind == "point":
            x, y = d.orig + delta
            aid = self.session.move_point(d.person_id, d.idx, float(x), float(y))
            self.say(f"saved: moved {sk.NAMES[d.idx]} to ({x:.1f}, {y:.1f})")
            return aid
        if d.kind == "person":
            aid = self.session.move_person(d.person_id, float(delta[0]), float(delta[1]))
            self.say(f"saved: moved person {d.person_id} by ({delta[0]:.1f}, {delta[1]:.1f})")
            return aid
        if d.kind == "box":
            box, self.box = self.box, None
            mode, self.box_mode = self.box_mode, None
            self.mark("box")
            if box and box[2] > 4 and box[3] > 4:
                return self.mark_crowd(box) if mode == "crowd" else self.add_person_in_box(box)
        return None

    def wheel(self, sx: float, sy: float, steps: float) -> None:
        self.view.zoom_at(1.2 ** steps, sx, sy)
        self.mark("view", "status")        # the status bar shows the zoom

    def set_canvas(self, w: float, h: float) -> None:
        if (w, h) != self.canvas:
            self.canvas = (float(w), float(h))
            if self.prefetcher:
                self.prefetcher.canvas = self.canvas
            if self.decoded is not None:
                self.decoded.rescale(display_scale(*self.decoded.size, *self.canvas))
                self.mark("image")

    def texture(self) -> tuple[tuple, np.ndarray] | None:
        """What the canvas should upload now: (key, flat float RGB buffer);
        key = (image id, level, tex w, tex h, (x0, y0, x1, y1) the image region it covers).

        The display-size buffer of the whole image while the view is at or below
        its scale (fit to window and zoomed out); zoomed in past it, a window
        around the visible region (texture_window) at up to full resolution.
        """
        d = self.decoded
        if d is None:
            return None
        w, h = d.size
        if texture_level(self.view.zoom, d.scale) == "display":
            return (d.image_id, "display", *texture_size(w, h, d.scale), (0, 0, w, h)), d.tex
        rect = texture_window(self.view, w, h, *self.canvas)
        size, buf = d.window(rect, self.view.zoom)
        return (d.image_id, "window", *size, rect), buf

    def fit(self) -> None:
        if self.decoded is not None:
            h, w = self.decoded.rgb.shape[:2]
            self.view.fit(w, h, *self.canvas)
            self.mark("view", "status")

    # -- edits (each is one command, saved at once) ------------------------------------------------
    def _need_person(self) -> Person | None:
        p = self.selected
        if p is None:
            self.say("select a person first (click it, or press " + self.shortcuts.table["next_person"] + ")")
        return p

    def _need_point(self) -> tuple[Person, int] | None:
        p = self._need_person()
        if p is None:
            return None
        if self.sel_point is None:
            self.say("select a point first (click it, or press " + self.shortcuts.table["next_suspect"] + ")")
            return None
        return p, self.sel_point

    def cycle_visibility(self):
        t = self._need_point()
        if t:
            self.session.cycle_visibility(t[0].id, t[1])
            self.say(f"saved: {sk.NAMES[t[1]]} is {VIS_NAMES[int(self.person(t[0].id).vis[t[1]])]}")

    def set_visibility(self, vis: int):
        t = self._need_point()
        if t:
            self.session.set_visibility(t[0].id, t[1], vis)
            self.say(f"saved: {sk.NAMES[t[1]]} is {VIS_NAMES[int(vis)]}")

    def swap_lr(self):
        p = self._need_person()
        if p:
            self.session.swap_left_right(p.id)
            if self.sel_point is not None:
                self.sel_point = sk.FLIP[self.sel_point]
            self.say(f"saved: swapped left/right of person {p.id}")

    def verify_person(self):
        """Enter: verify the selected person; when some of its points are suspect, the first Enter
        shows them (selects the worst, names them all) and only a second Enter verifies."""
        p = self._need_person()
        if not p:
            return
        sus = [(i, s) for pid, i, s in self.suspects() if pid == p.id]
        if sus and self._confirm_verify != p.id:
            self._confirm_verify = p.id
            self.select(p.id, sus[0][0])
            names = ", ".join(sk.NAMES[i] for i, _ in sus[:6]) + (f" and {len(sus) - 6} more" if len(sus) > 6 else "")
            key = self.shortcuts.table["verify_person"]
            self.say(f"{len(sus)} suspect point(s) on person {p.id}: {names}. Check them; {key} again verifies all")
            return
        self._confirm_verify = None
        self.session.verify_person(p.id)
        self.say(f"saved: person {p.id} verified by {self.session.annotator}")

    def verify_image(self):
        if self.image_id is not None:
            self.session.verify_image(self.image_id)
            self.row = self.store.image(self.image_id)
            self.mark("queue")
            key = self.shortcuts.table["confirm_people"]
            self.say(f"saved: image verified by {self.session.annotator}"
                     + ("" if self.complete else f"; {key} confirms that nobody is missing"))

    @property
    def complete(self) -> bool:
        """The current image is complete: its people verified and nobody missing (commands.is_complete)."""
        return self.image_id is not None and is_complete(self.store, self.image_id)

    def confirm_people(self):
        """C: the annotator looked for unlabelled people and there are none (a logged command)."""
        if self.image_id is None:
            return None
        aid = self.session.confirm_people(self.image_id)
        self.mark("queue", "status")
        left = sum(not p.fully_verified for p in self.frame.persons)
        self.say(f"saved: nobody is missing here ({self.session.annotator})"
                 + (" - the image is complete" if self.complete else
                    f"; {left} person(s) still to verify before the image is complete"))
        return aid

    def delete_person(self):
        p = self._need_person()
        if p:
            self.session.delete_person(p.id)
            self.say(f"saved: deleted person {p.id}")

    def mark_crowd(self, box) -> int:
        """An image-coords box becomes a crowd region, its unverified people deleted (Session.mark_crowd)."""
        aid, gone, kept = self.session.mark_crowd(self.image_id, box)
        kept_msg = f"; kept {len(kept)} verified (Delete removes one)" if kept else ""
        who = f"deleted {len(gone)} people ({', '.join(map(str, gone))})" if gone else "nobody unverified inside"
        self.say(f"saved: crowd region marked (COCO iscrowd on export), {who}{kept_msg}; undo takes it back")
        return aid

    def _click_crowd_region(self, x: float, y: float) -> int | None:
        """A click (no drag) in crowd-box mode on a region's frame removes that region, the newest
        first where they overlap; elsewhere the mode waits for a drag."""
        regions = self.frame.crowd_regions if self.frame else []
        hit = [i for i, (rx, ry, rw, rh) in enumerate(regions) if rx <= x <= rx + rw and ry <= y <= ry + rh]
        if not hit:
            return None
        self.box_mode = None
        aid = self.session.remove_crowd_region(self.image_id, hit[-1])
        self.say("saved: crowd region removed (its people stay deleted; undo brings the region back)")
        return aid

    def add_template(self, sx: float | None = None, sy: float | None = None) -> int | None:
        if self.decoded is None:
            return None
        h, w = self.decoded.rgb.shape[:2]
        bh = h * 0.6
        bw = bh * 0.45
        if sx is None:
            cx, cy = w / 2, h / 2
        else:
            cx, cy = self.view.to_image((sx, sy))
        pid = self.session.add_person(self.image_id, template_person((cx - bw / 2, cy - bh / 2, bw, bh)),
                                      source=self.session.actor)
        self._score(pid)
        self.select(pid)
        self.say(f"saved: template person {pid} added; drag its points into place")
        return pid

    def estimator(self):
        if self._estimator is None:
            from annotator.prefill.run import default_model_name, estimator_settings, make_estimator
            from annotator.distill.registry import project_model
            spec, prov, _ = project_model(self.project)     # the latest accepted round, if any
            self._estimator = make_estimator(estimator_settings(self.settings), spec)
            self._estimator_name = prov or default_model_name(estimator_settings(self.settings))
        return self._estimator

    def add_person_in_box(self, box) -> int | None:
        """Pre-fill inside a user-drawn box (prefill.estimator.person_in_user_box); when the model sees
        nobody, a template whose points are hidden guesses, dragged into place one by one."""
        from annotator.prefill.estimator import person_in_user_box
        rgb = self.decoded.rgb
        person, pose = person_in_user_box(self.estimator(), rgb, box)
        if pose is None:
            pid = self.session.add_person(self.image_id, person, source=self.session.actor)
            self._score(pid)
            self.say(f"saved: the model found nobody in the box; template person {pid} added as guesses: "
                     "drag each point the person has into place")
        else:
            model = self._estimator_name
            pid = self.session.add_person(self.image_id, person, source=model)
            self._score(pid, pose, person)
            self.say(f"saved: person {pid} added by {model}")
        self.select(pid)
        return pid

    def _score(self, pid: int, pose=None, person: Person | None = None) -> None:
        """Score a person just added, as pre-fill scores its people (the engine's signals for a
        model's person, the re-runs too with prefill.tta, then the project's suspicion model):
        without it its points have no suspicion and a confident leg on the wrong object would
        never show up as suspect."""
        from annotator.review import suspicion
        if pose is not None and self.decoded is not None:
            from annotator.prefill.rerun import tta_for_poses
            try:
                feats = tta_for_poses(self.estimator(), self.decoded.rgb, [pose],
                                      views=bool(self.settings["prefill"]["tta"]))
                suspicion.store_prefill_tta(self.store, [pid], [person], feats)
            except Exception as e:         # the re-runs are an extra signal: score without them
                self.say(f"re-run signals failed ({e}); scored without them")
        suspicion.update_suspicion(self.project, [self.image_id])
        self._reload_people()

    def set_point(self, idx: int, x=None, y=None, vis=None):
        """Points-table edit."""
        p = self._need_person()
        if p:
            self.session.set_point(p.id, idx, x, y, vis)
            self.say(f"saved: {sk.NAMES[idx]} edited")

    def propagate(self, span: int = 10):
        p = self._need_person()
        if p is None:
            return None
        from annotator.gui.propagate import propagate
        aid, n = propagate(self.session, p.id, span=span)
        self.say(f"saved: correction propagated to {n} frames" if aid else "nothing to propagate (not a video frame"
                 " or no matching person in the neighbouring frames)")
        return aid

    def undo(self):
        return self._undo_redo(self.session.undo, "undid")

    def redo(self):
        return self._undo_redo(self.session.redo, "redid")

    def _undo_redo(self, fn, verb):
        aid = fn()
        if aid is None:
            self.say(f"nothing to {verb[:-1] if verb.endswith('d') else verb}")
            return None
        if aid in self.conflicts.actions:          # its sync rows came back with it (Session.attach)
            self.mark("queue", "conflicts", "selection")
        a = self.store.action(aid)
        images = {self.store.person_image(pid) for pid, _, _ in a["changes"]}
        if self.image_id not in images and images:
            self.show(min(images))        # show where the undone edit happened
        self.say(f"saved: {verb} {a['command']}")
        return aid

    # -- settings -------------------------------------------------------------------------------------------------
    def set_annotator(self, name: str) -> None:
        name = name.strip()
        if not name:
            raise UserError("annotator name must not be empty")
        self.session.annotator = name
        self.settings["project"]["annotator"] = name
        self.project.save_settings()
        self.say(f"annotator: {name}")

    def set_gui_setting(self, key: str, value) -> None:
        self.settings.setdefault("gui", {})[key] = value
        if key == "point_size":
            self.point_size = float(value)
        elif key == "show_angles":
            self.show_angles = bool(value)
        elif key == "suspect_threshold":
            self.suspect_threshold = float(value)
            self._suspects = None
        elif key.startswith("color_"):
            self.colors[key[6:]] = tuple(int(c) for c in value)[:3]
        self.project.save_settings()
        self.mark("people")

    def set_prefill_setting(self, key: str, value: float) -> None:
        if not 0.0 <= float(value) <= 1.0:
            raise UserError(f"{key} must be between 0 and 1, not {value}")
        self.settings["prefill"][key] = float(value)
        self._estimator = None
        self.project.save_settings()

    # -- keyboard ------------------------------------------------------------------------------------------------------
    def on_key(self, key: str, mods=(), cursor: tuple[float, float] | None = None) -> str | None:
        """Run the action bound to a key; returns its name (None when the key is unbound)."""
        action = self.shortcuts.action(key, mods)
        if action is None:
            return None
        self.run(action, cursor)
        return action

    def run(self, action: str, cursor: tuple[float, float] | None = None):
        try:
            return self._run(action, cursor)
        except UserError as e:
            self.say(f"error: {e}")
            return None

    def _run(self, action: str, cursor):
        if action == "help":
            self.mark("help")
            return None
        if action == "cancel":
            self.box_mode, self.box = None, None
            self.select(self.sel_person, None)
            self.mark("box")
            return None
        if self.frame is None:
            return None
        cx, cy = cursor if cursor else (self.canvas[0] / 2, self.canvas[1] / 2)
        table = {
            "next_image": lambda: self.go(+1),
            "prev_image": lambda: self.go(-1),
            "next_suspect": self.next_suspect,
            "next_person": self.next_person,
            "cycle_visibility": self.cycle_visibility,
            "set_occluded": lambda: self.set_visibility(OCCLUDED),
            "swap_lr": self.swap_lr,
            "verify_person": self.verify_person,
            "verify_image": self.verify_image,
            "confirm_people": self.confirm_people,
            "add_person_box": lambda: self._start_box("add"),
            "mark_crowd": lambda: self._start_box("crowd"),
            "add_template": lambda: self.add_template(*cursor) if cursor else self.add_template(),
            "delete_person": self.delete_person,
            "undo": self.undo,
            "redo": self.redo,
            "zoom_in": lambda: self.wheel(cx, cy, 1),
            "zoom_out": lambda: self.wheel(cx, cy, -1),
            "fit": self.fit,
            "toggle_angles": lambda: self.set_gui_setting("show_angles", not self.show_angles),
            "prev_frame": lambda: self.step_frame(-1),
            "next_frame": lambda: self.step_frame(+1),
            "propagate": self.propagate,
            "next_conflict": self.next_conflict,
            "conflict_keep_local": lambda: self.resolve_conflict("local"),
            "conflict_take_server": lambda: self.resolve_conflict("server"),
        }
        return table[action]()

    # -- CVAT conflicts (annotator/gui_conflicts.py) -------------------------------------------------------------
    def conflicts_here(self) -> list[Conflict]:
        return self.conflicts.on_image(self.image_id)

    def conflict_target(self, person_id: int | None = None) -> Conflict:
        """The conflict to settle: the given person, else the selected one, else the only one on the image."""
        here = self.conflicts_here()
        if not here:
            raise UserError("no CVAT conflict on this image")
        for want in (person_id, self.sel_person):
            c = next((c for c in here if c.person_id == want), None)
            if c is not None:
                return c
        if person_id is None and len(here) == 1:
            return here[0]
        raise UserError(f"{len(here)} people in CVAT conflict here: select one (W cycles)")

    def resolve_conflict(self, prefer: str, person_id: int | None = None) -> int | None:
        """Keep local / take server for one person, as an undoable command (CvatSync.resolve)."""
        c = self.conflict_target(person_id)
        aid = self.conflicts.resolve(self.session, c.person_id, prefer)
        if self.image_id is not None:
            self._reload_people()
        self.mark("queue", "conflicts", "selection")
        self.say(f"saved: CVAT conflict of person {c.person_id} settled: "
                 + ("kept ours (the next push sends it)" if prefer == "local" else "took the server's version"))
        return aid

    def next_conflict(self) -> bool:
        """Show the next image (by id, wrapping) that has an open CVAT conflict."""
        ids = self.conflicts.images()
        if not ids:
            self.say("no CVAT conflicts")
            return False
        cur = self.image_id if self.image_id is not None else -1
        nxt = next((i for i in ids if i > cur), ids[0])
        if nxt == self.image_id:
            self.say("this is the only image with a CVAT conflict")
            return False
        self.show(nxt)
        return True

    def _start_box(self, mode: str):
        self.box_mode = mode
        self.say("drag a box around the person to add (Esc cancels)" if mode == "add" else
                 "drag a box round the crowd: every unverified person mostly inside it is deleted; a click in a "
                 "red crowd frame removes that region (Esc cancels)")

    # -- derived display data -------------------------------------------------------------------------------------
    def angles(self) -> tuple[dict[str, float | None], list[str]]:
        p = self.selected
        if p is None:
            return {}, []
        a = sk.joint_angles(self.display_xy(p), p.vis)
        return a, sk.implausible_angles(a)


def point_style(conf: float, point_size: float) -> tuple[float, int]:
    """Radius and alpha by confidence: unsure points are smaller and fainter (NaN = a human's point)."""
    c = 1.0 if conf is None or np.isnan(conf) else float(np.clip(conf, 0.0, 1.0))
    return point_size * (0.6 + 0.4 * c), int(round(255 * (0.45 + 0.55 * c)))


def short_source(source: str) -> str:
    """A point's provenance as the points table shows it: the name, not the version
    ("annotator:alice" -> "alice", "blazepose-heavy/mediapipe-0.10.21" -> "blazepose-heavy")."""
    return (source or "").removeprefix("annotator:").split("/", 1)[0][:16]


def panel_widths(viewport_w: float) -> tuple[int, int]:
    """(left, right) panel widths for a viewport width: they grow with the window, within what their
    content needs (the queue's labels, the points table's six columns), so the canvas gets the rest."""
    left = int(np.clip(0.17 * viewport_w, 240, 330))
    right = int(np.clip(0.30 * viewport_w, 512, 580))
    return left, right


def view_rect(view: View, w: float, h: float, cw: float, ch: float) -> tuple[float, float, float, float]:
    """Screen rectangle (x0, y0, x1, y1) where the photo is visible: the photo's on-screen extent
    inside the canvas. Skeleton parts outside it are clipped to it."""
    a = view.to_screen((0.0, 0.0))
    b = view.to_screen((float(w), float(h)))
    return max(0.0, float(a[0])), max(0.0, float(a[1])), min(float(cw), float(b[0])), min(float(ch), float(b[1]))


def inside(p, rect) -> bool:
    return rect[0] <= p[0] <= rect[2] and rect[1] <= p[1] <= rect[3]


def clamp_to(p, rect) -> tuple[float, float]:
    """The point on the rectangle's edge where a marker stands for a point outside it."""
    return float(np.clip(p[0], rect[0], rect[2])), float(np.clip(p[1], rect[1], rect[3]))


def clip_segment(p1, p2, rect) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The part of segment p1-p2 inside rect (Liang-Barsky), None when none of it is."""
    x0, y0 = float(p1[0]), float(p1[1])
    dx, dy = float(p2[0]) - x0, float(p2[1]) - y0
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, x0 - rect[0]), (dx, rect[2] - x0), (-dy, y0 - rect[1]), (dy, rect[3] - y0)):
        if p == 0:
            if q < 0:
                return None
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    return (x0 + t0 * dx, y0 + t0 * dy), (x0 + t1 * dx, y0 + t1 * dy)
