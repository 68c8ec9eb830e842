"""Desktop app speed, measured in the real window (Dear PyGui on X; starts its own Xvfb when there is no DISPLAY).

1. next image: from the "next" key to the frame drawn (decoded, texture
   uploaded, points drawn), median and p95, with and without the prefetch
   thread, on real photos and on 1920x1080 JPEGs; between two images the
   annotator "works" for --dwell seconds (frames keep rendering).
2. dragging: frame time while a point is dragged on a 1920x1080 image with
   5 people (only the moved point and its edges are redrawn), against
   redrawing every person each frame.
3. opening a 100,000-image project: synthetic image rows (10% with a
   predicted person) pointing at real files; time to the first image shown.
4. zoomed in on 1920x1080 and 4000x3000 photos: frame time while panning,
   the texture window around the view against the whole photo uploaded.

    python bench/gui.py [--dwell 0.3] [--open-images 100000]
    python bench/gui.py --screenshot docs/screenshot.png     # the README picture
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO / ".." / "shared" / "data"
DEMO = REPO / "projects" / "demo" / "images"


def ensure_display() -> subprocess.Popen | None:
    if os.environ.get("DISPLAY"):
        return None
    from tests.gui_project import start_xvfb
    got = start_xvfb(1920, 1080)
    if got is None:
        raise SystemExit("no DISPLAY and Xvfb could not be started")
    os.environ["DISPLAY"] = got[1]
    return got[0]


def pct(v, q):
    return float(np.percentile(np.asarray(v), q))


class Window:
    """One Dear PyGui window for the whole run (one context per process)."""

    def __init__(self, state):
        import dearpygui.dearpygui as dpg
        from annotator.gui.app import App
        self.app = App(state, width=1600, height=1000)
        self.app.build()
        dpg.set_viewport_vsync(False)      # measure our work, not the monitor's refresh
        for _ in range(3):
            self.app.frame()

    def attach(self, state):
        self.app.attach(state)
        for _ in range(2):
            self.app.frame()


def make_photo_project(root: Path, files: list[Path]):
    from annotator.prefill.run import prefill
    from annotator.core.project import Project
    proj, _ = Project.create(root, files)
    prefill(proj, workers=1, progress=False)
    return proj


def next_image_times(win, proj, prefetch: int, dwell: float, n: int) -> dict[str, list[float]]:
    """Per "next": total (key -> frame drawn), ours (queue step, pixels from cache or decode, draw items)
    and render (Dear PyGui frame incl. the texture upload)."""
    from annotator.gui.state import AppState
    proj.store.db.execute("DELETE FROM kv WHERE key LIKE 'gui.last_image.%'")     # start at the queue's top
    st = AppState(proj, annotator="bench", prefetch=prefetch, queue_filter="all")
    win.attach(st)
    st.open_first()
    win.app.frame()
    out = {"total": [], "ours": [], "render": [], "step": [], "tick": [], "steady": []}
    for _ in range(n):
        t_end = time.perf_counter() + dwell          # the annotator looks at the image
        while time.perf_counter() < t_end:
            win.app.frame()
            out["steady"].append(win.app.last_split[1])   # a frame on this image (raw texture re-uploaded)
        t0 = time.perf_counter()
        if not st.go(+1):
            break
        t1 = time.perf_counter()
        win.app.frame()                              # texture upload + people drawn + rendered
        t2 = time.perf_counter()
        out["total"].append(t2 - t0)
        out["ours"].append(t1 - t0 + win.app.last_split[0])
        out["render"].append(win.app.last_split[1])
        out["step"].append(t1 - t0)
        out["tick"].append(win.app.last_split[0])
        out["tex"] = out.get("tex", set()) | {tuple(win.app.tex_size or ())}
    return out


def idle_frame(win, n: int = 30) -> list[float]:
    ts = []
    for _ in range(n):
        win.app.frame()
        ts.append(win.app.last_split[1])
    return ts


def ms(v) -> str:
    return f"median {1000 * pct(v, 50):6.1f}  p95 {1000 * pct(v, 95):6.1f}"


def bench_next(win, tmp: Path, dwell: float) -> None:
    from PIL import Image
    real = sorted(p for p in (DATA / "media" / "images").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) \
        if (DATA / "media" / "images").exists() else sorted(DEMO.iterdir())
    big = tmp / "big"
    big.mkdir()
    for k, f in enumerate(sorted(DEMO.iterdir()) * 4):
        Image.open(f).convert("RGB").resize((1920, 1080)).save(big / f"{k:02d}_{f.stem}.jpg", quality=92)
    sets = [("real photos (%d, up to %s)" % (len(real), "x".join(map(str, max(Image.open(f).size for f in real)))),
             real), ("1920x1080 JPEGs (%d)" % len(list(big.iterdir())), sorted(big.iterdir()))]
    print(f"   idle frame (render only, nothing changes): {ms(idle_frame(win))} ms  <- the renderer's floor here")
    print("1. next image ready, ms: total = key -> frame drawn; ours = queue step + pixels (cache or decode)"
          " + draw items; render = Dear PyGui frame incl. texture upload")
    for k, (label, files) in enumerate(sets):
        proj = make_photo_project(tmp / f"next{k}", files)
        for prefetch in (0, 3):
            t = next_image_times(win, proj, prefetch, dwell, len(files) - 1)
            print(f"   {label:<30} prefetch {'on' if prefetch else 'off'}:  total {ms(t['total'])} | ours"
                  f" {ms(t['ours'])} | render {ms(t['render'])}  (n={len(t['total'])})")
            tex = sorted(t["tex"], key=lambda s: -s[0] * s[1] if s else 0)
            print(f"      breakdown: queue step + pixels {ms(t['step'])} | draw items + texture set_value"
                  f" {ms(t['tick'])} | steady frame on the image (render + per-frame raw upload)"
                  f" {ms(t['steady'])}; largest textures {tex[:2]}")
        proj.close()


def bench_drag(win, tmp: Path) -> None:
    from PIL import Image
    from annotator.gui.state import AppState, template_person
    from annotator.core.project import Project
    rng = np.random.default_rng(0)
    img = (rng.random((1080, 1920, 3)) * 60 + np.linspace(40, 200, 1920)[None, :, None]).astype(np.uint8)
    f = tmp / "drag" / "crowd.jpg"
    f.parent.mkdir()
    Image.fromarray(img).save(f, quality=90)
    proj, _ = Project.create(tmp / "dragproj", [f])
    s = proj.session("bench")
    iid = proj.store.images()[0].id
    for k in range(5):
        p = template_person((150 + k * 350, 150 + 40 * k, 300, 800))
        p.xy += rng.normal(0, 4, p.xy.shape)
        p.conf[:] = rng.uniform(0.3, 1.0, 33)
        s.add_person(iid, p, source="bench")
    st = AppState(proj, annotator="bench", prefetch=0)
    win.attach(st)
    st.show(iid)
    for _ in range(3):
        win.app.frame()
    p = st.frame.persons[2]
    i = 25
    win.app.poll_mouse = False
    print("2. dragging one point, 1920x1080 image, 5 people (165 points, 175 edges), frame time ms")
    for label, full in (("redraw what changed (the app)", False), ("redraw all people every frame", True)):
        sx, sy = st.view.to_screen(p.xy[i])
        st.press(sx, sy)
        total, ours = [], []
        for k in range(120):
            st.motion(sx + 40 * np.sin(k / 10), sy + 40 * np.cos(k / 10))
            if full:
                st.mark("persons")
            t0 = time.perf_counter()
            win.app.frame()
            total.append(time.perf_counter() - t0)
            ours.append(win.app.last_split[0])
        st.drag = None
        st.preview.clear()
        print(f"   {label:<30} frame {ms(total)} | ours (state + draw-item updates) {ms(ours)}")
    win.app.poll_mouse = True
    proj.close()


def bench_zoom(win, tmp: Path) -> None:
    """Zoomed in on a big photo: the frame time while panning, with the texture window around the view
    (the app) against uploading the whole photo at full resolution every frame (what it did before)."""
    from PIL import Image
    import annotator.gui.state as gs
    from annotator.gui.state import AppState
    from annotator.core.project import Project
    print("4. zoomed in, panning 4 screen px a frame, frame time ms (render incl. the raw texture upload)")
    rng = np.random.default_rng(1)
    real = Image.open(sorted(DEMO.iterdir())[0]).convert("RGB")
    for w, h in ((1920, 1080), (4000, 3000)):
        f = tmp / "zoom" / f"{w}x{h}.jpg"
        f.parent.mkdir(exist_ok=True)
        Image.fromarray((np.asarray(real.resize((w, h))) * 0.9 + rng.random((h, w, 3)) * 25).astype(np.uint8)).save(f)
        proj, _ = Project.create(tmp / f"zoom{w}", [f])
        st = AppState(proj, annotator="bench", prefetch=0)
        win.attach(st)
        st.show(proj.store.images()[0].id)
        for _ in range(3):
            win.app.frame()
        for zoom in (1.0, 3.0):
            for label, whole in (("window around the view (the app)", False), ("whole photo, full resolution", True)):
                orig = gs.texture_window
                if whole:
                    gs.texture_window = lambda view, w, h, cw, ch: (0, 0, w, h)
                try:
                    st.fit()
                    st.view.zoom_at(zoom / st.view.zoom, st.canvas[0] / 2, st.canvas[1] / 2)
                    st.mark("view")
                    win.app.frame()
                    ts = []
                    for k in range(60):
                        st.view.pan(4 * (1 if (k // 30) % 2 == 0 else -1), 2)
                        st.mark("view")
                        t0 = time.perf_counter()
                        win.app.frame()
                        ts.append(time.perf_counter() - t0)
                    print(f"   {w}x{h} at {zoom:.0f} screen px per image px, {label:<34} frame {ms(ts)}"
                          f"  texture {win.app.tex_size}")
                finally:
                    gs.texture_window = orig
        st.close()
        proj.close()


def make_big_project(root: Path, n: int, with_people: float = 0.1) -> Path:
    """n image rows (real files: the demo photos, cycled), a tenth with one predicted person."""
    from annotator.core.project import Project
    media = root / "media"
    media.mkdir(parents=True)
    files = []
    for f in sorted(DEMO.iterdir()):
        shutil.copy(f, media / f.name)
        files.append(media / f.name)
    proj, _ = Project.create(root / "big", files)
    st = proj.store
    rows = st.images()
    rng = np.random.default_rng(0)
    now = time.time()
    with st.tx():
        srcs = [(r.id, r.file_name) for r in rows]
        sid = {r.id: st.db.execute("SELECT source_id FROM images WHERE id=?", (r.id,)).fetchone()[0] for r in rows}
        st.db.executemany(
            "INSERT INTO images(source_id, file_name, width, height, status) VALUES(?,?,?,?, 'done')",
            ((sid[srcs[k % len(srcs)][0]], f"synthetic/{k:07d}.jpg", 640, 480) for k in range(n - len(rows))))
        ids = [r[0] for r in st.db.execute("SELECT id FROM images ORDER BY id")]
        chosen = rng.choice(ids, int(len(ids) * with_people), replace=False)
        for iid in chosen:
            pid = st.db.execute("INSERT INTO persons(image_id, created_at) VALUES(?,?)", (int(iid), now)).lastrowid
            xy = rng.uniform(50, 400, (33, 2))
            conf = rng.uniform(0.2, 1.0, 33)
            st.db.executemany(
                "INSERT INTO points(person_id, idx, x, y, vis, conf, verified, source, updated_at) VALUES(?,?,?,?,?,?,0,'bench',?)",
                [(pid, i, float(xy[i, 0]), float(xy[i, 1]), 2, float(conf[i]), now) for i in range(33)])
    proj.close()
    return root / "big"


def bench_open(win, tmp: Path, n: int) -> None:
    from annotator.gui.state import AppState
    from annotator.core.project import Project
    from annotator.review.queue import image_queue
    t0 = time.perf_counter()
    path = make_big_project(tmp / "open", n)
    build = time.perf_counter() - t0
    size = (path / "project.db").stat().st_size / 1e6
    print(f"3. opening a {n:,}-image project ({n // 10:,} people, {size:.0f} MB database; built in {build:.0f} s)")
    for label, resume in (("first open (waits for the ranked queue)", False),
                          ("reopen (resumes at the last image, ranks in the background)", True)):
        if not resume:
            with Project.open(path) as proj:
                proj.store.db.execute("DELETE FROM kv WHERE key LIKE 'gui.last_image.%'")
        t0 = time.perf_counter()
        proj = Project.open(path)
        st = AppState(proj, annotator="bench")
        t1 = time.perf_counter()
        win.app.attach(st)          # no frame rendered here
        st.open_first()
        win.app.frame()
        t3 = time.perf_counter()
        while not st.queue.ready or st.queue._thread is not None:
            win.app.frame()
        t4 = time.perf_counter()
        print(f"   {label}: Project.open + state {1000 * (t1 - t0):.0f} ms; image on screen, editable, after"
              f" {1000 * (t3 - t0):.0f} ms; ranked queue page ({len(st.queue.items)} of {len(st.queue):,})"
              f" listed after {1000 * (t4 - t0):.0f} ms")
        proj.close()
    with Project.open(path) as proj:
        t0 = time.perf_counter()
        q = image_queue(proj.store)
        print(f"   (for scale: ranking the whole queue at once, image_queue() without a limit: "
              f"{1000 * (time.perf_counter() - t0):.0f} ms for {len(q):,} rows)")


def screenshot(out: Path, tmp: Path) -> None:
    """The app on a demo photo: skeleton drawn, the person selected, queue and points table visible."""
    from PIL import Image
    from annotator.gui.state import AppState
    (tmp / "photos").mkdir()
    for f in sorted(DEMO.iterdir()):
        shutil.copy(f, tmp / "photos" / f.name)
    proj = make_photo_project(tmp / "shot", [tmp / "photos"])
    st = AppState(proj, annotator="demo", queue_filter="all")
    win = Window(st)
    row = proj.store.db.execute("SELECT id FROM images WHERE file_name LIKE '%030752%'").fetchone()
    st.show(row[0])
    p = max(st.frame.persons, key=lambda q: q.labelled.sum())
    st.set_gui_setting("show_angles", True)
    st.select(p.id, 13)
    c = st.view.to_screen(p.xy[p.labelled].mean(0))
    st.view.pan(st.canvas[0] / 2 - c[0], st.canvas[1] / 2 - c[1])       # the person in the middle, larger
    st.view.zoom_at(1.6, st.canvas[0] / 2, st.canvas[1] / 2)
    st.mark("view")
    for _ in range(5):
        win.app.frame()
    a = win.app.screenshot()
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a[..., :3]).save(out, optimize=True)
    print(f"wrote {out} ({a.shape[1]}x{a.shape[0]})")
    win.app.close()
    proj.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dwell", type=float, default=0.3, help="seconds spent on each image before 'next'")
    ap.add_argument("--open-images", type=int, default=100_000)
    ap.add_argument("--screenshot", type=Path, help="only write the README screenshot to this file")
    ap.add_argument("--parts", default="next,drag,open,zoom", help="comma-separated subset of next,drag,open,zoom")
    a = ap.parse_args()
    xvfb = ensure_display()
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            if a.screenshot:
                screenshot(a.screenshot, tmp)
                return
            from annotator.gui.state import AppState
            from annotator.core.project import Project
            proj, _ = Project.create(tmp / "empty", [DEMO])
            win = Window(AppState(proj, annotator="bench"))
            print(f"display {os.environ['DISPLAY']} (Xvfb: software OpenGL), {os.cpu_count()} cores")
            parts = a.parts.split(",")
            if "next" in parts:
                bench_next(win, tmp, a.dwell)
            if "drag" in parts:
                bench_drag(win, tmp)
            if "open" in parts:
                bench_open(win, tmp, a.open_images)
            if "zoom" in parts:
                bench_zoom(win, tmp)
            win.app.close()
    finally:
        if xvfb:
            xvfb.terminate()


if __name__ == "__main__":
    main()
