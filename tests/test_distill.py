"""Distillation rounds on a small real project: real photos, real MediaPipe, real training, real SQLite."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from annotator.distill import rounds as D
from annotator.distill import registry as reg
from annotator.cli.base import main
from annotator.core.errors import UserError
from annotator.core.project import Project

from tests.conftest import GT_DEV, gt_images

pytestmark = pytest.mark.needs_data

FAST = dict(mode="head", epochs=4, copies=1, bootstrap=300, gold_fraction=0.35)


def _points(store, verified_only: bool = False) -> list[tuple]:
    """Every stored point, byte for byte (the suspicion column is derived data and may change)."""
    sql = ("SELECT p.person_id, p.idx, p.x, p.y, p.vis, p.conf, p.verified, p.source FROM points p"
           " JOIN persons q ON q.id=p.person_id WHERE q.deleted=0"
           + (" AND p.verified=1" if verified_only else "") + " ORDER BY p.person_id, p.idx")
    return store.db.execute(sql).fetchall()


@pytest.fixture(scope="module")
def base_project(tmp_path_factory, gt_dev):
    """13 clear single-person photos, pre-filled; 11 get their COCO-17 ground truth as verified."""
    from exporters.coco import read_coco

    from annotator.core.importing import import_frames
    from annotator.prefill.run import prefill
    ims = gt_images(gt_dev, "coco_mini", 1, 13)
    assert len(ims) == 13
    root = tmp_path_factory.mktemp("distill") / "proj"
    proj, _ = Project.create(root, [GT_DEV / "images" / im["file_name"] for im in ims])
    # the student is a copy of MediaPipe's Full network, so "an untrained student gives the base
    # network's points" holds when the project's landmark model is Full too (the default is Heavy)
    proj.settings["prefill"]["model_complexity"] = 1
    proj.save_settings()
    prefill(proj, workers=1, progress=False)
    _, frames = read_coco(GT_DEV / "annotations.json")
    keep = {im["file_name"] for im in ims[:11]}
    import_frames(proj, [f for f in frames if f.file_name in keep], "verified", source="import:gt")
    proj.close()
    return root


@pytest.fixture
def project(base_project, tmp_path):
    dst = tmp_path / "proj"
    shutil.copytree(base_project, dst)
    with Project.open(dst) as p:
        yield p


def test_round_end_to_end(project):
    st = project.store
    verified_before = _points(st, verified_only=True)
    everything_before = _points(st)
    row = D.run_round(project, D.Config(**FAST))
    assert row["k"] == 1 and row["status"] in ("accepted", "rejected") and row["stage"] == "done"
    rec = row["record"]
    # what a round records
    c = rec["counts"]
    assert c["people"] > 0 and c["verified_points"] > 0 and c["pseudo_candidates"] > 0
    assert c["pseudo_accepted"] + c["pseudo_rejected_conf"] + c["pseudo_rejected_spread"] == c["pseudo_candidates"]
    assert set(rec["thresholds"]) >= {"conf", "max_spread", "pseudo_weight"}
    assert rec["curve"][0]["epoch"] == 0 and len([r for r in rec["curve"] if "loss" in r]) == FAST["epochs"] + 1
    for key in ("gold_before", "gold_after", "prefill_before", "prefill_after"):
        g = rec[key]
        assert 0 <= g["oks_ap"] <= 1 and 0 <= g["pck_0_05"] <= 1 and g["per_joint_error_px"], key
    assert rec["gold_before"]["n_gt_people"] == len(rec["gold_image_ids"])     # one person per photo
    assert rec["seconds"]["total"] > 0 and rec["peak_rss_mb"] > 0 and row["reason"]
    # gold never trains
    assert rec["gold_image_ids"] and rec["train_image_ids"]
    assert not set(rec["gold_image_ids"]) & set(rec["train_image_ids"])
    # the model file is there with its hash
    from annotator.prefill.student import sha256_file
    mfile = Path(project.root) / row["model_path"]
    assert sha256_file(mfile) == row["model_sha256"]
    # verified points never change; a rejected round changes nothing at all
    assert _points(st, verified_only=True) == verified_before
    if row["status"] == "rejected":
        assert _points(st) == everything_before
    else:
        srcs = {r[7] for r in _points(st) if not r[6] and r[4] > 0}
        assert srcs == {"round 1"}
    # the split is frozen: a second look assigns nothing new and changes nothing
    assert D.frozen_split(project, D.Config(gold_fraction=0.9)) == reg.split(st)


def test_scrambled_round_is_rejected_and_changes_nothing(project):
    before = _points(project.store)
    cfg = D.Config(**{**FAST, "epochs": 20, "lr": 1e-3, "bias_lr": 0.5}, scramble_labels=True)
    row = D.run_round(project, cfg)
    rec = row["record"]
    assert row["status"] == "rejected"
    assert "worse" in row["reason"], row["reason"]
    # it really was a worse model, and the guard saw it on gold
    assert rec["gold_after"]["pck_0_05"] < rec["gold_before"]["pck_0_05"]
    assert _points(project.store) == before
    with pytest.raises(UserError, match="not accepted"):
        reg.resolve_model(project, "round-1")
    with pytest.raises(UserError, match="no accepted"):
        reg.resolve_model(project, "latest")


def _accepted_base_round(project, k: int = 1) -> str:
    """Register MediaPipe's own weights as an accepted round (what the runtime must reproduce)."""
    from annotator.prefill.student import Student
    path = reg.model_file(project, k)
    sha = Student(threads=2).save(path)
    reg.start_round(project.store, k, "mediapipe", "head", {})
    reg.update_round(project.store, k, status="accepted", stage="done", model_path=str(path.relative_to(project.root)),
                     model_sha256=sha)
    return f"{path}#sha256={sha}"


