"""The web page (`pose-annotator serve`): uploads, the model, the read-only viewer, in a real browser.

The browser tests run Debian's headless Chromium through chromedriver (tests/run.sh installs both)
against the real server in a subprocess on a copy of the demo project that the real CLI pre-filled,
so the points the page returns are checked against `pose-annotator prefill` of the same photo.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest

from annotator.core import render
from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.model import VIS_NAMES, VISIBLE, Person
from annotator.core.project import Project

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "projects" / "demo"
PHOTO = "images/coco_000000109313.jpg"          # one person, whole body
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOTS = os.environ.get("POSE_ANNOTATOR_SCREENSHOTS")   # a folder: save the page's screenshot there


# -- helpers ----------------------------------------------------------------------------------------
def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "annotator", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, **kw)


def png_header(w: int, h: int) -> bytes:
    """A PNG whose header says w x h (no pixel data worth decoding): the pixel limit must act on it."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def post(url: str, data: bytes, name: str = "photo.jpg", field: str = "image", host: str | None = None):
    """multipart/form-data POST with the standard library; (status, parsed JSON or text)."""
    b = "----pose-annotator-test"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    req = urllib.request.Request(url, body, {"Content-Type": f"multipart/form-data; boundary={b}"})
    if host:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, _body(r)
    except urllib.error.HTTPError as e:
        return e.code, _body(e)


def get(url: str, host: str | None = None):
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, _body(r)
    except urllib.error.HTTPError as e:
        return e.code, _body(e)


def _body(r):
    raw = r.read()
    return json.loads(raw) if r.headers.get_content_type() == "application/json" else raw


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A copy of the demo project, pre-filled by the real CLI (no re-run signals: the page does not compute them)."""
    root = tmp_path_factory.mktemp("web") / "demo"
    shutil.copytree(DEMO, root)
    r = cli("prefill", root, "--no-tta", "--quiet")
    assert r.returncode == 0, r.stderr
    return root


class Server:
    def __init__(self, project: Path | None, tmp: Path):
        self.tmp = tmp / "server-tmp"           # the server's TMPDIR: nothing may land there
        self.tmp.mkdir(parents=True)
        self.log = tmp / "server.log"
        env = dict(os.environ, TMPDIR=str(self.tmp))
        args = [sys.executable, "-m", "annotator", "serve", *([str(project)] if project else []), "--port", "0"]
        self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        t0 = time.time()
        while not (m := re.search(r"serving (http://127\.0\.0\.1:\d+)/", self.log.read_text())):
            assert self.proc.poll() is None, self.log.read_text()
            assert time.time() - t0 < 60, self.log.read_text()
            time.sleep(0.05)
        self.url = m.group(1)
        while get(self.url + "/healthz")[0] != 200:
            assert self.proc.poll() is None and time.time() - t0 < 120, self.log.read_text()
            time.sleep(0.1)

    def stop(self) -> int:
        """Ctrl+C, as a user stops it: a clean exit."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(20)


@pytest.fixture(scope="module")
def server(demo, tmp_path_factory):
    s = Server(demo, tmp_path_factory.mktemp("srv"))
    yield s
    assert s.stop() == 0 and s.log.read_text().rstrip().endswith("stopped")


@pytest.fixture(scope="module")
def browser():
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not Path(tool).exists():
            pytest.skip(f"{tool} not installed (apt-get install chromium chromium-driver; tests/run.sh does it)")
    pytest.importorskip("selenium", reason="pip install selenium (the test extra)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    os.environ["SE_OFFLINE"] = "true"           # never let Selenium Manager look for drivers online
    profile = tempfile.mkdtemp(prefix="chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              f"--user-data-dir={profile}", "--window-size=1280,1000", "--force-device-scale-factor=1",
              "--hide-scrollbars"):
        opts.add_argument(a)
    d = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    d.set_page_load_timeout(120)
    yield d
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait_for(d, css: str, timeout: float = 60.0):
    from selenium.webdriver.common.by import By
    t0 = time.time()
    while not (els := d.find_elements(By.CSS_SELECTOR, css)):
        assert time.time() - t0 < timeout, f"no {css} after {timeout} s: {d.page_source[:2000]}"
        time.sleep(0.05)
    return els[0]


def status_of_page(d) -> int:
    return d.execute_script("return performance.getEntriesByType('navigation')[0].responseStatus")


def screenshot(d) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(d.get_screenshot_as_png())).convert("RGB")).astype(int)


