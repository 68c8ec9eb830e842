"""The project viewer's data: the review queue a page at a time, each image's people and status.

Read only, by construction: every request opens the project through its own `mode=ro` SQLite
connection (Project.open_readonly), which cannot write and sees only committed transactions, so
the desktop app (or a pre-fill) can keep writing meanwhile. Images are addressed by their database
id; the file behind it comes from the store, never from the request.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from annotator.core.project import Project
from annotator.review.queue import FILTERS, SUSPECT_THRESHOLD, image_queue, suspect_points

PAGE = 24


@dataclass
class PersonView:
    id: int
    status: str                 # predicted / in progress / verified / conflict
    verified: int               # points verified
    suspects: list[tuple[int, float]] = field(default_factory=list)   # (point index, score)
    conflict: str = ""


@dataclass
class ImageView:
    id: int
    file_name: str
    status: str                 # not pre-filled / failed / predicted / in progress / verified / conflict
    review_state: str
    width: int | None
    height: int | None
    error: str | None
    score: float = 0.0          # the queue's expected fixes
    people: list[PersonView] = field(default_factory=list)

    @property
    def n_suspects(self) -> int:
        return sum(len(p.suspects) for p in self.people)


class ProjectViewer:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        with self.open() as proj:            # fails now, in one line, if it cannot be read
            self.name = proj.settings["project"]["name"] or self.root.name
            self.threshold = float(proj.settings["gui"].get("suspect_threshold", SUSPECT_THRESHOLD))

    def open(self) -> Project:
        return Project.open_readonly(self.root)

    def counts(self) -> dict:
        with self.open() as proj:
            return proj.store.counts()

    def page(self, filter: str, page: int, per_page: int = PAGE) -> tuple[list[ImageView], int]:
        """(the images of that page of the review queue, with their people; images in the filter)."""
        states = FILTERS[filter]
        with self.open() as proj:
            st = proj.store
            marks = ",".join("?" * len(states))
            total = st.db.execute(f"SELECT count(*) FROM images WHERE review_state IN ({marks})"
                                  " AND status != 'failed'", states).fetchone()[0]
            items = image_queue(st, states, limit=(page + 1) * per_page)[page * per_page:]
            return [self._image(proj, it.image_id, it.score) for it in items], total

    def failed(self) -> list[tuple[str, str]]:
        with self.open() as proj:
            return proj.store.failures()

    def image(self, image_id: int) -> ImageView | None:
        with self.open() as proj:
            try:
                return self._image(proj, image_id)
            except KeyError:
                return None

    def _image(self, proj: Project, image_id: int, score: float = 0.0) -> ImageView:
        from annotator.cvat.sync import open_conflicts
        row = proj.store.image(image_id)
        frame = proj.store.load_frame(image_id)
        conflicts = open_conflicts(proj.store)
        sus: dict[int, list] = {}
        for k, i, s in suspect_points(frame.persons, self.threshold):
            sus.setdefault(k, []).append((i, s))
        people = []
        for k, p in enumerate(frame.persons):
            c = conflicts.get(p.id)
            nv = int(p.verified.sum())
            status = ("conflict" if c else "verified" if p.fully_verified else "in progress" if nv else "predicted")
            people.append(PersonView(p.id, status, nv, sus.get(k, []), c[1] if c else ""))
        if row.status != "done":
            status = {"pending": "not pre-filled", "failed": "failed"}[row.status]
        elif any(p.status == "conflict" for p in people):
            status = "conflict"
        elif row.review_state == "verified" or (people and all(p.status == "verified" for p in people)):
            status = "verified"
        elif row.review_state == "in_progress" or any(p.verified for p in people):
            status = "in progress"
        else:
            status = "predicted"
        return ImageView(row.id, row.file_name, status, row.review_state, row.width, row.height, row.error,
                         float(score), people)

    def drawing(self, image_id: int, max_side: int) -> bytes | None:
        """JPEG of the image with its people and the suspect points ringed; None for an unknown id."""
        from annotator.web.pose import drawing
        with self.open() as proj:
            try:
                row = proj.store.image(image_id)
            except KeyError:
                return None
            frame = proj.store.load_frame(row.id)
            rgb = proj.load_rgb(row)
            sus = {(k, i) for k, i, _ in suspect_points(frame.persons, self.threshold)}
            return drawing(rgb, frame.persons, max_side=max_side, angles=False, suspects=sus)

    def rounds_plot(self) -> bytes | None:
        """The round report's plot (PNG), None before the first distillation round."""
        from annotator.distill import registry
        from annotator.distill.report import plot_gold_metrics
        with self.open() as proj:
            rounds = registry.rounds(proj.store)
        if not rounds:
            return None
        buf = io.BytesIO()
        plot_gold_metrics(self.name, rounds, buf)
        return buf.getvalue()

    def rounds(self) -> list[dict]:
        from annotator.distill import registry
        with self.open() as proj:
            return registry.rounds(proj.store)