def test_repredict_touches_only_unverified_points(project):
    st = project.store
    _accepted_base_round(project)
    verified_before = _points(st, verified_only=True)
    unverified_before = {(r[0], r[1]): r for r in _points(st) if not r[6]}
    est = D.estimator_for(project, "round 1")
    c = D.repredict_all(project, est, "round 1")
    assert c["people"] > 0
    assert _points(st, verified_only=True) == verified_before
    after = {(r[0], r[1]): r for r in _points(st) if not r[6]}
    assert set(after) == set(unverified_before)
    # people with points get the student's guess; imported empty annotations (no point labelled) have no ROI
    empty = {q.id for i in st.images() for q in st.load_frame(i.id).persons if not q.labelled.any()}
    assert {r[7] for k, r in after.items() if k[0] not in empty} == {"round 1"}
    assert all(after[k] == unverified_before[k] for k in after if k[0] in empty)
    # resumable: a second pass finds everybody done
    again = D.repredict_all(project, est, "round 1")
    assert again["people"] == 0 and again["skipped_done"] == c["people"]


def test_prefill_with_a_round_uses_the_student(project):
    st = project.store
    _accepted_base_round(project)
    free = [r.id for r in st.images() if not st.has_verified(r.id)]
    assert len(free) == 2
    mp = {i: st.load_frame(i).persons for i in free}
    assert main(["prefill", str(project.root), "--model", "round-1", "--force", "--workers", "1", "--quiet"]) == 0
    project.store.db.execute("SELECT 1")   # same connection still fine
    for i in free:
        new = st.load_frame(i).persons
        assert len(new) == len(mp[i]) >= 1
        for a, b in zip(new, mp[i]):
            assert set(a.source) == {"round 1"}
            # an untrained student is MediaPipe (refinement offset included): same points
            assert np.abs(a.xy - b.xy).max() < 1.0
    # the default ('auto') is the latest accepted round; 'mediapipe' forces the base network
    assert main(["prefill", str(project.root), "--force", "--workers", "1", "--quiet", "--no-tta"]) == 0
    assert all(set(p.source) == {"round 1"} for i in free for p in st.load_frame(i).persons)
    assert main(["prefill", str(project.root), "--model", "mediapipe", "--force", "--workers", "1",
                 "--quiet", "--no-tta"]) == 0
    assert all("blazepose-full/" in next(iter(set(p.source))) for i in free for p in st.load_frame(i).persons)
    with pytest.raises(UserError, match="no distillation round 7"):
        reg.resolve_model(project, "round-7")
    with pytest.raises(UserError, match="expected"):
        reg.resolve_model(project, "best")


