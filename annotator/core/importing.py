"""Bring keypoints from another file into a project without clobbering anyone.

Imported people are matched to the people already on the image (by OKS on
the points both have); a match gets the imported points, so a COCO-17
ground truth fills 17 points of a pre-filled person and leaves the other 16
as the model predicted them. Predicted imports never overwrite verified
points. Images are matched by file name, then by export name, then by
base name (only when that is unambiguous).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from annotator.core import skeleton as sk
from annotator.core.errors import UserError
from annotator.core.media import export_name
from annotator.core.model import Frame, Person
from annotator.core.project import Project


def oks(a: Person, b: Person) -> float:
    """Object keypoint similarity over the points both label (scale from their joint extent)."""
    m = a.labelled & b.labelled
    if m.sum() < 2:
        return 0.0
    pts = np.vstack([a.xy[a.labelled], b.xy[b.labelled]])
    area = max(float(np.ptp(pts[:, 0]) * np.ptp(pts[:, 1])), 1.0)
    d2 = ((a.xy[m] - b.xy[m]) ** 2).sum(1)
    return float(np.mean(np.exp(-d2 / (2 * area * (2 * sk.SIGMAS[m]) ** 2 + 1e-9))))


def match_people(existing: list[Person], incoming: list[Person], min_oks: float = 0.3) -> dict[int, int]:
    """Greedy one-to-one: incoming index -> existing index."""
    pairs = sorted(((oks(e, n), i, j) for i, n in enumerate(incoming) for j, e in enumerate(existing)),
                   reverse=True)
    out, used = {}, set()
    for s, i, j in pairs:
        if s < min_oks or i in out or j in used:
            continue
        out[i] = j
        used.add(j)
    return out


def _resolver(project: Project):
    rows = project.store.images()
    by_name = {r.file_name: r for r in rows}
    by_export = {export_name(r.file_name): r for r in rows}
    by_base: dict[str, list] = {}
    for r in rows:
        by_base.setdefault(Path(export_name(r.file_name)).name, []).append(r)

    def find(name: str):
        r = by_name.get(name) or by_export.get(name)
        if r:
            return r
        cands = by_base.get(Path(name).name, [])
        return cands[0] if len(cands) == 1 else None
    return find


def import_frames(project: Project, frames: list[Frame], as_: str = "verified", source: str = "import",
                  annotator: str | None = None, rescore: Callable[[list[int]], object] | None = None) -> dict:
    """Merge frames into the project; returns counts and the names that matched no image.

    rescore: called with the ids of the images whose points changed (the CLI passes the review
    queue's scoring, which lives above core), also when a later image fails.
    """
    if as_ not in ("verified", "predicted"):
        raise UserError(f"--as must be 'verified' or 'predicted', not {as_!r}")
    changed: set[int] = set()
    session = project.session(annotator)
    session.listeners.append(changed.update)
    find = _resolver(project)
    summary = {"images_matched": 0, "persons_updated": 0, "persons_added": 0, "points_set": 0, "unknown_images": []}
    try:
        for f in frames:
            row = find(f.file_name)
            if row is None:
                summary["unknown_images"].append(f.file_name)
                continue
            summary["images_matched"] += 1
            if not f.persons:
                continue
            current = project.store.load_frame(row.id).persons
            m = match_people(current, f.persons)
            with project.store.tx():
                for i, inc in enumerate(f.persons):
                    lab = inc.labelled
                    # a file that says which points were verified (our own export) is believed
                    mark = lab & inc.verified if inc.meta.get("verified_known") else lab
                    if i in m:
                        old = current[m[i]]
                        new = old.copy()
                        take = lab & (~old.verified if as_ == "predicted" else np.ones(sk.N, bool))
                        if not take.any():
                            continue
                        new.xy[take], new.vis[take] = inc.xy[take], inc.vis[take]
                        new.conf[take] = inc.conf[take]
                        new.verified[take] = mark[take] if as_ == "verified" else False
                        for k in np.flatnonzero(take):
                            new.source[k] = inc.source[k] or source
                        session.replace_person(old.id, new, "import", {"source": source})
                        summary["persons_updated"] += 1
                        summary["points_set"] += int(take.sum())
                    else:
                        new = inc.copy()
                        new.verified[:] = mark if as_ == "verified" else False
                        new.source = [inc.source[k] or source for k in range(sk.N)]
                        session.add_person(row.id, new)
                        summary["persons_added"] += 1
                        summary["points_set"] += int(lab.sum())
    finally:                # what was saved is scored, also when a later image fails
        if rescore is not None and changed:
            rescore(sorted(changed))
    if frames and summary["images_matched"] == 0:
        raise UserError(f"{source}: none of its {len(frames)} images is in the project "
                        f"(e.g. {frames[0].file_name!r}); images are matched by file name")
    return summary
