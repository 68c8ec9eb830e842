"""A project: a folder with project.toml (settings) and project.db (state).

Image paths are stored relative to the project folder so a project can be
moved together with its images. A project whose database is missing (e.g.
the checked-in demo) is rebuilt from the sources listed in project.toml.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from annotator.core import media

from annotator.core import settings as settings_mod
from annotator.core.commands import Session
from annotator.core.errors import UserError
from annotator.core.store import ImageRow, Store

TOML, DB = "project.toml", "project.db"


def _check_name(path: Path, rel: str) -> None:
    """The database and project.toml hold names as UTF-8 text; a name that is not cannot be stored."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"{os.fsencode(path)!r}: file name is not valid UTF-8; rename the file") from None


class Project:
    def __init__(self, root: Path, settings: dict, store: Store):
        self.root = root
        self.settings = settings
        self.store = store
        self._videos: dict[str, media.VideoReader] = {}

    # -- lifecycle -------------------------------------------------------------
    @classmethod
    def create(cls, root: Path | str, sources: list[str | Path] = (), stride: int = 1,
               name: str | None = None, progress=None) -> tuple["Project", dict]:
        """Create (or extend) a project; returns it and a summary of what was added."""
        root = Path(root)
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise UserError(f"--stride must be a whole number of at least 1, not {stride!r}")
        files = media.expand(list(sources)) if sources else []
        root.mkdir(parents=True, exist_ok=True)
        toml = root / TOML
        st = settings_mod.load(toml) if toml.exists() else settings_mod._merge(settings_mod.DEFAULTS, {})
        st["project"]["name"] = st["project"]["name"] or name or root.resolve().name
        rels = [os.path.relpath(Path(p).resolve(), root.resolve()) for p in sources]
        for p, r in zip(sources, rels):
            _check_name(Path(p), r)
        st["sources"]["paths"] = list(dict.fromkeys(list(st["sources"]["paths"]) + rels))
        if sources:
            st["sources"]["video_stride"] = stride
        settings_mod.save(toml, st)
        proj = cls(root, st, Store(root / DB, create=True))
        summary = proj.add_files(files, stride, progress=progress)
        return proj, summary

    @classmethod
    def open(cls, root: Path | str) -> "Project":
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"{root}: no such project folder")
        st = settings_mod.load(root / TOML)
        fresh = not (root / DB).exists()
        proj = cls(root, st, Store(root / DB, create=True))
        if fresh and st["sources"]["paths"]:
            proj.add_files(media.expand([root / p for p in st["sources"]["paths"]]),
                           int(st["sources"]["video_stride"]))
        return proj

    @classmethod
    def open_readonly(cls, root: Path | str) -> "Project":
        """The project through a connection that cannot write (the web viewer): never creates,
        rebuilds or migrates the database, safe while the app writes."""
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"{root}: no such project folder")
        st = settings_mod.load(root / TOML)
        if not (root / DB).exists():
            raise UserError(f"{root / DB}: no project database yet (a read-only view does not create one: "
                            f"run `pose-annotator prefill {root}` first)")
        return cls(root, st, Store(root / DB, readonly=True))

    def close(self) -> None:
        for v in self._videos.values():
            v.close()
        self._videos.clear()
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def save_settings(self) -> None:
        settings_mod.save(self.root / TOML, self.settings)

    # -- sources -------------------------------------------------------------
    def rel(self, path: Path) -> str:
        return Path(os.path.relpath(Path(path).resolve(), self.root.resolve())).as_posix()

    def add_files(self, files: list[Path], stride: int = 1, progress=None) -> dict:
        """Register photos and video frames (header reads only; pixels are decoded later)."""
        added = skipped = frames = 0
        failed: list[tuple[str, str]] = []
        st = self.store
        for f in files:
            rel = self.rel(f)
            kind = media.kind_of(f)
            try:
                _check_name(f, rel)
                if st.db.execute("SELECT 1 FROM sources WHERE path=?", (rel,)).fetchone():
                    skipped += 1               # already there: not hashed, not opened again
                    continue
                if kind == "image":
                    sha, size = media.sha1_file(f), f.stat().st_size
                    try:
                        w, h, orient = media.image_header(f)
                        err = None
                    except UserError as e:
                        w = h = None
                        orient, err = 1, str(e)
                    with st.tx():
                        sid, _ = st.add_source(rel, "image", sha, size)
                        st.add_image(sid, rel, w, h, orientation=orient,
                                     status="failed" if err else "pending", error=err)
                    if err:
                        failed.append((rel, err))
                    added += 1
                else:
                    n, fps, w, h = media.video_info(f)
                    sha, size = media.sha1_file(f), f.stat().st_size
                    with st.tx():
                        sid, _ = st.add_source(rel, "video", sha, size, n, fps)
                        for i in range(0, n, max(1, stride)):
                            st.add_image(sid, media.frame_file_name(rel, i), w, h, frame_index=i)
                            frames += 1
                    added += 1
            except UserError as e:
                failed.append((rel, str(e)))
            if progress:
                progress(1)
        return {"added": added, "skipped": skipped, "video_frames": frames, "failed": failed}

    def source_path(self, row: ImageRow) -> Path:
        return self.root / row.source_path

    def load_rgb(self, image: int | ImageRow) -> np.ndarray:
        row = self.store.image(image) if isinstance(image, int) else image
        path = self.source_path(row)
        if row.kind == "video":
            rd = self._videos.get(row.source_path)
            if rd is None:
                rd = self._videos[row.source_path] = media.VideoReader(path)
            return rd.read(row.frame_index)
        return media.load_image(path)

    # -- editing -------------------------------------------------------------
    def session(self, annotator: str | None = None) -> Session:
        return Session(self.store, annotator or self.settings["project"].get("annotator") or os.environ.get(
            "USER", "anonymous"))
