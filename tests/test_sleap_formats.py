"""SLEAP / DeepLabCut / Label Studio / NWB through sleap-io: what we write is what sleap-io reads back.

Two real projects: the demo photos and video pre-filled by the real model with the demo ground
truth imported as verified on top (verified and predicted people, occluded points, confidences,
video frames with track ids), and 100 pose-gt-dev photos with their ground truth imported as
verified. Each format is exported, loaded with sleap-io's own reader and compared point by point,
then imported into a fresh project of the same media and compared again.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    import sleap_io as sio
except ImportError:
    sio = None
needs_sio = pytest.mark.skipif(sio is None, reason="the 'sleap' extra is not installed")

from annotator.core import skeleton as sk
from annotator.core.importing import import_frames
from annotator.core.model import VISIBLE
from annotator.core.project import Project
from exporters import sleap as xs
from exporters.coco import read_coco

from tests.conftest import GT_DEV, REPO
from tests.gui_project import make_project
from tests.test_cli import assert_one_line_error, run

DEMO = REPO / "projects" / "demo"
OUT = {"slp": "out.slp", "dlc": "dlc", "labelstudio": "out.json", "nwb": "out.nwb"}


def _source(proj):
    def source(f):
        row = proj.store.image(f.id)
        return proj.source_path(row) if row.kind == "image" else proj.load_rgb(row)
    return source


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo media pre-filled (1 worker) with the demo ground truth merged in as verified."""
    root = tmp_path_factory.mktemp("demo")
    proj = make_project(root, video=True)
    _, frames = read_coco(DEMO / "ground_truth.json")
    s = import_frames(proj, frames, "verified")
    assert s["images_matched"] == 4
    yield proj
    proj.close()


@pytest.fixture(scope="module")
def gt100(tmp_path_factory, gt_dev):
    """100 pose-gt-dev photos (with and without people), their ground truth imported as verified."""
    root = tmp_path_factory.mktemp("gt100")
    ims = gt_dev["images"][:100]
    proj, _ = Project.create(root / "p", [GT_DEV / "images" / im["file_name"] for im in ims])
    _, frames = read_coco(GT_DEV / "annotations.json")
    s = import_frames(proj, [f for f in frames if f.file_name in {im["file_name"] for im in ims}], "verified")
    assert s["images_matched"] == 100
    yield proj
    proj.close()


def _export(proj, fmt, out: Path):
    return xs.write(proj.store.iter_frames(), fmt, out, xs.media_path(proj.root), _source(proj))


def _sio_load(fmt, out: Path) -> list:
    """sleap-io's own reader (all labeled frames of all DLC CSVs)."""
    if fmt == "dlc":
        return [lf for csv in sorted(out.glob("labeled-data/*/CollectedData_*.csv"))
                for lf in sio.load_dlc(str(csv), config=False).labeled_frames]
    labels = {"slp": sio.load_slp, "labelstudio": sio.load_labelstudio, "nwb": sio.load_nwb}[fmt](str(out))
    if fmt == "slp":
        sk_ = labels.skeletons[0]
        assert sk_.node_names == list(sk.NAMES)
        assert {(sk_.node_names.index(e.source.name), sk_.node_names.index(e.destination.name))
                for e in sk_.edges} == set(sk.EDGES)
        assert {frozenset(sk_.node_names.index(n.name) for n in sym.nodes) for sym in sk_.symmetries} \
            == {frozenset(p) for p in sk.LR_PAIRS}
    return labels.labeled_frames


def _key(fmt, lf, proj) -> tuple[str, int]:
    """(media path as the project names it, frame index) of a sleap-io labeled frame."""
    fn = lf.video.filename
    if fmt == "dlc":                         # labeled-data/<video or "photos">/img<index>.png
        img = Path(fn[lf.frame_idx] if isinstance(fn, list) else fn)
        name = json.loads((img.parent / xs.NAMES).read_text())[img.name]
        if img.parent.name == xs.PHOTOS:
            return proj.rel(name), 0
        media, frame = name.rsplit("#", 1)
        assert img.parent.name == Path(media).stem and int(re.findall(r"\d+", img.stem)[-1]) == int(frame)
        return proj.rel(media), int(frame)
    if isinstance(fn, list):
        fn, idx = fn[lf.frame_idx], 0
    else:
        idx = lf.frame_idx
    return proj.rel(fn), idx