def test_onnx_export_matches_torch(project, tmp_path):
    import onnxruntime as ort
    import torch

    from annotator.prefill.student_runtime import RUN_OUTPUTS, load_student, runtime_net
    spec = _accepted_base_round(project)
    out = tmp_path / "round1.onnx"
    assert main(["rounds", str(project.root), "--export-onnx", "1", str(out)]) == 0
    img = project.store.images()[0]
    est = D.estimator_for(project, "mediapipe")
    from annotator.distill.rounds import person_roi
    p = project.store.load_frame(img.id).persons[0]
    crop, _ = est.crop(project.load_rgb(img.id), person_roi(p))
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input_1": crop[None]})
    with torch.inference_mode():
        ref = runtime_net(load_student(spec), RUN_OUTPUTS)(torch.from_numpy(crop[None]))
    for name, g, r in zip(RUN_OUTPUTS, got, ref):
        assert np.abs(g - r.numpy()).max() < 0.02, name


def test_rounds_listing_and_report(project, tmp_path, capsys):
    assert main(["rounds", str(project.root)]) == 0
    assert "no distillation rounds" in capsys.readouterr().out
    D.run_round(project, D.Config(**FAST))
    rep = tmp_path / "report"
    assert main(["rounds", str(project.root), "--report", str(rep)]) == 0
    out = capsys.readouterr().out
    assert "round 1:" in out and "gold AP" in out
    assert (rep / "gold_metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 1 |" in (rep / "rounds.md").read_text()


def test_interrupted_round_resumes(project, monkeypatch):
    real_train = D.train_student

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(D, "train_student", boom)
    with pytest.raises(KeyboardInterrupt):
        D.run_round(project, D.Config(**FAST))
    row = reg.get_round(project.store, 1)
    assert row["status"] == "interrupted" and row["stage"] == "data"
    assert (Path(project.root) / "models" / "round-1.data.npz").exists()
    # the resumed round reuses the saved pseudo-labels: collecting again would fail here
    monkeypatch.setattr(D, "train_student", real_train)
    monkeypatch.setattr(D, "collect_data", lambda *a, **k: pytest.fail("data collected twice"))
    row = D.run_round(project, D.Config(**FAST))
    assert row["k"] == 1 and row["status"] in ("accepted", "rejected") and row["stage"] == "done"
    assert reg.next_k(project.store) == 2
    assert not (Path(project.root) / "models" / "round-1.data.npz").exists()


def test_bad_student_files(project, tmp_path, monkeypatch):
    from annotator.prefill.student_runtime import attach_student
    est = D.estimator_for(project, "mediapipe")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(UserError, match="junk.pt"):
        attach_student(est, junk)
    with pytest.raises(UserError, match="no such"):
        attach_student(est, tmp_path / "missing.pt")
    spec = _accepted_base_round(project)
    with pytest.raises(UserError, match="sha256"):
        attach_student(est, spec.split("#")[0] + "#sha256=" + "0" * 64)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(UserError, match=r"pip install \.\[train\]"):
        attach_student(est, spec)


def test_gold_roi_ignores_unverified_points(project):
    """A round re-predicts a gold person's unverified points; the gold ROI must not follow them."""
    st = project.store
    p = next(q for i in st.images() for q in st.load_frame(i.id).persons
             if q.verified.any() and (~q.verified & q.labelled).any())
    roi = D.person_roi(p, verified_only=True)
    moved = p.copy()
    moved.xy[~moved.verified] += 300.0
    assert D.person_roi(moved, verified_only=True) == roi
    assert D.person_roi(moved) != D.person_roi(p)


@pytest.mark.slow
def test_round_on_all_of_pose_gt_dev(tmp_path, gt_dev):
    """The measurement of the issue: every pose-gt-dev photo, COCO-17 imported as verified, one round."""
    from exporters.coco import read_coco

    from annotator.core.importing import import_frames
    from annotator.prefill.run import prefill
    proj, _ = Project.create(tmp_path / "p", [GT_DEV / "images"])
    prefill(proj, workers=2, progress=False)
    _, frames = read_coco(GT_DEV / "annotations.json")
    import_frames(proj, frames, "verified", source="import:gt")
    verified = _points(proj.store, verified_only=True)
    row = D.run_round(proj, D.Config())
    rec = row["record"]
    assert row["status"] in ("accepted", "rejected") and rec["counts"]["people"] > 50
    assert rec["gold_before"]["n_gt_people"] > 50
    assert _points(proj.store, verified_only=True) == verified
    if row["status"] == "accepted":
        assert rec["gold_after"]["oks_ap"] >= rec["gold_before"]["oks_ap"]
        assert rec["gold_after"]["pck_0_05"] >= rec["gold_before"]["pck_0_05"]
    proj.close()


def test_runtime_keeps_mediapipe_gate_for_a_finetuned_backbone(project):
    """A 'full' round changes the backbone; which crops count as people (pose flag, heatmaps) and the
    refinement offset must still be MediaPipe's, only the points are the student's."""
    import torch

    from annotator.prefill.student import Student
    from annotator.prefill.student_runtime import RUN_OUTPUTS, backbone_is_base, runtime_net
    img = project.store.images()[0]
    p = project.store.load_frame(img.id).persons[0]
    crop, _ = D.estimator_for(project, "mediapipe").crop(project.load_rgb(img.id), D.person_roi(p))
    x = torch.from_numpy(crop[None])
    s = Student(threads=2)
    assert backbone_is_base(s)
    head = {id(q) for q in s.module.head_parameters("landmarks")}
    first = next(q for q in s.module.parameters() if id(q) not in head and q.dim() == 4)
    with torch.no_grad():
        first.mul_(1.5)
    assert not backbone_is_base(s)
    with torch.inference_mode():
        lm, base_lm, flag, hm = runtime_net(s, RUN_OUTPUTS)(x)
        mp = Student(threads=2).module(x, ("landmarks", "pose_flag", "heatmap"))
    assert torch.allclose(flag, mp["pose_flag"]) and torch.allclose(hm, mp["heatmap"])
    assert torch.allclose(base_lm, mp["landmarks"])
    assert (lm - mp["landmarks"]).abs().max() > 0.5      # the student's own points did change


def test_distill_without_verified_points_is_a_one_line_error(tmp_path, capsys):
    from annotator.prefill.run import prefill
    ims = sorted((GT_DEV / "images" / "coco_mini").glob("*.jpg"))[:2]
    proj, _ = Project.create(tmp_path / "p", ims)
    prefill(proj, workers=1, progress=False)
    before = _points(proj.store)
    proj.close()
    assert main(["distill", str(tmp_path / "p"), "--mode", "head", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no verified points" in err and len(err.strip().splitlines()) == 1
    with Project.open(tmp_path / "p") as p:
        assert reg.rounds(p.store) == [] and _points(p.store) == before


def test_full_mode_round_keeps_the_best_epoch(project):
    verified = _points(project.store, verified_only=True)
    row = D.run_round(project, D.Config(mode="full", epochs=2, copies=1, bootstrap=300, gold_fraction=0.35,
                                        val_fraction=0.5))
    rec = row["record"]
    assert row["mode"] == "full" and row["status"] in ("accepted", "rejected")
    assert rec["train"]["val_crops"] > 0
    curve = rec["curve"]
    assert curve[0]["epoch"] == 0 and curve[0]["val"] > 0
    assert [c["epoch"] for c in curve[1:-1]] == [1, 2]
    best = curve[-1]
    assert best["best_val"] == min(c["val"] for c in curve[:-1])
    assert _points(project.store, verified_only=True) == verified
