"""The torch rebuild of pose_landmark_full.tflite: same numbers as LiteRT, same as its ONNX export, trainable."""
from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
from ai_edge_litert.interpreter import Interpreter

from annotator.prefill import models as mp_models
from annotator.core.errors import UserError
from annotator.prefill.tflite_torch import (FEATURES, POSE_OUTPUTS, export_onnx, load_pose_landmark,
                                    read_graph)

from tests.conftest import MEDIA

# Photos whose centred square crop holds one clearly visible person (MediaPipe's pose flag > 0.9).
PEOPLE = ("alphapose_demo_2.jpg", "openpifpaf_000000081988.jpg", "openpose_COCO_val2014_000000000589.jpg",
          "skimage_astronaut.png", "alphapose_demo_3.jpg", "openpose_COCO_val2014_000000000623.jpg",
          "openpifpaf_000000541055_cropped.jpeg", "ultralytics_bus.jpg")


def real_crops(n: int) -> np.ndarray:
    """Centred square crops of real photos, resized to 256 and scaled to [0, 1] like MediaPipe's input."""
    out = []
    for name in PEOPLE[:n]:
        im = cv2.cvtColor(cv2.imread(str(MEDIA / "images" / name)), cv2.COLOR_BGR2RGB)
        h, w = im.shape[:2]
        s = min(h, w)
        y, x = (h - s) // 2, (w - s) // 2
        out.append(cv2.resize(im[y:y + s, x:x + s], (256, 256), interpolation=cv2.INTER_AREA))
    return np.stack(out).astype(np.float32) / 255.0


def litert(crops: np.ndarray) -> dict[str, np.ndarray]:
    """The reference: Google's interpreter on the wheel's own .tflite, one crop at a time."""
    it = Interpreter(model_path=str(mp_models.landmark_path(1)), num_threads=2)
    it.allocate_tensors()
    inp = it.get_input_details()[0]["index"]
    outs = {POSE_OUTPUTS[o["name"]]: o["index"] for o in it.get_output_details()}
    res = {k: [] for k in outs}
    for c in crops:
        it.set_tensor(inp, c[None])
        it.invoke()
        for k, i in outs.items():
            res[k].append(it.get_tensor(i)[0].copy())
    return {k: np.stack(v) for k, v in res.items()}


@pytest.fixture(scope="module")
def module():
    torch.set_num_threads(2)
    return load_pose_landmark().eval()


@pytest.fixture(scope="module")
def crops():
    return real_crops(4)


def test_graph_ops_are_the_expected_ones():
    g = read_graph()
    hist = g.histogram()
    assert hist["CONV_2D"] == 58 and hist["DEPTHWISE_CONV_2D"] == 38
    # every conv weight and bias is stored float16 and dequantized once
    assert hist["DEQUANTIZE"] == 2 * (hist["CONV_2D"] + hist["DEPTHWISE_CONV_2D"])
    assert set(hist) == {"DEQUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PAD", "RESIZE_BILINEAR",
                         "RESHAPE", "MAX_POOL_2D", "LOGISTIC"}
    assert g.shapes[g.inputs[0]] == (1, 256, 256, 3)


def test_matches_litert_on_real_crops(module, crops):
    ref = litert(crops)
    with torch.no_grad():
        out = {k: v.numpy() for k, v in module(torch.from_numpy(crops)).items()}
    assert set(POSE_OUTPUTS.values()) <= set(out)
    assert ref["pose_flag"].min() > 0.9          # these really are people
    lm, lm_ref = out["landmarks"].reshape(-1, 39, 5), ref["landmarks"].reshape(-1, 39, 5)
    assert np.abs(lm[..., :2] - lm_ref[..., :2]).max() < 0.01            # crop pixels
    for name in ("landmarks", "world_landmarks", "heatmap", "pose_flag"):
        assert out[name].shape == ref[name].shape
        rel = np.abs(out[name] - ref[name]).max() / np.abs(ref[name]).max()
        assert rel < 1e-4, (name, rel)
    # the 256x256 segmentation logits reach +-1000s; compare relative and as a mask
    seg, seg_ref = out["segmentation"], ref["segmentation"]
    assert np.abs(seg - seg_ref).max() / np.abs(seg_ref).max() < 3e-3
    mask, mask_ref = torch.sigmoid(torch.from_numpy(seg)), torch.sigmoid(torch.from_numpy(seg_ref))
    assert (mask - mask_ref).abs().max() < 0.02


def test_features_feed_the_landmark_head(module, crops):
    x = torch.from_numpy(crops[:2])
    with torch.no_grad():
        full = module(x, ("landmarks", FEATURES))
        again = module.forward_from(FEATURES, full[FEATURES], ("landmarks",))["landmarks"]
    assert full[FEATURES].shape == (2, 2, 2, 288)
    assert torch.allclose(again, full["landmarks"], atol=1e-4)
    # the landmarks-only plan skips the segmentation/heatmap decoder
    ids = module.output_ids
    only = [i for i, _ in module._plan((module.input_id,), (ids["landmarks"],))]
    every = [i for i, _ in module._plan((module.input_id,), tuple(ids[n] for n in POSE_OUTPUTS.values()))]
    assert set(only) < set(every) and len(only) < 0.8 * len(every)
    head = module.head_parameters("landmarks")
    assert [tuple(p.shape) for p in head] == [(195, 288, 2, 2), (195,)]


def test_is_trainable_end_to_end(module, crops):
    params = dict(module.named_parameters())
    assert len(params) == 2 * 96 and all(p.requires_grad for p in params.values())
    module.zero_grad()
    lm = module(torch.from_numpy(crops[:1]), ("landmarks",))["landmarks"]
    lm[:, :66].sum().backward()
    first = next(n for n in params if n.startswith("layers.op003"))
    assert params[first].grad is not None and params[first].grad.abs().sum() > 0
    module.zero_grad()


def test_onnx_export_matches_torch(module, crops, tmp_path):
    path = export_onnx(module, tmp_path / "pose_landmark_full.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == list(POSE_OUTPUTS.values())
    x = crops[:2]   # batch of 2: the batch axis is dynamic
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input_1": x})))
    with torch.no_grad():
        ref = {k: v.numpy() for k, v in module(torch.from_numpy(x)).items()}
    for name, v in got.items():
        assert v.shape == ref[name].shape
        rel = np.abs(v - ref[name]).max() / np.abs(ref[name]).max()
        assert rel < 1e-4, (name, rel)


def test_bad_inputs(module, tmp_path):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(UserError, match="x.tflite"):
        read_graph(bad)
    with pytest.raises(ValueError, match="NHWC"):
        module(torch.zeros(1, 3, 256, 256))
    with pytest.raises(ValueError, match="unknown output"):
        module(torch.zeros(1, 256, 256, 3), ("nope",))
