"""SLEAP (.slp), DeepLabCut, Label Studio and NWB (ndx-pose) through sleap-io.

One converter between our Frame/Person and sleap-io's Labels, so each format
is sleap-io's own reader/writer rather than code kept here. The mapping:
the 33-node skeleton with its edges and left/right symmetries; a person with
any verified point is a user Instance (per-point `complete` = verified), one
with none is a PredictedInstance (point scores = confidence, instance score =
person score); a photo is a one-frame Video of its file, a video frame is
(video, frame index); track ids are Tracks. sleap-io is an optional extra.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import quote, unquote

import numpy as np

from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.media import export_name, kind_of, load_image
from annotator.core.model import NOT_LABELLED, OCCLUDED, VISIBLE, Frame, Person

WRITE_FORMATS = ("slp", "dlc", "labelstudio", "nwb")
READ_FORMATS = ("slp", "dlc", "labelstudio")
INSTALL = "pip install -e '.[sleap]'"
DLC_SCORER = "pose-annotator"
PHOTOS = "photos"                       # the DeepLabCut folder of all photos
NAMES = "pose-annotator-names.json"     # in each folder: which photo or video frame each PNG is


def sio():
    """sleap_io, or the one line that says how to get it."""
    try:
        import sleap_io
    except ImportError:
        raise UserError(f"the SLEAP/DeepLabCut/Label Studio/NWB formats need sleap-io: {INSTALL}") from None
    return sleap_io


def media_path(root: Path) -> Callable[[Frame], str]:
    """video_path for a project at root: the absolute photo or video file (what SLEAP and NWB open)."""
    root = Path(root).resolve()
    return lambda f: os.path.normpath(root / (f.video or f.file_name))


def skeleton():
    s = sio()
    return s.Skeleton(nodes=list(sk.NAMES), edges=[(sk.NAMES[a], sk.NAMES[b]) for a, b in sk.EDGES],
                      symmetries=[(sk.NAMES[a], sk.NAMES[b]) for a, b in sk.LR_PAIRS], name="blazepose33")


def _instance(p: Person, skel, track, verified_only: bool, occluded_visible: bool):
    """occluded_visible: formats without a visibility flag keep occluded points as labelled points."""
    s = sio()
    vis = np.where(p.verified, p.vis, NOT_LABELLED) if verified_only else p.vis
    lab = vis > NOT_LABELLED
    if not lab.any():           # nothing placed (e.g. a crowd box from COCO): no instance
        return None
    xy = np.where(lab[:, None], p.xy, np.nan)
    visible = lab if occluded_visible else vis == VISIBLE
    if p.verified.any():
        inst = s.Instance.from_numpy(xy, skeleton=skel, track=track)
        inst.points["complete"] = p.verified & lab
    else:
        conf = np.where(np.isnan(p.conf), 0.0, p.conf)
        inst = s.PredictedInstance.from_numpy(np.column_stack([xy, conf]), skeleton=skel, track=track,
                                              score=0.0 if p.score is None else float(p.score))
    inst.points["visible"] = visible
    return inst


def to_labels(frames: Iterable[Frame], video_path: Callable[[Frame], str] | None = None,
              verified_only: bool = False, occluded_visible: bool = False, slot_tracks: bool = False,
              untracked_slots: bool = False,
              open_videos: bool = False, frame_of: Callable[[Frame], int] | None = None):
    """Frames -> sleap_io.Labels.

    video_path(frame): the file a photo's or a video frame's Video points at (default: the
    project-relative name). slot_tracks: the k-th person of every frame is track "person<k+1>"
    (DeepLabCut's individuals) instead of our track ids. open_videos: open the media (NWB's writer
    reads frame counts and sizes from them); otherwise the sizes come from the frames. frame_of(frame):
    its index in its Video (default: the video frame's index, 0 for a photo).
    """
    s = sio()
    skel = skeleton()
    video_path = video_path or (lambda f: f.video or f.file_name)
    videos: dict[str, object] = {}
    tracks: dict[str, object] = {}
    lfs = []
    for f in frames:
        path = video_path(f)
        v = videos.get(path)
        idx = frame_of(f) if frame_of else f.frame_index if f.video is not None else 0
        if v is None:
            v = videos[path] = s.Video(filename=path, open_backend=open_videos,
                                       backend_metadata={"shape": (idx + 1, f.height, f.width, 3)})
        elif idx >= v.backend_metadata["shape"][0]:
            v.backend_metadata["shape"] = (idx + 1, f.height, f.width, 3)
        insts = []
        for k, p in enumerate(f.persons):
            name = f"person{k + 1}" if slot_tracks else str(p.track_id) if p.track_id is not None \
                else f"person{k + 1}" if untracked_slots and len(f.persons) > 1 else None
            track = None if name is None else tracks.setdefault(name, s.Track(name=name))
            inst = _instance(p, skel, track, verified_only, occluded_visible)
            if inst is not None:
                insts.append(inst)
        lfs.append(s.LabeledFrame(video=v, frame_idx=idx, instances=insts))
    used = {inst.track.name for lf in lfs for inst in lf.instances if inst.track is not None}
    return s.Labels(labeled_frames=lfs, videos=list(videos.values()), skeletons=[skel],
                    tracks=[t for n, t in tracks.items() if n in used])


def _person(inst, skel_names: list[str], occluded: bool) -> Person:
    """One sleap-io instance -> Person on our 33 indices (nodes matched by name).

    occluded: a placed point that is not visible is occluded (SLEAP); otherwise it is not labelled
    (Label Studio's reader leaves unplaced points at 0, 0, not visible)."""
    s = sio()
    p = Person(None, None)
    pts = inst.points
    predicted = isinstance(inst, s.PredictedInstance)
    for j, name in enumerate(skel_names):
        i = sk.INDEX.get(name)
        if i is None:
            continue
        x, y = pts["xy"][j]
        if np.isnan(x) or np.isnan(y) or not (occluded or pts["visible"][j]):
            continue
        p.xy[i] = (x, y)
        p.vis[i] = VISIBLE if pts["visible"][j] else OCCLUDED
        if predicted:
            p.conf[i] = float(pts["score"][j])
        else:
            p.verified[i] = bool(pts["complete"][j])
    if predicted:
        p.score = float(inst.score)
        p.meta["verified_known"] = True             # a prediction: nothing in it was verified
    elif p.verified.any():
        p.meta["verified_known"] = True             # written by us or by SLEAP's GUI (complete = human placed)
    p.verified &= p.labelled
    if inst.track is not None and re.fullmatch(r"-?\d+", str(inst.track.name)):
        p.track_id = int(inst.track.name)
    return p


def from_labels(labels, name_of: Callable[[object, int], str], occluded: bool = True) -> list[Frame]:
    """Labels -> frames; name_of(video, frame_idx) is the project file name to match."""
    frames: dict[str, Frame] = {}
    for lf in labels.labeled_frames:
        name = name_of(lf.video, lf.frame_idx)
        f = frames.get(name)
        if f is None:
            shape = lf.video.backend_metadata.get("shape") or (None, 0, 0)
            f = frames[name] = Frame(name, int(shape[2] or 0), int(shape[1] or 0))
        for inst in lf.instances:
            p = _person(inst, inst.skeleton.node_names, occluded)
            if p.labelled.any():
                f.persons.append(p)
    return list(frames.values())


def _no_node_in_common(labels, path: Path) -> None:
    for skel in labels.skeletons:
        if set(skel.node_names) & set(sk.NAMES):
            return
    if labels.labeled_frames:
        got = ", ".join(labels.skeletons[0].node_names[:5]) if labels.skeletons else "none"
        raise UserError(f"{path}: its skeleton has no BlazePose point names (nodes: {got}...)")


# -- writing ------------------------------------------------------------------

def write(frames: Iterable[Frame], fmt: str, out: Path, video_path: Callable[[Frame], str] | None = None,
          image_source: Callable[[Frame], Path | np.ndarray] | None = None, verified_only: bool = False) -> dict:
    """Write one of WRITE_FORMATS; returns counts. dlc writes a folder (CSV + PNG frames per image)."""
    if fmt not in WRITE_FORMATS:
        raise ValueError(f"format must be one of {WRITE_FORMATS}, not {fmt!r}")
    s = sio()
    out = Path(out)
    frames = list(frames)
    if fmt == "dlc":
        return _write_dlc(frames, out, image_source, verified_only, video_path or (lambda f: f.video or f.file_name))
    # NWB and Label Studio have no occluded-but-placed state: those points keep their place, as labelled
    # NWB's writer keys its series by (track, frame): several untracked people on a photo need a track each
    labels = to_labels(frames, video_path, verified_only, occluded_visible=fmt != "slp", open_videos=fmt == "nwb",
                       untracked_slots=fmt == "nwb")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp" + out.suffix)      # sleap-io picks writers by the suffix
    if tmp.exists():
        tmp.unlink()
    try:
        if fmt == "slp":
            s.save_slp(labels, str(tmp), verbose=False)
        elif fmt == "nwb":
            # sleap-io picks ndx-pose's PoseTraining when any person is a user instance, else PoseEstimation
            # (whose writer fails on a frame without people: NWB keeps only frames with people)
            labels.clean(frames=True, skeletons=False, tracks=False, videos=True)
            try:
                s.save_nwb(labels, str(tmp))
            finally:
                for v in labels.videos:
                    v.close()
        else:
            _write_labelstudio(labels, frames, tmp, video_path)
        os.replace(tmp, out)
    finally:                    # a failed write leaves no half file behind
        if tmp.exists():
            tmp.unlink()
    return {"images": len(labels.labeled_frames), "people": sum(len(lf.instances) for lf in labels)}


def _write_labelstudio(labels, frames: list[Frame], out: Path, video_path) -> None:
    """sleap-io's Label Studio tasks, with `data.image` filled in (Label Studio shows that image)."""
    import json
    from sleap_io.io.labelstudio import convert_labels
    tasks = convert_labels(labels)
    video_path = video_path or (lambda f: f.video or f.file_name)
    for t, f in zip(tasks, frames):
        t["data"]["image"] = video_path(f) if f.video is None else export_name(f.file_name)
        t["meta"]["video"]["shape"] = list(t["meta"]["video"]["shape"])
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(tasks, fh)


def _dlc_folders(frames: list[Frame]) -> dict[str | None, str]:
    """labeled-data folder per video: its stem, as DeepLabCut names them (the whole quoted path where
    two clash); all photos go to one folder, PHOTOS, as DLC keeps one folder per entry of video_sets."""
    keys = sorted({f.video for f in frames if f.video is not None})
    stems: dict[str, int] = {PHOTOS: 1}
    for k in keys:
        stems[Path(k).stem] = stems.get(Path(k).stem, 0) + 1
    out: dict[str | None, str] = {k: Path(k).stem if stems[Path(k).stem] == 1 else quote(k, safe="") for k in keys}
    out[None] = PHOTOS
    return out


def _write_dlc(frames: list[Frame], out: Path, image_source, verified_only: bool, video_path) -> dict:
    """A DeepLabCut labeled-data tree: labeled-data/<video or "photos">/CollectedData_<scorer>.csv
    beside its frames as img<index>.png (what DLC's labelling GUI and sleap-io's reader expect).
    sleap-io names the PNGs by index, so each folder also gets NAMES: which photo or video frame each
    PNG is (DLC ignores it)."""
    import json

    import cv2
    s = sio()
    folders = _dlc_folders(frames)
    photo_index = {id(f): k for k, f in enumerate(f for f in frames if f.video is None)}
    multi = max((len(f.persons) for f in frames), default=0) > 1
    labels = to_labels(frames, lambda f: folders[f.video] + ".png", verified_only, occluded_visible=True,
                       slot_tracks=multi, frame_of=lambda f: f.frame_index if f.video else photo_index[id(f)])
    if multi:   # every CSV gets the same individuals, also those with fewer people
        k = max(len(f.persons) for f in frames)
        names = {t.name: t for t in labels.tracks}
        labels.tracks = [names.get(f"person{i + 1}") or s.Track(name=f"person{i + 1}") for i in range(k)]
    by_video: dict[int, list] = {}
    for lf, f in zip(labels.labeled_frames, frames):
        by_video.setdefault(id(lf.video), []).append((lf, f))
    people = 0
    for group in by_video.values():
        folder = out / "labeled-data" / Path(group[0][0].video.filename).stem
        folder.mkdir(parents=True, exist_ok=True)
        for lf, f in group:
            people += len(lf.instances)
            if image_source is not None:
                src = image_source(f)
                rgb = load_image(src) if isinstance(src, Path) else src
                cv2.imwrite(str(folder / _png(lf.frame_idx)), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_PNG_COMPRESSION, 1])
        with open(folder / NAMES, "w", encoding="utf-8") as fh:
            json.dump({_png(lf.frame_idx): video_path(f) + ("" if f.video is None else f"#{f.frame_index:06d}")
                       for lf, f in group}, fh, indent=0)
        part = s.Labels(labeled_frames=[lf for lf, _ in group], videos=[group[0][0].video],
                        skeletons=labels.skeletons, tracks=labels.tracks)
        csv = folder / f"CollectedData_{DLC_SCORER}.csv"
        tmp = csv.with_name(csv.name + ".tmp")
        s.save_csv(part, str(tmp), format="dlc", scorer=DLC_SCORER, include_score=False)
        os.replace(tmp, csv)
    return {"images": len(labels.labeled_frames), "people": people}


def _png(index: int) -> str:
    return f"img{index:04d}.png"         # sleap-io's DLC writer's row names


# -- reading ------------------------------------------------------------------

def read(path: Path, fmt: str, rel: Callable[[str], str] | None = None) -> tuple[str, list[Frame]]:
    """Read one of READ_FORMATS -> ("33", frames); rel maps a media path to the project's file name."""
    if fmt not in READ_FORMATS:
        raise ValueError(f"format must be one of {READ_FORMATS}, not {fmt!r}")
    s = sio()
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    rel = rel or (lambda p: p)
    try:
        if fmt == "dlc":
            return "33", _read_dlc(path, rel)
        labels = s.load_slp(str(path)) if fmt == "slp" else s.load_labelstudio(str(path))
    except UserError:
        raise
    except Exception as e:          # sleap-io's readers raise whatever their parser raised
        raise UserError(f"{path}: not a readable {fmt} file ({_reason(e)})") from None
    _no_node_in_common(labels, path)

    def name_of(video, idx):
        fn = video.filename
        if isinstance(fn, list):
            fn = fn[idx]
            idx = 0
        name = rel(str(fn))
        return f"{name}#{idx:06d}" if kind_of(Path(name)) == "video" else name
    return "33", from_labels(labels, name_of, occluded=fmt == "slp")


def _reason(e: Exception) -> str:
    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _read_dlc(path: Path, rel: Callable[[str], str]) -> list[Frame]:
    """One CSV, or a folder holding labeled-data/*/CollectedData_*.csv (what write() makes).

    A frame's name: from NAMES where the folder has it; else, as DeepLabCut extracts frames
    (labeled-data/<video stem>/img<frame>.png), our export name of that video frame."""
    import json
    s = sio()
    csvs = sorted(path.glob("labeled-data/*/CollectedData_*.csv")) if path.is_dir() else [path]
    if not csvs:
        raise UserError(f"{path}: no labeled-data/*/CollectedData_*.csv in this folder")
    frames = []
    for csv in csvs:
        try:
            labels = s.load_dlc(str(csv), config=False)
            names = json.loads((csv.parent / NAMES).read_text()) if (csv.parent / NAMES).exists() else {}
        except Exception as e:
            raise UserError(f"{csv}: not a readable DeepLabCut CSV ({_reason(e)})") from None
        _no_node_in_common(labels, csv)

        def name_of(video, idx):
            img = Path(video.filename[idx] if isinstance(video.filename, list) else video.filename)
            if img.name in names:
                media, _, frame = names[img.name].rpartition("#")
                if media and kind_of(Path(media)) == "video":
                    return f"{rel(media)}#{frame}"
                return rel(names[img.name])
            num = re.findall(r"\d+", img.stem)
            return export_name(f"{unquote(img.parent.name)}#{int(num[-1]):06d}") if num else img.name
        frames += from_labels(labels, name_of, occluded=False)
    return frames
