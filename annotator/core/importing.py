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
from annotator.core.store import KV_CROWD_REGIONS


def oks(a: Person, b: Person) -> float:
    """Object keypoint similarity over the points both label (scale from their joint extent)."""
    m = a.labelled & b.labelled
    if m.sum() < 2:
        return 0.0
    pts = np.vstack([a.xy[a.labelled], b.xy[b.labelled]])
    area = max(float(np.ptp(pts[:, 0]) * np.ptp(pts[:, 1])), 1.0)
    d2 = ((a.xy[m] - b.xy[m]) ** 2).sum(1)
    return float(np.mean(np.exp(-d2 / (2 * area * (2 * sk.SIGMAS[m]) ** 2 + 1e-9))))


def same_points(existing: Person, incoming: Person) -> bool:
    """The incoming person's labelled points are on the existing person already, exactly (same place up
    to float noise, same visibility): what a re-import of the same file finds, also for a person with
    one labelled point, where OKS has nothing to go on."""
    lab = incoming.labelled
    return bool(lab.any()) and bool((existing.vis[lab] == incoming.vis[lab]).all()) \
        and bool(np.allclose(existing.xy[lab], incoming.xy[lab], rtol=0.0, atol=1e-6))


def _key(p: Person) -> tuple:
    lab = np.flatnonzero(p.labelled)
    return tuple(lab.tolist()), tuple(np.round(p.xy[lab], 4).ravel().tolist()), tuple(p.vis[lab].tolist())


def match_people(existing: list[Person], incoming: list[Person], min_oks: float = 0.3) -> dict[int, int]:
    """Greedy one-to-one: incoming index -> existing index.

    First exact matches (same_points: a re-import of the same file, found in linear time even for
    thousands of people on an image), then by OKS among the people left.
    """
    out, used = {}, set()
    by_key: dict[tuple, list[int]] = {}
    for j, e in enumerate(existing):
        by_key.setdefault(_key(e), []).append(j)
    for i, n in enumerate(incoming):
        for j in by_key.get(_key(n), ()):
            if j not in used and same_points(existing[j], n):
                out[i] = j
                used.add(j)
                break
    for i, n in enumerate(incoming):            # a subset of an existing person's points (few people: pairwise)
        if i in out or n.labelled.sum() >= 2 or len(existing) > 200:
            continue
        j = next((j for j, e in enumerate(existing) if j not in used and same_points(e, n)), None)
        if j is not None:
            out[i] = j
            used.add(j)
    rest = [i for i in range(len(incoming)) if i not in out]
    free = [j for j in range(len(existing)) if j not in used]
    pairs = sorted(((oks(existing[j], incoming[i]), i, j) for i in rest for j in free), reverse=True)
    for s, i, j in pairs:
        if s < min_oks or i in out or j in used:
            continue
        out[i] = j
        used.add(j)
    return out


def _unchanged(old: Person, new: Person) -> bool:
    return (np.array_equal(old.xy, new.xy) and np.array_equal(old.vis, new.vis)
            and np.array_equal(old.conf, new.conf, equal_nan=True) and np.array_equal(old.verified, new.verified)
            and old.source == new.source)


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

    All or nothing: matching and writing happen in one write transaction (BEGIN IMMEDIATE), so a
    failure anywhere leaves the project as it was, and a second import running at the same time
    waits and then matches against what the first wrote (two at once = one after the other).
    Re-importing the same file changes nothing (people already there are found by same_points or
    OKS and left alone when nothing differs). Annotations without a labelled point are skipped.

    rescore: called after the import has committed, with the ids of the images whose points changed
    (the CLI passes the review queue's scoring, which lives above core).
    """
    if as_ not in ("verified", "predicted"):
        raise UserError(f"--as must be 'verified' or 'predicted', not {as_!r}")
    changed: set[int] = set()
    session = project.session(annotator)
    session.listeners.append(changed.update)
    summary = {"images_matched": 0, "persons_updated": 0, "persons_added": 0, "persons_unchanged": 0,
               "persons_empty": 0, "points_set": 0, "crowd_regions_added": 0, "unknown_images": []}
    regions: list[tuple[int, list, list]] = []          # (image id, crowd regions before, after)
    with project.store.tx():
        find = _resolver(project)
        seen: dict[int, str] = {}
        changes: list[tuple[int | None, int, Person]] = []
        for f in frames:
            row = find(f.file_name)
            if row is None:
                summary["unknown_images"].append(f.file_name)
                continue
            if row.id in seen:
                raise UserError(f"{source}: images {seen[row.id]!r} and {f.file_name!r} are both the project's"
                                f" image {row.file_name!r}; a file must name each image once")
            seen[row.id] = f.file_name
            summary["images_matched"] += 1
            if f.crowd_regions:
                old = project.store.crowd_regions(row.id)
                new = old + [list(r) for r in f.crowd_regions if list(r) not in old]
                if len(new) > len(old):
                    regions.append((row.id, old, new))
                    summary["crowd_regions_added"] += len(new) - len(old)
            incoming = [p for p in f.persons if p.labelled.any()]
            summary["persons_empty"] += len(f.persons) - len(incoming)
            if not incoming:
                continue
            current = project.store.load_frame(row.id).persons
            m = match_people(current, incoming)
            for i, inc in enumerate(incoming):
                lab = inc.labelled
                # a file that says which points were verified (our own export) is believed
                mark = lab & inc.verified if inc.meta.get("verified_known") else lab
                if i in m:
                    old = current[m[i]]
                    new = old.copy()
                    take = lab & (~old.verified if as_ == "predicted" else np.ones(sk.N, bool))
                    if not take.any():
                        summary["persons_unchanged"] += 1
                        continue
                    new.xy[take], new.vis[take] = inc.xy[take], inc.vis[take]
                    new.conf[take] = inc.conf[take]
                    new.verified[take] = mark[take] if as_ == "verified" else False
                    for k in np.flatnonzero(take):
                        new.source[k] = inc.source[k] or source
                    if _unchanged(old, new):
                        summary["persons_unchanged"] += 1
                        continue
                    changes.append((old.id, row.id, new))
                    summary["persons_updated"] += 1
                    summary["points_set"] += int(take.sum())
                else:
                    new = inc.copy()
                    new.verified[:] = mark if as_ == "verified" else False
                    new.source = [inc.source[k] or source for k in range(sk.N)]
                    changes.append((None, row.id, new))
                    summary["persons_added"] += 1
                    summary["points_set"] += int(lab.sum())
        if frames and summary["images_matched"] == 0:
            raise UserError(f"{source}: none of its {len(frames)} images is in the project "
                            f"(e.g. {frames[0].file_name!r}); images are matched by file name")
        aid = session.import_people(changes, {"source": source, "as": as_})
        if aid is None and regions:                 # crowd regions only: still one undoable, logged action
            aid = session.log_action("import", {"source": source, "as": as_, "images": [i for i, _, _ in regions]})
        for image_id, _, new in regions:
            project.store.set_kv(f"{KV_CROWD_REGIONS}{image_id}", new)
        if aid is not None and regions:           # undone and redone with the import's people
            session.attach(aid, lambda: [project.store.set_kv(f"{KV_CROWD_REGIONS}{i}", o) for i, o, _ in regions],
                           lambda: [project.store.set_kv(f"{KV_CROWD_REGIONS}{i}", n) for i, _, n in regions])
    if rescore is not None and changed:
        rescore(sorted(changed))
    return summary