def stored_people(project: Path, file_name: str) -> list[Person]:
    with Project.open_readonly(project) as proj:
        return proj.store.load_frame(proj.store.image_by_name(file_name).id).persons


def assert_same_people(returned: list[dict], stored: list[Person]):
    assert len(returned) == len(stored) >= 1
    for r, p in zip(returned, stored):
        xy = np.array([[q["x"], q["y"]] for q in r["points"]])
        assert [q["name"] for q in r["points"]] == list(sk.NAMES)
        assert np.abs(xy - p.xy).max() < 0.01                   # the page rounds to 0.01 px
        assert [q["visibility"] for q in r["points"]] == [VIS_NAMES[int(v)] for v in p.vis]
        assert np.abs(np.array([q["confidence"] for q in r["points"]]) - p.conf).max() < 1e-3


# -- uploads and drawing, headless ------------------------------------------------------------------
def test_uploads_that_are_not_readable_photos_are_refused_before_decoding():
    from annotator.web.pose import BadUpload, Limits, read_upload
    photo = (DEMO / PHOTO).read_bytes()
    lim = Limits(max_bytes=2 * 2**20, max_pixels=10_000_000)
    assert read_upload(photo, "p.jpg", lim).shape == (640, 480, 3)
    cases = [
        (b"name,x,y\nnose,1,2\n", 400, r"notes\.txt: cannot read image \(not an image file: expected JPEG"),
        (photo[: len(photo) // 2], 400, r"half\.jpg: cannot decode image \(image file is truncated"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", 400, "not an image file"),   # no ghostscript
        (b"", 400, "empty upload"),
        (b"\xff" * (2 * 2**20 + 1), 413, r"over the 2 MB upload limit"),
        (png_header(5000, 4000), 413, r"5000x4000 is 20 megapixels, over the 10 megapixel limit"),
        (png_header(20000, 20000), 413, r"huge\.png: image too large: 20000 x 20000 \(400,000,000 pixels"),
    ]
    names = ["notes.txt", "half.jpg", "fig.eps", "e.jpg", "big.jpg", "wide.png", "huge.png"]
    for (data, status, msg), name in zip(cases, names):
        with pytest.raises(BadUpload, match=msg) as e:
            read_upload(data, name, lim)
        assert e.value.status == status and "\n" not in str(e.value)


def test_an_upload_is_parsed_into_memory_not_a_temporary_file():
    """Werkzeug spools a file field over 500 KB to a temporary file; the app's requests keep it in memory."""
    from flask import Request
    from werkzeug.test import EnvironBuilder
    from annotator.web.app import MemoryRequest
    data = (DEMO / "images" / "skimage_astronaut.png").read_bytes()
    assert len(data) > 500 * 1024
    env = lambda: EnvironBuilder(method="POST", data={"image": (io.BytesIO(data), "a.png")}).get_environ()  # noqa: E731
    f = Request(env()).files["image"]
    assert isinstance(f.stream, tempfile.SpooledTemporaryFile) and f.stream._rolled     # what it would do
    f = MemoryRequest(env()).files["image"]
    assert isinstance(f.stream, io.BytesIO) and f.read() == data


def test_the_drawing_marks_an_implausible_knee_in_red_and_a_plausible_one_in_green():
    xy = np.zeros((sk.N, 2))
    xy[23], xy[25], xy[27] = (100, 100), (100, 200), (120, 110)      # left knee folded to ~11 degrees
    xy[24], xy[26], xy[28] = (300, 100), (300, 200), (300, 300)      # right knee straight
    vis = np.zeros(sk.N, np.int8)
    vis[[23, 24, 25, 26, 27, 28]] = VISIBLE
    p = Person(xy, vis, np.ones(sk.N))
    angles = sk.joint_angles(p.xy, p.vis)
    assert angles["left_knee"] < sk.ANGLE_RANGE["knee"][0] and sk.implausible_angles(angles) == ["left_knee"]
    img = render.draw_angles(np.zeros((400, 400, 3), np.uint8), [p], radius=4)

    def near(c, color):
        win = img[c[1] - 30:c[1] + 30, c[0] - 30:c[0] + 30].reshape(-1, 3).astype(int)
        return int((np.abs(win - np.array(color)).max(1) < 40).sum())
    assert near((100, 200), render.BAD_ANGLE) > 20 and near((100, 200), render.GOOD_ANGLE) == 0
    assert near((300, 200), render.GOOD_ANGLE) > 20 and near((300, 200), render.BAD_ANGLE) == 0


def test_readonly_project_cannot_write_sees_the_apps_commits_and_never_creates_a_database(tmp_path):
    shutil.copytree(DEMO, tmp_path / "p")
    with pytest.raises(UserError, match=r"project\.db: no project database yet .*pose-annotator prefill"):
        Project.open_readonly(tmp_path / "p")
    assert not (tmp_path / "p" / "project.db").exists()
    with Project.open(tmp_path / "p") as app:            # the "app": builds the database, then edits
        ro = Project.open_readonly(tmp_path / "p")
        iid = ro.store.images()[0].id
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            ro.store.set_kv("x", 1)
        from annotator.distill import registry
        assert registry.rounds(ro.store) == [] and registry.latest_accepted(ro.store) is None
        assert ro.store.db.execute("SELECT 1 FROM sqlite_master WHERE name='distill_rounds'").fetchone() is None
        s = app.session("alice")
        pid = s.add_person(iid, Person(np.full((sk.N, 2), 50.0), np.full(sk.N, VISIBLE, np.int8)), source="alice")
        assert [p.id for p in ro.store.load_frame(iid).persons] == [pid]
        ro.close()


# -- the app without a browser ------------------------------------------------------------------------
def test_healthz_says_loading_then_ready_and_requests_wait_for_the_model():
    from annotator.core.settings import DEFAULTS
    from annotator.prefill.estimator import estimator_settings
    from annotator.web.app import create_app
    from annotator.web.pose import PoseService
    svc = PoseService(estimator_settings(DEFAULTS))
    c = create_app(svc).test_client()
    r = c.get("/healthz")
    assert r.status_code == 503 and r.json["ready"] is False
    r = c.post("/api/pose", data={"image": (io.BytesIO((DEMO / PHOTO).read_bytes()), "p.jpg")})
    assert r.status_code == 503 and "still loading" in r.json["error"]
    assert svc.start().wait(120)
    r = c.get("/healthz")
    assert r.status_code == 200 and r.json["ready"] is True and r.json["model"]
    r = c.post("/api/pose", data={"image": (io.BytesIO((DEMO / PHOTO).read_bytes()), "p.jpg")})
    assert r.status_code == 200 and len(r.json["people"]) >= 1 and len(r.json["people"][0]["points"]) == 33
    r = c.get("/project")
    assert r.status_code == 404 and b"pose-annotator serve PROJECT" in r.data


def test_the_viewer_shows_the_distillation_rounds_and_their_plot(tmp_path):
    from PIL import Image
    from annotator.core.settings import DEFAULTS
    from annotator.distill import registry
    from annotator.prefill.estimator import estimator_settings
    from annotator.web.app import create_app
    from annotator.web.pose import PoseService
    from annotator.web.viewer import ProjectViewer
    shutil.copytree(DEMO, tmp_path / "p")
    with Project.open(tmp_path / "p") as proj:          # two rounds as distill records them
        for k, status, ap in ((1, "accepted", 0.41), (2, "rejected", 0.38)):
            registry.start_round(proj.store, k, "mediapipe" if k == 1 else "round 1", "head", {})
            registry.update_round(proj.store, k, status=status, reason="worse on gold" if k == 2 else None,
                                  record={"gold_before": {"oks_ap": 0.40, "pck_0_05": 0.5},
                                          "gold_after": {"oks_ap": ap, "pck_0_05": 0.52}})
    c = create_app(PoseService(estimator_settings(DEFAULTS)), ProjectViewer(tmp_path / "p")).test_client()
    r = c.get("/project")
    assert r.status_code == 200 and b'src="/project/rounds.png"' in r.data and b"worse on gold" in r.data
    r = c.get("/project/rounds.png")
    assert r.status_code == 200 and r.mimetype == "image/png"
    plot = np.asarray(Image.open(io.BytesIO(r.data)).convert("RGB")).astype(int)
    assert plot.shape[:2] == (400, 1000) and (np.abs(plot - (31, 119, 180)).max(-1) < 30).sum() > 100  # the lines


def test_the_viewer_pages_through_the_review_queue_and_shows_cvat_conflicts(tmp_path):
    from annotator.core.settings import DEFAULTS
    from annotator.cvat.sync import ensure_tables
    from annotator.prefill.estimator import estimator_settings
    from annotator.review.queue import image_queue
    from annotator.web.app import create_app
    from annotator.web.pose import PoseService
    from annotator.web.viewer import ProjectViewer
    shutil.copytree(DEMO, tmp_path / "p")
    with Project.open(tmp_path / "p") as proj:          # people on two images, one of them in a CVAT conflict
        rows = proj.store.images()
        s = proj.session("alice")
        a = s.add_person(rows[3].id, Person(np.full((sk.N, 2), 40.0), np.full(sk.N, VISIBLE, np.int8), np.full(sk.N, 0.3)))
        b = s.add_person(rows[7].id, Person(np.full((sk.N, 2), 60.0), np.full(sk.N, VISIBLE, np.int8), np.full(sk.N, 0.9)))
        ensure_tables(proj.store)
        with proj.store.tx():
            proj.store.db.execute("INSERT INTO cvat_conflicts(person_id, job_id, image_id, kind, cvat_user, detected_at)"
                                  " VALUES(?, 1, ?, 'changed on both sides', 'carol', 0)", (b, rows[7].id))
        order = [it.file_name for it in image_queue(proj.store, ("to_review", "in_progress", "verified"))]
    assert len(order) == 10
    c = create_app(PoseService(estimator_settings(DEFAULTS)), ProjectViewer(tmp_path / "p"), per_page=4).test_client()
    seen = []
    for pg, n, nxt in ((0, 4, True), (1, 4, True), (2, 2, False)):
        html = c.get(f"/project?filter=all&page={pg}").data.decode()
        files = re.findall(r'data-file="([^"]+)"', html)
        assert len(files) == n and (f"page={pg + 1}\">next" in html) == nxt and f"page {pg + 1} of 3" in html
        seen += files
    assert seen == order                                     # the queue's order, each image once
    html = c.get(f"/project/image/{rows[7].id}").data.decode()
    assert 'class="badge conflict">conflict</span>' in html and "CVAT: changed on both sides" in html
    html = c.get(f"/project/image/{rows[3].id}").data.decode()
    assert f"person {a}" in html and ">predicted</span>" in html and "suspect: " in html     # conf 0.3
    assert c.get("/project?filter=nope").status_code == 400 and c.get("/project?page=x").status_code == 400
    assert c.get("/project/image/999").status_code == 404


def test_serve_without_a_database_is_one_line_and_creates_nothing(tmp_path):
    shutil.copytree(DEMO, tmp_path / "p")
    r = cli("serve", tmp_path / "p", "--port", "0")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no project database yet" in r.stderr
    assert not (tmp_path / "p" / "project.db").exists()


def test_serve_on_a_port_in_use_is_one_line():
    import socket
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        r = cli("serve", "--port", port)
    assert r.returncode == 2 and r.stderr == f"error: 127.0.0.1:{port}: the port is in use (choose another with --port)\n"


def test_api_answers_bad_uploads_with_their_status_and_stores_nothing(server, demo, tmp_path):
    api = server.url + "/api/pose"
    before = sorted(p.name for p in demo.iterdir())
    db_sha = hashlib.sha1((demo / "project.db").read_bytes()).hexdigest()
    photo = (demo / PHOTO).read_bytes()
    status, body = post(api, b"just some text\n", "notes.txt")
    assert status == 400 and body["error"].startswith("notes.txt: cannot read image (not an image file")
    status, body = post(api, photo[:30000], "cut.jpg")
    assert status == 400 and "cut.jpg: cannot decode image (image file is truncated" in body["error"]
    status, body = post(api, os.urandom(100 * 2**20), "big.jpg")
    assert status == 413 and "over the 20 MB limit" in body["error"]
    status, body = post(api, png_header(9000, 9000), "wide.png")
    assert status == 413 and "81 megapixels, over the 40 megapixel limit" in body["error"]
    status, body = post(api, photo, "../../etc/passwd")     # a name is only a name
    assert status == 200 and len(body["people"]) >= 1
    png = (demo / "images" / "skimage_astronaut.png").read_bytes()
    assert len(png) > 500 * 1024                            # where Werkzeug would spool to a temporary file
    status, body = post(api, png, "astronaut.png")
    assert status == 200 and len(body["people"]) >= 1
    status, body = get(server.url + "/project/image/../../../etc/passwd")
    assert status == 404
    # a page elsewhere that rebinds its name to 127.0.0.1 gets nothing
    for host in ("attacker.example", "127.0.0.1.attacker.example", "127.attacker.example:80"):
        status, body = get(server.url + "/project", host=host)
        assert status == 400 and b"only answers requests for localhost" in body, host
    for host in ("localhost", f"127.0.0.1:{server.url.rsplit(':', 1)[1]}", "127.1.2.3", "[::1]:80"):
        assert get(server.url + "/healthz", host=host)[0] == 200, host
    for path in ("/project?filter=all", "/project/image/1", "/project/image/1.jpg", "/project/image/1.jpg?size=full"):
        assert get(server.url + path)[0] == 200, path       # the viewer's pages write nothing either
    # the uploads never touched the disk (onnxruntime writes its session id, `.ses`, when the model loads)
    assert [f for f in server.tmp.iterdir() if f.name != ".ses"] == []
    assert sorted(p.name for p in demo.iterdir() if p.name not in ("project.db-wal", "project.db-shm")) == \
        [n for n in before if n not in ("project.db-wal", "project.db-shm")]
    assert hashlib.sha1((demo / "project.db").read_bytes()).hexdigest() == db_sha


# -- in a real browser ----------------------------------------------------------------------------------
def test_browser_pose_check_returns_the_cli_prefill_points_and_draws_the_region_colors(server, demo, browser):
    from selenium.webdriver.common.by import By
    d = browser
    d.get(server.url + "/")
    assert "Drop a photo here" in d.page_source
    d.find_element(By.ID, "file").send_keys(str(demo / PHOTO))     # choosing the file submits the form
    js = json.loads(wait_for(d, "#pose-json").get_attribute("textContent"))
    assert status_of_page(d) == 200
    stored = stored_people(demo, PHOTO)
    assert_same_people(js["people"], stored)
    img = d.find_element(By.ID, "drawing")
    assert d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == js["width"]
    rows = d.find_elements(By.CSS_SELECTOR, ".person tr")
    assert len(rows) == 1 + len(sk.ANGLES)                      # a header and one row per joint angle
    angles = sk.joint_angles(stored[0].xy, stored[0].vis)
    assert f"{angles['left_knee']:.0f}°" in rows[1 + [a[0] for a in sk.ANGLES].index("left_knee")].text
    d.execute_script("arguments[0].scrollIntoView()", img)
    shot = screenshot(d)
    rect = d.execute_script("var r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.width];", img)
    scale = rect[2] / js["width"]
    checked = found = 0
    p = stored[0]
    for name in ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                 "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"):
        i = sk.INDEX[name]
        if p.vis[i] != VISIBLE:
            continue
        checked += 1
        cx, cy = int(round(rect[0] + p.xy[i, 0] * scale)), int(round(rect[1] + p.xy[i, 1] * scale))
        win = shot[cy - 2:cy + 3, cx - 2:cx + 3].reshape(-1, 3)
        found += bool((np.abs(win - np.array(sk.point_color(i))).max(1) < 60).any())
    assert checked >= 6 and found == checked
    for region in ("left_leg", "right_leg", "left_arm", "right_arm"):     # left and right told apart
        assert (np.abs(shot.reshape(-1, 3) - np.array(sk.REGION_COLORS[region])).max(1) < 30).sum() > 20, region
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        d.execute_script("window.scrollTo(0, 0)")
        d.save_screenshot(str(Path(SCREENSHOTS) / "web.png"))


def test_browser_drop_a_photo_on_the_page(server, demo, browser):
    d = browser
    d.get(server.url + "/")
    wait_for(d, "#upload")
    photo = base64.b64encode((demo / "images" / "skimage_astronaut.png").read_bytes()).decode()
    d.execute_script("""
        var bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
        var dt = new DataTransfer();
        dt.items.add(new File([bytes], 'astronaut.png', {type: 'image/png'}));
        var form = document.getElementById('upload');
        form.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
        form.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    """, photo)
    js = json.loads(wait_for(d, "#pose-json").get_attribute("textContent"))
    assert js["name"] == "astronaut.png"
    assert_same_people(js["people"], stored_people(demo, "images/skimage_astronaut.png"))


def test_browser_bad_uploads_show_one_clear_line(server, demo, browser, tmp_path):
    from selenium.webdriver.common.by import By
    d = browser
    (tmp_path / "notes.txt").write_text("not a photo\n")
    (tmp_path / "cut.jpg").write_bytes((demo / PHOTO).read_bytes()[:30000])
    with open(tmp_path / "big.jpg", "wb") as f:
        f.write(os.urandom(100 * 2**20))
    for name, status, msg in (("notes.txt", 400, "notes.txt: cannot read image (not an image file"),
                              ("cut.jpg", 400, "cut.jpg: cannot decode image (image file is truncated"),
                              ("big.jpg", 413, "upload over the 20 MB limit")):
        d.get(server.url + "/")
        wait_for(d, "#file").send_keys(str(tmp_path / name))
        err = wait_for(d, "#error")
        assert msg in err.text and "\n" not in err.text
        assert status_of_page(d) == status
        assert not d.find_elements(By.ID, "pose-json")
        assert d.find_element(By.ID, "file")                   # the form is there to try again


def test_browser_viewer_lists_the_demo_images_with_their_people(server, demo, browser):
    from selenium.webdriver.common.by import By
    d = browser
    d.get(server.url + "/project?filter=all")
    cards = d.find_elements(By.CSS_SELECTOR, "#queue .image")
    with Project.open_readonly(demo) as proj:
        rows = proj.store.images()
        names = {r.file_name for r in rows}
        people = {r.file_name: len(proj.store.person_ids(r.id)) for r in rows}
        state = {r.file_name: {"to_review": "predicted", "in_progress": "in progress"}.get(r.review_state, "verified")
                 for r in rows}
    assert len(names) == 10 and {c.get_attribute("data-file") for c in cards} == names
    t0 = time.time()
    while not d.execute_script("return [...document.images].every(i => i.complete && i.naturalWidth > 0)"):
        assert time.time() - t0 < 60, "thumbnails did not load"
        time.sleep(0.1)
    for c in cards:
        n = people[c.get_attribute("data-file")]
        assert (f"{n} person" if n == 1 else f"{n} people") in c.text
        assert c.get_attribute("data-status") == state[c.get_attribute("data-file")]
    assert "No distillation rounds yet" in d.page_source
    # the first card (the top of the review queue) opens its image with its people
    first = cards[0].get_attribute("data-file")
    assert people[first] >= 1
    cards[0].find_element(By.TAG_NAME, "a").click()
    wait_for(d, ".person")
    assert d.find_element(By.TAG_NAME, "h2").text.startswith(first)
    assert len(d.find_elements(By.CSS_SELECTOR, ".person")) == people[first]
    assert "/33 points verified" in d.find_element(By.CSS_SELECTOR, ".person").text


def test_the_viewer_follows_the_app_while_it_writes(server, demo):
    """The desktop app's writes (a person verified) show on the next page load; the server keeps reading."""
    with Project.open(demo) as app:
        row = app.store.image_by_name("images/skimage_astronaut.png")
        frame = app.store.load_frame(row.id)
        assert frame.persons
        status, html = get(f"{server.url}/project/image/{row.id}")
        assert status == 200 and b">predicted</span>" in html
        s = app.session("alice")
        for p in frame.persons:
            s.verify_person(p.id)
        status, html = get(f"{server.url}/project/image/{row.id}")
        assert status == 200 and b">verified</span>" in html and b">predicted</span>" not in html
        status, html = get(f"{server.url}/project?filter=verified")
        assert status == 200 and b'data-file="images/skimage_astronaut.png"' in html
        for p in frame.persons:
            s.undo()
        status, html = get(f"{server.url}/project/image/{row.id}")
        assert b">predicted</span>" in html
        # pages keep coming while the app commits edit after edit (WAL: readers never wait for the writer)
        import threading
        pid, x0 = frame.persons[0].id, float(frame.persons[0].xy[0, 0])
        done = threading.Event()

        def edits():
            with Project.open(demo) as other:        # the app's own connection, in its own thread
                t = other.session("bob")
                for k in range(60):
                    t.move_point(pid, 0, x0 + k % 7, 20.0)
            done.set()
        th = threading.Thread(target=edits)
        th.start()
        codes = []
        while not done.is_set() and len(codes) < 200:
            codes += [get(f"{server.url}/project/image/{row.id}")[0], get(f"{server.url}/project")[0]]
        th.join(60)
        assert done.is_set() and len(codes) >= 2 and set(codes) == {200}
        assert app.store.integrity_ok()


def test_the_viewer_rings_the_suspect_points(server, demo):
    from PIL import Image
    from annotator.review.queue import suspect_points
    with Project.open_readonly(demo) as proj:
        frames = [proj.store.load_frame(r.id) for r in proj.store.images()]
    frame = next(f for f in frames if suspect_points(f.persons))
    sus = suspect_points(frame.persons)
    status, html = get(f"{server.url}/project/image/{frame.id}")
    assert status == 200 and b"suspect: " + sk.NAMES[sus[0][1]].replace("_", " ").encode() in html
    status, jpeg = get(f"{server.url}/project/image/{frame.id}.jpg?size=full")
    img = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)
    s = img.shape[1] / frame.width
    for k, i, _ in sus:
        x, y = (frame.persons[k].xy[i] * s).round().astype(int)
        win = img[max(0, y - 15):y + 16, max(0, x - 15):x + 16].reshape(-1, 3)
        assert (np.abs(win - np.array(render.SUSPECT_COLOR)).max(1) < 60).sum() >= 5, sk.NAMES[i]
