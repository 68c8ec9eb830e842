"""Student training primitives on real crops: real training runs, asserted by where predictions end up."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.distill.training import augment_batch, evaluate, landmark_loss, train
from annotator.prefill.student import Student

from tests.test_tflite_torch import litert, real_crops

SHIFT = np.array([0.0, -7.0], np.float32)   # vertical: mirror-symmetric, so it survives flip augmentation


@pytest.fixture(scope="module")
def base():
    return Student(threads=2)


@pytest.fixture(scope="module")
def crops():
    return real_crops(6)


@pytest.fixture(scope="module")
def pred0(base, crops):
    return base.predict(crops)


def _sig(v):
    return 1 / (1 + np.exp(-v))


def test_predict_is_mediapipe_decoding(base, crops, pred0):
    ref = litert(crops[:2])["landmarks"].reshape(2, 39, 5)[:, :33]
    assert pred0.shape == (6, 33, 5) and pred0.dtype == np.float32
    assert np.abs(pred0[:2] - ref).max() < 0.01
    # x, y are crop pixels: a person filling a centred crop lands inside 0..256
    conf = _sig(pred0[..., 3]) > 0.8
    assert conf.sum() > 60
    xy = pred0[..., :2][conf]
    assert xy.min() > 0 and xy.max() < 256
    with pytest.raises(ValueError, match="256"):
        base.predict(np.zeros((1, 128, 128, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        base.predict(np.zeros((1, 256, 256, 3), np.uint8))


def test_augmentation_moves_image_and_points_together(base, crops, pred0):
    x, xy = torch.from_numpy(crops), torch.from_numpy(pred0[..., :2].copy())
    w = torch.from_numpy((_sig(pred0[..., 3]) > 0.8).astype(np.float32))
    # all-off augmentation is the identity
    g = torch.Generator().manual_seed(0)
    x0, xy0, w0 = augment_batch(x, xy, w, g, flip=0, scale=0, rotate=0, shift=0, color=0)
    assert torch.allclose(x0, x, atol=1e-5) and torch.allclose(xy0, xy, atol=1e-4) and torch.equal(w0, w)
    # the network roughly follows a flipped/scaled/rotated crop: its predictions on the
    # augmented crop land on the augmented targets; without the left/right swap they do not
    g = torch.Generator().manual_seed(1)
    xa, xya, wa = augment_batch(x, xy, w, g, flip=1.0)
    q = base.predict(xa.numpy())[..., :2]
    m = wa.numpy() > 0
    err = np.linalg.norm(q - xya.numpy(), axis=-1)[m]
    unswapped = np.linalg.norm(q[:, list(sk.FLIP)] - xya.numpy(), axis=-1)[m]
    assert np.median(err) < 6.0, np.median(err)
    assert np.median(unswapped) > 2 * np.median(err)
    # swapping points permutes their weights with them
    assert torch.equal(wa, w[:, list(sk.FLIP)])


def test_weight_zero_points_carry_no_gradient(pred0):
    pred = torch.from_numpy(pred0[:2, :, :2].copy()).requires_grad_(True)
    target = pred.detach() + 5.0
    w = torch.ones(2, 33)
    w[:, 11:17] = 0                      # arms unlabelled...
    target[:, 11:17] = float("nan")      # ...even with garbage coordinates
    loss = landmark_loss(pred, target, w)
    loss.backward()
    assert torch.isfinite(loss)
    assert (pred.grad[:, 11:17] == 0).all()
    assert (pred.grad[:, :11].abs() > 0).all()


def test_head_training_moves_weighted_points_only(base, crops, pred0):
    st = base.copy()
    target = pred0[..., :2] + SHIFT
    w = np.ones((len(crops), 33), np.float32)
    w[:, 25:] = 0                        # legs: no opinion
    before = np.linalg.norm(pred0[..., :2] - target, axis=-1)
    hist = train(st, crops, target, w, epochs=20, batch_size=3, lr=3e-2, augment=True, mode="head")
    after_pred = st.predict(crops)
    after = np.linalg.norm(after_pred[..., :2] - target, axis=-1)
    assert [h["epoch"] for h in hist] == list(range(1, 21))
    assert after[:, :25].mean() < 0.5 * before[:, :25].mean(), (before[:, :25].mean(), after[:, :25].mean())
    # the head is frozen-backbone linear: unweighted points and untrained outputs did not move at all
    assert np.abs(after_pred[:, 25:] - pred0[:, 25:]).max() < 1e-3
    assert np.abs(after_pred[..., 2:] - pred0[..., 2:]).max() < 1e-3
    # and the original student is untouched (copy is deep)
    assert np.abs(base.predict(crops[:1]) - pred0[:1]).max() < 1e-3


def test_full_training_reduces_loss(base, crops, pred0):
    st = base.copy()
    x, target, w = crops[:4], pred0[:4, :, :2] + SHIFT, np.ones((4, 33), np.float32)
    calls = []
    hist = train(st, x, target, w, epochs=5, batch_size=4, augment=False, mode="full",
                 progress=calls.append, val=(x, target, w))
    after = st.predict(x)
    d0 = np.linalg.norm(pred0[:4, :, :2] - target, axis=-1).mean()
    d1 = np.linalg.norm(after[..., :2] - target, axis=-1).mean()
    assert d1 < 0.6 * d0, (d0, d1)
    assert hist[-1]["loss"] < hist[0]["loss"] and hist[-1]["val"] < hist[0]["val"]
    assert abs(hist[-1]["val"] - evaluate(st, x, target, w)) < 1e-3
    assert len(calls) == 5 and all(c["steps"] == 1 for c in calls) and "val" in calls[-1]
    # visibility has no targets: it may drift, but only a little at this learning rate
    assert np.abs(_sig(after[..., 3]) - _sig(pred0[:4, :, 3])).mean() < 0.1


def test_stop_ends_training_early(base, crops, pred0):
    st = base.copy()
    asked = []

    def stop():
        asked.append(1)
        return len(asked) > 2

    hist = train(st, crops, pred0[..., :2], np.ones((6, 33)), epochs=3, batch_size=2, mode="head",
                 augment=False, stop=stop)
    assert len(hist) == 1 and hist[0]["stopped"] and hist[0]["crops"] == 4


def test_save_load_roundtrip(base, crops, pred0, tmp_path):
    st = base.copy()
    train(st, crops[:2], pred0[:2, :, :2] + SHIFT, np.ones((2, 33)), epochs=2, batch_size=2, mode="head",
          augment=False, lr=3e-2)
    p = tmp_path / "student.pt"
    digest = st.save(p)
    assert digest == hashlib.sha256(p.read_bytes()).hexdigest()
    back = Student.load(p, sha256=digest)
    assert np.abs(back.predict(crops[:2]) - st.predict(crops[:2])).max() < 1e-5
    assert np.abs(back.predict(crops[:2]) - pred0[:2]).max() > 0.1     # it is the trained one
    with pytest.raises(UserError, match="sha256"):
        Student.load(p, sha256="0" * 64)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="junk.pt"):
        Student.load(junk)


def test_bad_training_input(base, crops):
    st = base.copy()
    with pytest.raises(ValueError, match="weights"):
        train(st, crops[:1], np.zeros((1, 33, 2)), -np.ones((1, 33)), epochs=1)
    with pytest.raises(ValueError, match="targets_xy"):
        train(st, crops[:1], np.zeros((1, 17, 2)), np.ones((1, 33)), epochs=1)
    with pytest.raises(ValueError, match="mode"):
        train(st, crops[:1], np.zeros((1, 33, 2)), np.ones((1, 33)), epochs=1, mode="tail")
