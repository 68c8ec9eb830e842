"""Carry a correction on one video frame to its neighbours, as one undoable command.

The model's per-frame prediction is kept as the base (it follows the motion);
what is propagated is the correction, i.e. verified position minus the
model's prediction. Between two verified keyframes the correction is
interpolated linearly; past the last keyframe it fades to zero over `span`
frames. Points a human verified on a neighbouring frame are never touched;
propagated points stay unverified (a human still has to accept them) and
carry the provenance "propagate:<annotator>".
"""
from __future__ import annotations

import numpy as np

from annotator.core import skeleton as sk
from annotator.core.model import Person


def match_person(ref: Person, candidates: list[Person], max_frac: float = 0.5) -> Person | None:
    """The candidate that is the same person as `ref` in a neighbouring frame.

    Same track id when both have one; else the smallest mean distance over the
    points both label, accepted when below max_frac of ref's box diagonal.
    """
    if ref.track_id is not None:
        for c in candidates:
            if c.track_id == ref.track_id:
                return c
    b = ref.bbox()
    if b is None:
        return None
    diag = max(float(np.hypot(b[2], b[3])), 1.0)
    best, best_d = None, max_frac
    for c in candidates:
        m = ref.labelled & c.labelled
        if m.sum() < 3:
            continue
        d = float(np.mean(np.hypot(*(ref.xy[m] - c.xy[m]).T))) / diag
        if d < best_d:
            best, best_d = c, d
    return best


def predicted_xy(store, person: Person) -> np.ndarray:
    """The model's own prediction for each point (the current position where none is stored)."""
    xy = person.xy.copy()
    for idx, px, py in store.db.execute("SELECT idx, pred_x, pred_y FROM points WHERE person_id=?", (person.id,)):
        if px is not None and py is not None:
            xy[idx] = (px, py)
    return xy


def plan(store, person_id: int, span: int = 10) -> list[tuple[int, Person]]:
    """The new states of the matched people on neighbouring frames (nothing is written)."""
    img = store.person_image(person_id)
    row = store.image(img)
    if row.kind != "video":
        return []
    ref = store.load_person(person_id)
    if ref is None:
        return []
    keys = ref.verified & ref.labelled          # the points the annotator fixed (or accepted) here
    if not keys.any():
        return []
    d0 = np.zeros((sk.N, 2))
    d0[keys] = ref.xy[keys] - predicted_xy(store, ref)[keys]
    frames = [r[0] for r in store.db.execute(
        "SELECT id FROM images WHERE source_id=(SELECT source_id FROM images WHERE id=?) ORDER BY frame_index", (img,))]
    k = frames.index(img)
    out: dict[int, Person] = {}
    for direction in (+1, -1):
        chain: list[tuple[int, Person, np.ndarray]] = []     # (distance in frames, person, its prediction)
        prev = ref
        for step in range(1, span + 1):
            j = k + direction * step
            if not 0 <= j < len(frames):
                break
            m = match_person(prev, store.load_frame(frames[j]).persons)
            if m is None:
                break
            chain.append((step, m, predicted_xy(store, m)))
            prev = m
        for i in np.flatnonzero(keys):
            end, d_end = span + 1, np.zeros(2)               # no keyframe: fade out
            for step, m, pred in chain:
                if m.verified[i]:
                    end, d_end = step, m.xy[i] - pred[i]
                    break
            for step, m, pred in chain:
                if step >= end:
                    break
                w = step / end
                q = out.setdefault(m.id, m.copy())
                q.xy[i] = pred[i] + (1 - w) * d0[i] + w * d_end
                if q.vis[i] == 0:
                    q.vis[i] = ref.vis[i]
                q.source[i] = "propagate"
    return [(pid, p) for pid, p in out.items()]


def propagate(session, person_id: int, span: int = 10) -> tuple[int | None, int]:
    """Apply plan() as one command; returns (action id or None, frames changed)."""
    afters = plan(session.store, person_id, span)
    for _, p in afters:
        p.source = [f"propagate:{session.annotator}" if s == "propagate" else s for s in p.source]
    aid = session.replace_persons(afters, "propagate", {"person": person_id, "span": span})
    return aid, len(afters)