def _by_name(inst, field="xy"):
    """An instance's field in our point order (DLC's reader sorts the nodes by name, Label Studio's
    knows only the nodes it saw: the others are NaN / not visible)."""
    names = inst.skeleton.node_names
    vals = np.asarray(inst.points[field]) if field != "xy" else inst.numpy(invisible_as_nan=False)
    out = np.full((sk.N, 2), np.nan) if field == "xy" else np.zeros(sk.N, vals.dtype)
    for i, n in enumerate(sk.NAMES):
        if n in names:
            out[i] = vals[names.index(n)]
    return out


def _ours(proj) -> dict:
    out = {}
    for f in proj.store.iter_frames():
        if f.video is None:
            out[(f.file_name, 0)] = f
        else:
            out[(f.video, f.frame_index)] = f
    return out


@needs_sio
@pytest.mark.parametrize("fmt", xs.WRITE_FORMATS)
@pytest.mark.parametrize("which", ["demo", pytest.param("gt100", marks=pytest.mark.needs_data)])
def test_sleap_io_reads_back_what_we_wrote(request, tmp_path, which, fmt):
    proj = request.getfixturevalue(which)
    out = tmp_path / OUT[fmt]
    s = _export(proj, fmt, out)
    ours = _ours(proj)
    lfs = _sio_load(fmt, out)
    got = {_key(fmt, lf, proj): lf for lf in lfs}
    with_people = {k for k, f in ours.items() if any(p.labelled.any() for p in f.persons)}
    assert with_people and with_people <= set(got), sorted(with_people - set(got))[:3]
    assert s["people"] == sum(1 for f in ours.values() for p in f.persons if p.labelled.any())
    if which == "demo":
        assert any(k[1] > 0 for k in with_people), "no video frame past 0 in the demo project"
    if fmt == "labelstudio":    # percentages of the real image size, as Label Studio draws them
        for t in json.loads(out.read_text()):
            v = t["meta"]["video"]
            f = ours[(proj.rel(v["filename"]), v["frame_idx"])]
            assert {(r["original_width"], r["original_height"]) for r in t["annotations"][0]["result"]
                    if r["type"] == "keypointlabels"} <= {(f.width, f.height)}
    n_points = n_occluded = n_pred = 0
    for key in with_people:
        persons = [p for p in ours[key].persons if p.labelled.any()]
        insts = got[key].instances
        assert len(insts) == len(persons), key
        # DLC orders individuals by column, NWB by its own instance ids: pair people by position
        for p in persons:
            lab = p.labelled
            dists = [np.abs(_by_name(i)[lab] - p.xy[lab]).max() for i in insts]
            inst = insts[int(np.nanargmin(dists))]
            xy = _by_name(inst)
            np.testing.assert_allclose(xy[lab], p.xy[lab], atol=0.01)
            visible = _by_name(inst, "visible")
            assert (np.isnan(xy[~lab]).all(1) | ~visible[~lab]).all(), key
            n_points += int(lab.sum())
            if fmt == "slp":             # occluded = placed but not visible, as in SLEAP
                assert (visible == (p.vis == VISIBLE)).all(), key
                n_occluded += int((lab & ~visible).sum())
                predicted = isinstance(inst, sio.PredictedInstance)
                assert predicted == (not p.verified.any()), key
                if predicted:
                    n_pred += 1
                    np.testing.assert_allclose(_by_name(inst, "score")[lab], np.nan_to_num(p.conf[lab]), atol=1e-6)
                    assert inst.score == pytest.approx(p.score or 0.0)
                else:
                    assert (_by_name(inst, "complete") == (p.verified & lab)).all(), key
                if p.track_id is not None:
                    assert inst.track is not None and inst.track.name == str(p.track_id)
            else:                       # no occluded state: every labelled point is placed
                assert visible[lab].all(), key
    assert n_points > 0          # points were compared (each to 0.01 px above); with_people <= got checked first
    if fmt == "slp" and which == "demo":
        assert n_occluded > 0 and n_pred > 0


def _people(proj) -> dict:
    out = {}
    for f in proj.store.iter_frames():
        out[Path(f.file_name).name] = sorted(
            (tuple(np.round(p.xy[p.labelled], 2).ravel()), tuple(np.flatnonzero(p.labelled)),
             tuple(p.vis[p.labelled]), tuple(p.verified[p.labelled])) for p in f.persons if p.labelled.any())
    return out


