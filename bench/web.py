"""The web page's pose check against the CLI pre-fill of the same photo.

    python bench/web.py [--photo PATH] [--requests 40] [--clients 1 2] [--repeat 3]

Starts `pose-annotator serve` (no project: default settings, like a new project's pre-fill) in a
subprocess on a free local port, waits for GET /healthz, then posts the photo (a 1280x720 photo of
pose-gt-dev by default) to POST /api/pose: --requests sequential requests for the median and p90
latency (upload, decode, model, JSON, on the loopback), and the same number from 2 clients at once
for requests/s. Against it, the CLI: `pose-annotator init` + `prefill` of that one photo as a user
would run it (whole commands, model start-up included), and `prefill` of 60 and of 15 copies of it:
the difference over 45 is the time per image once running (with --no-tta, the work the page does,
and with the default re-runs).
Medians over --repeat runs. Only loopback traffic; every loop is bounded.
"""
from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / ".." / "shared" / "data" / "pose-gt-dev" / "images" / "mmpose_mpii" / "mpii_005808361.jpg"


def cli(*args) -> str:
    r = subprocess.run([sys.executable, "-m", "annotator", *map(str, args)], cwd=REPO, capture_output=True, text=True,
                       timeout=600)
    if r.returncode:
        raise SystemExit(f"pose-annotator {' '.join(map(str, args))} failed: {r.stderr.strip()}")
    return r.stdout


def multipart(data: bytes, name: str) -> tuple[bytes, str]:
    b = "----bench-web"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


def request(url: str, body: bytes, ctype: str) -> float:
    t0 = time.perf_counter()
    req = urllib.request.Request(url, body, {"Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()
        assert r.status == 200
    return time.perf_counter() - t0


class Server:
    def __init__(self, tmp: Path):
        self.log = tmp / "serve.log"
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "annotator", "serve", "--port", "0"], cwd=REPO,
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        while not (m := re.search(r"serving (http://127\.0\.0\.1:\d+)/", self.log.read_text())):
            if self.proc.poll() is not None or time.perf_counter() - self.t0 > 60:
                raise SystemExit(f"the server did not start:\n{self.log.read_text()}")
            time.sleep(0.02)
        self.url = m.group(1)
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.perf_counter() - self.t0 > 120:
                raise SystemExit(f"the model did not load:\n{self.log.read_text()}")
            time.sleep(0.02)
        self.ready_seconds = time.perf_counter() - self.t0

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def bench_server(photo: Path, n: int, clients: int, tmp: Path) -> dict:
    s = Server(tmp)
    try:
        body, ctype = multipart(photo.read_bytes(), photo.name)
        url = s.url + "/api/pose"
        for _ in range(3):
            request(url, body, ctype)              # warm-up: first-run allocations
        seq = [request(url, body, ctype) for _ in range(n)]
        lat: list[float] = []
        per = [n // clients + (k < n % clients) for k in range(clients)]

        def client(m):
            for _ in range(m):
                lat.append(request(url, body, ctype))
        threads = [threading.Thread(target=client, args=(m,)) for m in per]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        s.stop()
    return {"ready": s.ready_seconds, "median_ms": statistics.median(seq) * 1e3,
            "p90_ms": statistics.quantiles(seq, n=10)[-1] * 1e3, "seq_rps": n / sum(seq),
            "par_rps": n / wall, "par_median_ms": statistics.median(lat) * 1e3}


def bench_cli(photo: Path, copies: int, tmp: Path, tta: bool) -> dict:
    flag = [] if tta else ["--no-tta"]
    one = tmp / "one"
    t0 = time.perf_counter()
    cli("init", one, "--images", photo)
    out = cli("prefill", one, "--quiet", *flag)
    whole = time.perf_counter() - t0
    secs = {}
    for n in (copies // 4, copies):             # the difference leaves the workers' start-up out
        src = tmp / f"src{n}"
        src.mkdir()
        for k in range(n):
            shutil.copyfile(photo, src / f"{k:03d}_{photo.name}")
        cli("init", tmp / f"p{n}", "--images", src)
        t0 = time.perf_counter()
        out = cli("prefill", tmp / f"p{n}", "--quiet", *flag)
        secs[n] = time.perf_counter() - t0
        m = re.search(r"pre-filled (\d+) images", out)
        if not m or int(m.group(1)) != n:
            raise SystemExit(f"unexpected prefill output: {out}")
    per = (secs[copies] - secs[copies // 4]) / (copies - copies // 4)
    return {"whole_s": whole, "per_image_ms": per * 1e3}


class Span(float):
    """A median that prints with the range of the runs behind it."""

    def __new__(cls, m, lo, hi):
        x = super().__new__(cls, m)
        x.lo, x.hi = lo, hi
        return x

    def __format__(self, spec):
        f = spec.lstrip("0123456789")
        return f"{format(float(self), spec)} ({format(self.lo, f)}-{format(self.hi, f)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photo", type=Path, default=PHOTO)
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--clients", type=int, default=2, help="concurrent clients for the requests/s run")
    ap.add_argument("--copies", type=int, default=60,
                    help="copies of the photo for the CLI's time per image (the run of a quarter as many is subtracted)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    if not a.photo.is_file():
        raise SystemExit(f"{a.photo}: no such photo (shared data missing? pass --photo)")
    from PIL import Image
    w, h = Image.open(a.photo).size
    print(f"photo {a.photo.name} {w}x{h}; {a.requests} requests per run, {a.repeat} runs: median (range)")
    runs: dict[str, list] = {"web": [], "cli_no_tta": [], "cli_tta": []}
    for _ in range(a.repeat):                   # alternated, so a busy moment on the machine hits all sides
        with tempfile.TemporaryDirectory() as d:
            runs["web"].append(bench_server(a.photo, a.requests, a.clients, Path(d)))
        for key, tta in (("cli_no_tta", False), ("cli_tta", True)):
            with tempfile.TemporaryDirectory() as d:
                runs[key].append(bench_cli(a.photo, a.copies, Path(d), tta))

    def med(key, field):
        v = [r[field] for r in runs[key]]
        return Span(statistics.median(v), min(v), max(v))
    print(f"web   start -> /healthz ready           {med('web', 'ready'):7.2f} s")
    print(f"web   POST /api/pose, 1 client          median {med('web', 'median_ms'):6.1f} ms, p90 "
          f"{med('web', 'p90_ms'):6.1f} ms, {med('web', 'seq_rps'):5.1f} requests/s")
    print(f"web   POST /api/pose, {a.clients} clients         median {med('web', 'par_median_ms'):6.1f} ms, "
          f"{med('web', 'par_rps'):5.1f} requests/s")
    for key, label in (("cli_no_tta", "prefill --no-tta"), ("cli_tta", "prefill (default)")):
        print(f"cli   init + {label:<18} 1 photo  {med(key, 'whole_s'):7.2f} s whole commands;"
              f" {med(key, 'per_image_ms'):6.1f} ms per image once running (2 workers)")


if __name__ == "__main__":
    main()
