"""ONNX person detector (NanoDet) and per-box pose (MoveNet Thunder) on the dev ground truth.

Prints, on ../shared/data/pose-gt-dev (people with >= 5 labelled keypoints):
- box coverage: the fraction of GT people whose GT box is matched by a detector box with
  IoU >= 0.5, at detector scores 0.1 / 0.2 / 0.3, for two GT boxes: the annotation's `bbox`
  (the whole person, what a detector is trained to draw) and the box around the labelled
  keypoints (tighter: it leaves out the head top, hands past the wrists, the feet, clothes);
- false boxes: detector boxes on the images that have nobody in them;
- ms per image for the detector and ms per box for Thunder, one onnxruntime thread each;
- person recall when a person is a detector box + Thunder on it, scored box score x mean
  keypoint score: a GT person is found when some person scoring >= --person-score matches it
  with OKS > 0.1 (COCO sigmas; greedy, best-scored people first, each takes the free GT person
  it overlaps most among all labelled GT people).

    python bench/detector.py [--box-score 0.1] [--person-score 0.06] [--no-letterbox] [--limit N]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO / ".." / "shared" / "data" / "pose-gt-dev"

from annotator.prefill.detect_onnx import BoxPose, PersonDetector

COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07,
                        .87, .87, .89, .89]) / 10.0
MIN_POINTS = 5


def iou(a: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros(0)
    w = np.clip(np.minimum(a[2], boxes[:, 2]) - np.maximum(a[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(a[3], boxes[:, 3]) - np.maximum(a[1], boxes[:, 1]), 0, None)
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return inter / np.maximum(union, 1e-9)


def oks(kps: np.ndarray, gt: dict) -> float:
    k = np.asarray(gt["keypoints"], float).reshape(17, 3)
    lab = k[:, 2] > 0
    if not lab.any():
        return 0.0
    area = gt.get("area") or gt["bbox"][2] * gt["bbox"][3]
    d2 = ((kps - k[:, :2]) ** 2).sum(1)
    e = d2 / (2 * max(area, 1.0) * (2 * COCO_SIGMAS) ** 2)
    return float(np.exp(-e[lab]).mean())


def labelled(a: dict) -> int:
    return int(sum(v > 0 for v in a["keypoints"][2::3]))


def gt_boxes(a: dict) -> tuple[np.ndarray, np.ndarray]:
    x, y, w, h = a["bbox"]
    k = np.asarray(a["keypoints"], float).reshape(17, 3)
    k = k[k[:, 2] > 0]
    return (np.array([x, y, x + w, y + h]),
            np.array([k[:, 0].min(), k[:, 1].min(), k[:, 0].max(), k[:, 1].max()]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--box-score", type=float, default=0.1, help="detector score for the boxes Thunder sees")
    ap.add_argument("--person-score", type=float, default=0.06, help="box score x mean keypoint score to keep")
    ap.add_argument("--no-letterbox", action="store_true", help="stretch images to 416x416 instead")
    ap.add_argument("--limit", type=int, help="first N images only")
    args = ap.parse_args()

    coco = json.loads((DATA / "annotations.json").read_text())
    images = coco["images"][:args.limit] if args.limit else coco["images"]
    anns: dict[int, list] = {}
    for a in coco["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)

    det = PersonDetector(threads=1, min_score=min(0.1, args.box_score), letterbox=not args.no_letterbox)
    pose = BoxPose(threads=1)
    thresholds = (0.1, 0.2, 0.3)
    n_gt = 0
    covered = {t: [0, 0] for t in thresholds}
    false_boxes = {t: 0 for t in thresholds}
    empty_images = 0
    found = {}
    person_sweep = sorted({0.03, args.person_score, 0.1, 0.2})
    false_people = {s: 0 for s in person_sweep}
    det_ms, pose_ms = [], []

    rgb0 = cv2.cvtColor(cv2.imread(str(DATA / "images" / images[0]["file_name"])), cv2.COLOR_BGR2RGB)
    det.detect(rgb0)  # warm-up outside the timing
    pose.predict(rgb0, (0, 0, rgb0.shape[1], rgb0.shape[0]))

    for im in images:
        bgr = cv2.imread(str(DATA / "images" / im["file_name"]))
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        t0 = time.perf_counter()
        dets = det.detect(rgb)
        det_ms.append((time.perf_counter() - t0) * 1e3)
        boxes = np.array([d[:4] for d in dets]).reshape(-1, 4)
        scores = np.array([d[4] for d in dets])

        gts = anns.get(im["id"], [])
        if not gts:
            empty_images += 1
            for t in thresholds:
                false_boxes[t] += int((scores >= t).sum())
        counted = [a for a in gts if labelled(a) >= MIN_POINTS]
        n_gt += len(counted)
        for a in counted:
            full, kp = gt_boxes(a)
            for t in thresholds:
                sel = boxes[scores >= t]
                covered[t][0] += bool((iou(full, sel) >= 0.5).any())
                covered[t][1] += bool((iou(kp, sel) >= 0.5).any())

        people = []
        for b, s in zip(boxes, scores):
            if s < args.box_score:
                continue
            t0 = time.perf_counter()
            kps, kscore = pose.predict(rgb, b)
            pose_ms.append((time.perf_counter() - t0) * 1e3)
            people.append((float(s * kscore.mean()), kps))
        people.sort(key=lambda p: -p[0])
        if not gts:
            for s in person_sweep:
                false_people[s] += sum(p[0] >= s for p in people)
        targets = [a for a in gts if labelled(a) > 0]
        for s in person_sweep:
            free = set(range(len(targets)))
            for score, kps in people:
                if score < s or not free:
                    continue
                best, best_oks = None, 0.1
                for j in free:
                    o = oks(kps, targets[j])
                    if o > best_oks:
                        best, best_oks = j, o
                if best is not None:
                    free.discard(best)
                    if labelled(targets[best]) >= MIN_POINTS:
                        found[s] = found.get(s, 0) + 1

    print(f"pose-gt-dev: {len(images)} images, {n_gt} GT people with >= {MIN_POINTS} labelled points, "
          f"{empty_images} images with nobody; detector letterbox={not args.no_letterbox}")
    print("box coverage (IoU >= 0.5)   annotation bbox   keypoint box   false boxes on empty images")
    for t in thresholds:
        print(f"  detector score >= {t:.1f}   {covered[t][0] / n_gt:15.3f}   {covered[t][1] / n_gt:12.3f}"
              f"   {false_boxes[t]:5d}")
    print(f"detector: {statistics.median(det_ms):.1f} ms/image median, {statistics.mean(det_ms):.1f} mean "
          f"(1 thread, {len(det_ms)} images, preprocessing + decoding + NMS included)")
    if pose_ms:
        print(f"thunder:  {statistics.median(pose_ms):.1f} ms/box median, {statistics.mean(pose_ms):.1f} mean "
              f"(1 thread, {len(pose_ms)} boxes with detector score >= {args.box_score}, crop included)")
    print(f"person recall (box >= {args.box_score} + Thunder, OKS > 0.1, greedy):")
    for s in person_sweep:
        mark = "  <-" if s == args.person_score else ""
        print(f"  person score >= {s:.2f}: recall {found.get(s, 0) / n_gt:.3f}, "
              f"false people on empty images {false_people[s]}{mark}")


if __name__ == "__main__":
    main()