@needs_sio
@pytest.mark.parametrize("fmt", xs.READ_FORMATS)
@pytest.mark.parametrize("which", ["demo", pytest.param("gt100", marks=pytest.mark.needs_data)])
def test_import_into_a_fresh_project_gives_the_same_points(request, tmp_path, which, fmt):
    proj = request.getfixturevalue(which)
    out = tmp_path / OUT[fmt]
    _export(proj, fmt, out)
    fresh, _ = Project.create(tmp_path / "fresh", [proj.source_path(r) for r in proj.store.images()
                                                   if r.kind == "image"] +
                              sorted({proj.source_path(r) for r in proj.store.images() if r.kind == "video"}))
    with fresh:
        _, frames = xs.read(out, fmt, fresh.rel)
        s = import_frames(fresh, frames, "verified")
        assert s["unknown_images"] == []
        a, b = _people(proj), _people(fresh)
    assert set(a) == set(b)
    for name in a:
        if fmt == "slp":            # everything survives: points, occluded vs visible, verified vs predicted
            assert a[name] == b[name], name
        else:                       # points survive; occluded points come back visible, all as --as says
            assert [x[:2] for x in a[name]] == [x[:2] for x in b[name]], name
            assert all(set(x[2]) == {VISIBLE} and all(x[3]) for x in b[name]), name


@needs_sio
def test_a_dlc_folder_without_our_names_matches_video_frames_by_index(demo, tmp_path):
    """As DeepLabCut extracts them: labeled-data/<video stem>/img<frame>.png."""
    out = tmp_path / "dlc"
    _export(demo, "dlc", out)
    csv = next(out.glob("labeled-data/mmpose_demo/CollectedData_*.csv"))
    (csv.parent / xs.NAMES).unlink()
    _, frames = xs.read(csv, "dlc")
    assert sorted(f.file_name for f in frames) == [f"mmpose_demo_{i:06d}.jpg" for i in range(5)]
    ours = {Path(f.file_name).name: f for f in demo.store.iter_frames() if f.video}
    for f in frames:
        p, q = ours[f"mmpose_demo.mp4#{f.file_name[-10:-4]}"].persons[0], f.persons[0]
        np.testing.assert_allclose(q.xy[p.labelled], p.xy[p.labelled], atol=0.01)


@needs_sio
def test_slp_import_keeps_confidence_and_tracks(demo, tmp_path):
    out = tmp_path / "x.slp"
    _export(demo, "slp", out)
    _, frames = xs.read(out, "slp", demo.rel)
    back = {f.file_name: f for f in frames}
    n = 0
    for f in demo.store.iter_frames():
        mine = [p for p in f.persons if p.labelled.any()]
        if not mine:
            continue
        assert len(back[f.file_name].persons) == len(mine), f.file_name       # nobody dropped or added
        for p, q in zip(mine, back[f.file_name].persons):
            assert q.track_id == p.track_id
            if not p.verified.any():
                np.testing.assert_allclose(q.conf[p.labelled], p.conf[p.labelled], atol=1e-6)
                n += 1
    assert n > 0


@needs_sio
def test_the_demo_through_every_format_on_the_command_line(demo, tmp_path):
    """Real CLI in a subprocess: export each format, import each readable one into a fresh project."""
    for fmt in xs.WRITE_FORMATS:
        rc, out, err = run("export", demo.root, "--format", fmt, "--out", tmp_path / OUT[fmt])
        assert rc == 0 and "wrote" in out, err
    for fmt in xs.READ_FORMATS:
        root = tmp_path / f"fresh-{fmt}"
        media = sorted({demo.source_path(r) for r in demo.store.images()})
        rc, _, err = run("init", root, "--images", *media)
        assert rc == 0, err
        rc, out, err = run("import", root, tmp_path / OUT[fmt], "--format", fmt)
        assert rc == 0, err
        m = re.search(r"(\d+) images matched, \d+ people updated, (\d+) added", out)
        n_people = sum(1 for f in demo.store.iter_frames() for p in f.persons if p.labelled.any())
        assert m and int(m.group(2)) == n_people, out
        assert "not in the project" not in out, out


