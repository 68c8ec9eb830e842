"""CVAT push / pull throughput for a synthetic project (default 500 images, 1-2 people each).

    .venv/bin/python bench/cvat.py                 # against tests/cvat_server.py (in this process)
    .venv/bin/python bench/cvat.py --server-version 2.23.0    # old-server emulation
    .venv/bin/python bench/cvat.py --real          # against CVAT_URL / CVAT_USER / CVAT_PASSWORD

Prints images/s and points/s for: push (task creation, image upload,
skeleton shapes), a full pull with nothing changed (download + three-way
compare), and a pull after every shape was edited on the server (download +
merge through the undoable Session). Against the in-process test server (its
per-response sdk schema check switched off, which costs more than the sync) the
server shares this process's CPU, so the figures are a floor for the client.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotator.core import skeleton as sk  # noqa: E402
from annotator.cvat.client import connect  # noqa: E402
from annotator.cvat.sync import CvatSync  # noqa: E402
from annotator.core.model import Person  # noqa: E402
from annotator.core.project import Project  # noqa: E402


def make_project(root: Path, n: int, size=(160, 120)) -> tuple[Project, int]:
    from PIL import Image
    rng = np.random.default_rng(0)
    img_dir = root / "images"
    img_dir.mkdir(parents=True)
    for k in range(n):
        a = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(a).save(img_dir / f"img_{k:05d}.jpg", quality=85)
    proj, _ = Project.create(root / "p", [img_dir])
    session = proj.session("bench")
    points = 0
    for im in proj.store.images():
        people = []
        for _ in range(int(rng.integers(1, 3))):
            xy = rng.uniform(5, min(size) - 5, (sk.N, 2))
            vis = rng.choice([0, 1, 2], sk.N, p=[0.1, 0.2, 0.7]).astype(np.int8)
            people.append(Person(xy, vis, rng.uniform(0, 1, sk.N)))
            points += int((vis > 0).sum())
        session.set_predictions(im.id, people, "bench-model")
    return proj, points


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--segment-size", type=int, default=50)
    ap.add_argument("--real", action="store_true", help="use CVAT_URL/CVAT_USER/CVAT_PASSWORD")
    ap.add_argument("--server-version", default="2.80.0", help="test server's emulated CVAT version (e.g. 2.23.0)")
    a = ap.parse_args()
    server = None
    if a.real:
        url = os.environ.get("CVAT_URL")
        if not url:
            print("--real needs CVAT_URL, CVAT_USER, CVAT_PASSWORD", file=sys.stderr)
            return 2
        creds = {}
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from cvat_server import CvatTestServer
        server = CvatTestServer(a.server_version, strict=False).start()     # schema checks are for tests; they dominate time
        server.add_user("bench", "bench-pw")
        url, creds = server.url, {"user": "bench", "password": "bench-pw"}
    try:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            proj, points = make_project(Path(d), a.images)
            n_people = proj.store.counts()["persons"]
            print(f"project: {a.images} images ({proj.store.images()[0].width}x{proj.store.images()[0].height}),"
                  f" {n_people} people, {points} labelled points (built in {time.perf_counter() - t0:.1f}s)")
            conn = connect(url, env=os.environ if a.real else {}, **creds)
            print(f"server: CVAT {conn.server_version} at {conn.url}" + (" (in-process test server)" if server else ""))
            sync = CvatSync(proj, conn)
            name = f"bench-{int(time.time())}"

            t = time.perf_counter()
            rep = sync.push(name, segment_size=a.segment_size)
            dt = time.perf_counter() - t
            print(f"push:            {dt:6.2f}s  {a.images / dt:7.1f} images/s  {points / dt:9.0f} points/s  "
                  f"({rep.counts})")

            t = time.perf_counter()
            rep = sync.pull(full=True)
            dt = time.perf_counter() - t
            print(f"pull, unchanged: {dt:6.2f}s  {a.images / dt:7.1f} images/s  {points / dt:9.0f} points/s  "
                  f"({rep.counts})")

            # every shape edited on the server (one point moved per person), then pulled and merged
            lmap = sync._lmap(proj.store.db.execute("SELECT cvat_project_id FROM cvat_tasks").fetchone()[0])
            jobs = [r[0] for r in proj.store.db.execute("SELECT job_id FROM cvat_jobs")]
            for jid in jobs:
                ann = conn.get_job_annotations(jid)
                for s in ann["shapes"]:
                    e = next(e for e in s["elements"] if e["label_id"] == lmap.sub_id["nose"])
                    e["points"] = [e["points"][0] + 1.5, e["points"][1] + 0.5]
                    e["outside"] = False
                conn.patch_job_annotations(jid, "update", {"shapes": ann["shapes"]})
            t = time.perf_counter()
            rep = sync.pull()
            dt = time.perf_counter() - t
            print(f"pull, all edited:{dt:6.2f}s  {a.images / dt:7.1f} images/s  {points / dt:9.0f} points/s  "
                  f"({rep.counts})")
            assert rep.counts.get("people_updated_from_cvat") == n_people, rep.counts
            conn.close()
            proj.close()
    finally:
        if server:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
