"""Review order: what an annotator should look at first.

Each unverified point has a suspicion score (the probability that it is
wrong; see suspicion.py); without one, 1 - model confidence stands in. The
point queue is that score, highest first; the image queue ranks images by the
expected number of wrong points a visit fixes, so one image visit is worth
the most. With `diverse`, an image's gain is discounted by how many images of
the same kind (folder, body region of its worst point, crowd size) come
before it, so the first screens show different failure modes instead of
fifty dark crowd shots in a row.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from annotator.core import skeleton as sk
from annotator.core.commands import KV_PEOPLE_CONFIRMED
from annotator.core.store import Store
from annotator.review.metrics import suspicion
from annotator.review.missing import KV_EXPECTED, MISSING_WEIGHT

# CAST: a value that is not a number (a hand-edited or damaged file) reads as a number here, not as text
_SUS = "COALESCE(CAST(p.suspicion AS REAL), 1.0 - COALESCE(CAST(p.conf AS REAL), 0.0))"
# expected missed people x what one is worth (review/missing.py), 0 once a human confirmed nobody is missing
_MISS = (f"(COALESCE((SELECT CAST(k.value AS REAL) FROM kv k WHERE k.key = '{KV_EXPECTED}' || i.id), 0)"
         f" * {MISSING_WEIGHT} * (NOT EXISTS (SELECT 1 FROM kv c WHERE c.key = '{KV_PEOPLE_CONFIRMED}' || i.id"
         " AND c.value != 'null')))")
DIVERSITY_DECAY = 0.8      # the k-th image of one kind counts DECAY**k of its gain
SUSPECT_THRESHOLD = 0.5    # default of a point worth a look (project.toml gui.suspect_threshold)

# the queue's filters by name (the app's list, the web viewer): review states shown
FILTERS: dict[str, tuple[str, ...]] = {
    "to review": ("to_review", "in_progress"),
    "not started": ("to_review",),
    "in progress": ("in_progress",),
    "verified": ("verified",),
    "all": ("to_review", "in_progress", "verified"),
}


def suspect_points(persons, threshold: float = SUSPECT_THRESHOLD) -> list[tuple[int, int, float]]:
    """(index in persons, point index, score) of unverified points scored at least threshold, most
    suspicious first; the score is the same as the queue's (_SUS). Hidden guesses count (a point the
    pre-fill stored as not labelled, its guess kept): one the model doubts may be there after all."""
    out = []
    for k, p in enumerate(persons):
        s = suspicion(p)
        for i in np.flatnonzero(~p.verified & (p.labelled | p.hidden_guess) & (s >= threshold)):
            out.append((k, int(i), float(s[i])))
    out.sort(key=lambda t: -t[2])
    return out


@dataclass
class QueueItem:
    image_id: int
    file_name: str
    score: float          # expected wrong points fixed by reviewing this image
    top: float            # the single most suspicious point
    review_state: str
    n_unverified: int
    kind: str = ""        # what the diversity option spreads over


def _kind(file_name: str, top_idx: int | None, n_people: int) -> str:
    name = file_name.split("#", 1)[0]
    folder = PurePosixPath(name.replace("\\", "/")).parent.name
    region = sk.REGIONS[top_idx] if top_idx is not None else "none"
    crowd = "1" if n_people <= 1 else "2-3" if n_people <= 3 else "4+"
    return f"{folder}/{region}/{crowd}"


def spread(items: list, gain, kind, decay: float = DIVERSITY_DECAY) -> list:
    """Order by gain x decay**(rank of the item within its kind): diminishing returns per kind.

    Equal to greedily taking the item with the largest discounted gain each
    time, since within a kind the gains are already in decreasing order.
    """
    by_kind: dict[str, int] = {}
    keyed = []
    for n, it in enumerate(sorted(items, key=lambda it: -gain(it))):
        k = kind(it)
        r = by_kind.get(k, 0)
        by_kind[k] = r + 1
        keyed.append((-gain(it) * decay ** r, n, it))
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [it for _, _, it in keyed]


def _reference_image_queue(store: Store, states: tuple[str, ...]) -> list[tuple]:
    """The ranking as one aggregate over every image: the fastest way to rank them all, slow for one page."""
    marks = ",".join("?" * len(states))
    sql = (f"SELECT i.id, i.file_name, COALESCE(SUM(CASE WHEN p.verified=0 THEN {_SUS} END), 0) + {_MISS},"
           f" COALESCE(MAX(CASE WHEN p.verified=0 THEN {_SUS} END), 0), i.review_state,"
           " COALESCE(SUM(1 - p.verified), 0)"
           " FROM images i LEFT JOIN persons q ON q.image_id=i.id AND q.deleted=0"
           " LEFT JOIN points p ON p.person_id=q.id"
           f" WHERE i.review_state IN ({marks}) AND i.status != 'failed'"
           " GROUP BY i.id ORDER BY 3 DESC, 4 DESC, i.id")
    return store.db.execute(sql, states).fetchall()


def image_queue(store: Store, states: tuple[str, ...] = ("to_review", "in_progress"),
                limit: int | None = None, diverse: bool = False) -> list[QueueItem]:
    """Images ordered by expected gain; images without people come last, verified ones are left out.

    Two steps, same order as one aggregate over every image (_reference_image_queue)
    but about twice as fast at 100,000 images: (1) the images with a positive
    gain, aggregated from the unverified points only (the images with people),
    ranked; (2) only when the page reaches past them, the zero-gain images
    (no people, or nothing unverified) in id order, as the single aggregate's
    tie-break puts them. Gains are sums of probabilities (>= 0), so "not
    positive" is exactly "zero". Ranking everything (no limit, or diverse)
    uses the single aggregate, which is faster for the whole list.
    """
    n = None if diverse else limit
    if not n:
        items = [QueueItem(*r) for r in _reference_image_queue(store, states)]
    else:
        items = _first_page(store, states, int(n))
    if not diverse:
        return items
    # worst point's joint and people count per image (SQLite returns the row of the MAX)
    info = {r[0]: (r[1], r[2]) for r in store.db.execute(
        f"SELECT q.image_id, p.idx, COUNT(DISTINCT q.id), MAX({_SUS}) FROM points p JOIN persons q"
        " ON q.id=p.person_id WHERE q.deleted=0 AND p.verified=0 GROUP BY q.image_id")}
    for it in items:
        top_idx, n_people = info.get(it.image_id, (None, 0))
        it.kind = _kind(it.file_name, top_idx, n_people)
    out = spread(items, lambda it: it.score, lambda it: it.kind)
    return out[:limit] if limit else out


def _first_page(store: Store, states: tuple[str, ...], n: int) -> list[QueueItem]:
    """The first n of the ranking: positive-gain images first, then zero-gain ones by id."""
    marks = ",".join("?" * len(states))
    where = f"i.review_state IN ({marks}) AND i.status != 'failed'"
    km = f"CAST(substr(m.key, {len(KV_EXPECTED) + 1}) AS INTEGER)"
    sql = (f"SELECT i.id, i.file_name, COALESCE(g.s, 0) + {_MISS} AS gain, COALESCE(g.t, 0), i.review_state,"
           " COALESCE(g.n, 0) FROM (SELECT image_id FROM (SELECT q.image_id AS image_id FROM persons q JOIN points p"
           f" ON p.person_id=q.id WHERE q.deleted=0 AND p.verified=0 AND {_SUS} > 0"
           f" UNION SELECT {km} FROM kv m WHERE m.key LIKE '{KV_EXPECTED}%' AND CAST(m.value AS REAL) > 0)) c"
           " JOIN images i ON i.id=c.image_id"
           f" LEFT JOIN (SELECT q.image_id AS image_id, SUM({_SUS}) AS s, MAX({_SUS}) AS t, COUNT(*) AS n"
           " FROM persons q JOIN points p ON p.person_id=q.id WHERE q.deleted=0 AND p.verified=0"
           " GROUP BY q.image_id) g ON g.image_id=i.id"
           f" WHERE {where} AND gain > 0 ORDER BY 3 DESC, 4 DESC, i.id LIMIT {n}")
    items = [QueueItem(*r) for r in store.db.execute(sql, states)]
    if len(items) < n:
        rest = (f"SELECT i.id, i.file_name, 0, 0, i.review_state, (SELECT COUNT(*) FROM persons q JOIN points p"
                " ON p.person_id=q.id WHERE q.image_id=i.id AND q.deleted=0 AND p.verified=0)"
                f" FROM images i WHERE {where} AND NOT EXISTS (SELECT 1 FROM persons q JOIN points p"
                f" ON p.person_id=q.id WHERE q.image_id=i.id AND q.deleted=0 AND p.verified=0 AND {_SUS} > 0)"
                f" AND NOT {_MISS} > 0"
                f" ORDER BY i.id LIMIT {n - len(items)}")
        items += [QueueItem(*r) for r in store.db.execute(rest, states)]
    return items


def point_queue(store: Store, limit: int | None = None, image_id: int | None = None,
                diverse: bool = False) -> list[tuple]:
    """(image_id, person_id, idx, suspicion) of unverified points, most suspicious first.

    diverse: spread over (image folder, body region) the same way as image_queue.
    """
    # a point that is not labelled and holds no model guess (e.g. a joint a GT file does not define) is
    # nothing to review: it has no position to check
    where = "q.deleted=0 AND p.verified=0 AND (p.vis > 0 OR p.conf IS NOT NULL)" + (
        " AND q.image_id=?" if image_id is not None else "")
    sql = (f"SELECT q.image_id, p.person_id, p.idx, {_SUS} AS s FROM points p JOIN persons q ON q.id=p.person_id"
           f" WHERE {where} ORDER BY s DESC, p.person_id, p.idx")
    if limit and not diverse:
        sql += f" LIMIT {int(limit)}"
    rows = store.db.execute(sql, (image_id,) if image_id is not None else ()).fetchall()
    if not diverse:
        return rows
    names = {r[0]: r[1] for r in store.db.execute("SELECT id, file_name FROM images")}
    out = spread(rows, lambda r: r[3], lambda r: _kind(names.get(r[0], ""), r[2], 1))
    return out[:limit] if limit else out


def person_queue(store: Store, limit: int | None = None) -> list[tuple]:
    """(image_id, person_id, expected wrong points, worst point) per person, most expected fixes first.

    The per-person suspicion: the sum of its unverified points' probabilities
    of being wrong.
    """
    sql = (f"SELECT q.image_id, q.id, SUM({_SUS}), MAX({_SUS}) FROM points p JOIN persons q ON q.id=p.person_id"
           " WHERE q.deleted=0 AND p.verified=0 GROUP BY q.id ORDER BY 3 DESC, 4 DESC, q.id")
    if limit:
        sql += f" LIMIT {int(limit)}"
    return store.db.execute(sql).fetchall()