def test_without_the_extra_one_line_names_the_install_command(demo, tmp_path):
    stub = tmp_path / "stub" / "sleap_io"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError(\"No module named 'sleap_io'\")\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path / 'stub'}{os.pathsep}{REPO}")
    for args in (["export", demo.root, "--format", "slp", "--out", tmp_path / "x.slp"],
                 ["import", demo.root, tmp_path / "x.json", "--format", "labelstudio"]):
        r = subprocess.run([sys.executable, "-m", "annotator", *map(str, args)], capture_output=True, text=True,
                           env=env, timeout=120)
        assert_one_line_error(r.returncode, r.stderr, xs.INSTALL)
    assert not (tmp_path / "x.slp").exists()


@pytest.mark.parametrize("fmt,text", [("slp", "not an hdf5 file"), ("labelstudio", "{not json"),
                                      ("dlc", "a,b\n1,2\n")])
@needs_sio
def test_bad_files_give_one_line(demo, tmp_path, fmt, text):
    bad = tmp_path / ("bad.slp" if fmt == "slp" else "bad.json" if fmt == "labelstudio" else "bad.csv")
    bad.write_text(text)
    before = demo.store.counts()
    rc, _, err = run("import", demo.root, bad, "--format", fmt)
    assert_one_line_error(rc, err, str(bad.name))
    assert demo.store.counts() == before


@needs_sio
def test_a_foreign_skeleton_is_refused(demo, tmp_path):
    skel = sio.Skeleton(["head", "thorax", "abdomen"])
    v = sio.Video(filename=str(demo.source_path(demo.store.images()[0])), open_backend=False)
    inst = sio.Instance.from_numpy(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), skeleton=skel)
    path = tmp_path / "fly.slp"
    sio.save_slp(sio.Labels([sio.LabeledFrame(v, 0, [inst])]), str(path))
    rc, _, err = run("import", demo.root, path, "--format", "slp")
    assert_one_line_error(rc, err, "fly.slp", "no BlazePose point names")


@needs_sio
def test_nwb_of_predictions_keeps_point_scores(tmp_path):
    """Only model predictions: ndx-pose's PoseEstimation, point confidences kept (frames without people
    are left out: sleap-io's writer fails on them). Photos only: sleap-io 0.9's NWB reader does not
    give back a video's people when a dozen tracks come and go (docs/formats.md)."""
    proj = make_project(tmp_path / "pred", video=False)
    with proj:
        out = tmp_path / "pred.nwb"
        _export(proj, "nwb", out)
        got = {_key("nwb", lf, proj): lf for lf in sio.load_nwb(str(out)).labeled_frames}
        ours = {k: f for k, f in _ours(proj).items() if f.persons}
        assert set(got) == set(ours) and any(len(f.persons) > 1 for f in ours.values())
        for key, f in ours.items():
            insts = list(got[key].instances)
            assert len(insts) == len(f.persons)
            # NWB gives a frame's people back in track order: pair them up, closest pairs first
            cost = sorted((float(np.nanmax(np.abs(_by_name(i)[p.labelled] - p.xy[p.labelled]))), a, b)
                          for a, p in enumerate(f.persons) for b, i in enumerate(insts))
            pair: dict[int, int] = {}
            for _, a, b in cost:
                if a not in pair and b not in pair.values():
                    pair[a] = b
            for a, p in enumerate(f.persons):
                inst = insts[pair[a]]
                assert isinstance(inst, sio.PredictedInstance)
                lab = p.labelled
                np.testing.assert_allclose(_by_name(inst)[lab], p.xy[lab], atol=0.01)
                np.testing.assert_allclose(_by_name(inst, "score")[lab], p.conf[lab], atol=1e-5)


@needs_sio
def test_verified_only_leaves_out_predicted_points(demo, tmp_path):
    out = tmp_path / "v.slp"
    s = xs.write(demo.store.iter_frames(), "slp", out, xs.media_path(demo.root), verified_only=True)
    lfs = sio.load_slp(str(out)).labeled_frames
    n_verified = sum(int(p.verified.sum()) for f in demo.store.iter_frames() for p in f.persons)
    got = [i for lf in lfs for i in lf.instances]
    assert s["people"] == len(got) and got and not any(isinstance(i, sio.PredictedInstance) for i in got)
    placed = [~np.isnan(i.numpy(invisible_as_nan=False)).any(1) for i in got]
    assert sum(int(m.sum()) for m in placed) == n_verified
    assert all(i.points["complete"][m].all() for i, m in zip(got, placed))
