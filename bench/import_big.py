"""A big COCO import through the CLI: a ~50 MB file of 111,860 people (the size issue 14 met).

    .venv/bin/python bench/import_big.py                       # 111,860 people on 12,000 photos
    .venv/bin/python bench/import_big.py --people 20000 --images 3

Prints the seconds of `import` (read + match + the one write transaction + the review-queue
rescoring) and of a second, identical `import` (which must change nothing). People per image
matter: the review queue's crowd signals compare every person with every other on the image.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=111_860)
    ap.add_argument("--images", type=int, default=12_000)
    ap.add_argument("--tmp")
    a = ap.parse_args()
    tmp = Path(a.tmp or tempfile.mkdtemp(prefix="import-big-"))
    imgs = tmp / "imgs"
    imgs.mkdir(parents=True, exist_ok=True)
    w, h = 64, 48
    Image.new("RGB", (64, 48), (90, 120, 150)).save(tmp / "one.jpg")
    data = (tmp / "one.jpg").read_bytes()
    for k in range(a.images):
        (imgs / f"i{k:05d}.jpg").write_bytes(data)
    cats = [{"id": 1, "name": "person", "keypoints": ["nose", "left_eye", "right_eye", "left_ear", "right_ear",
             "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
             "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]}]
    rng = random.Random(0)
    anns = []
    for n in range(a.people):
        kp = []
        for _ in range(17):
            kp += [round(rng.uniform(0, w), 2), round(rng.uniform(0, h), 2), 2]
        anns.append({"id": n + 1, "image_id": n % a.images + 1, "category_id": 1, "keypoints": kp,
                     "num_keypoints": 17, "iscrowd": 0, "area": 1.0, "bbox": [0, 0, 1, 1]})
    f = tmp / "big.json"
    f.write_text(json.dumps({"images": [{"id": k + 1, "file_name": f"../imgs/i{k:05d}.jpg", "width": 64,
                                         "height": 48} for k in range(a.images)],
                             "annotations": anns, "categories": cats}))
    env = {"PYTHONPATH": str(REPO)}
    run = lambda *args: subprocess.run([sys.executable, "-m", "annotator", *map(str, args)], capture_output=True,
                                       text=True, env={**__import__("os").environ, **env})
    t = time.time()
    r = run("init", tmp / "p", "--images", imgs)
    assert r.returncode == 0, r.stderr
    print(f"init {a.images} photos: {time.time() - t:.1f}s")
    print(f"file: {f.stat().st_size / 1e6:.1f} MB, {a.people} people on {a.images} images")
    for what in ("import", "re-import"):
        t = time.time()
        r = run("import", tmp / "p", f)
        print(f"{what}: {time.time() - t:.1f}s, exit {r.returncode}: {(r.stdout + r.stderr).strip()[-300:]}")


if __name__ == "__main__":
    main()
