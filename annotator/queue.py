"""Review order: what an annotator should look at first.

Each unverified point has a suspicion score (how likely it is wrong; see
suspicion.py); without one, 1 - model confidence stands in. The point queue
is that score, highest first; the image queue ranks images by the expected
number of wrong points a visit fixes, so one image visit is worth the most.
"""
from __future__ import annotations

from dataclasses import dataclass

from .store import Store

_SUS = "COALESCE(p.suspicion, 1.0 - COALESCE(p.conf, 0.0))"


@dataclass
class QueueItem:
    image_id: int
    file_name: str
    score: float          # expected wrong points fixed by reviewing this image
    top: float            # the single most suspicious point
    review_state: str
    n_unverified: int


def image_queue(store: Store, states: tuple[str, ...] = ("to_review", "in_progress"),
                limit: int | None = None) -> list[QueueItem]:
    """Images ordered by expected gain; images without people come last, verified ones are left out."""
    marks = ",".join("?" * len(states))
    sql = (f"SELECT i.id, i.file_name, COALESCE(SUM(CASE WHEN p.verified=0 THEN {_SUS} END), 0),"
           f" COALESCE(MAX(CASE WHEN p.verified=0 THEN {_SUS} END), 0), i.review_state,"
           " COALESCE(SUM(1 - p.verified), 0)"
           " FROM images i LEFT JOIN persons q ON q.image_id=i.id AND q.deleted=0"
           " LEFT JOIN points p ON p.person_id=q.id"
           f" WHERE i.review_state IN ({marks}) AND i.status != 'failed'"
           " GROUP BY i.id ORDER BY 3 DESC, 4 DESC, i.id")
    if limit:
        sql += f" LIMIT {int(limit)}"
    return [QueueItem(*r) for r in store.db.execute(sql, states)]


def point_queue(store: Store, limit: int | None = None, image_id: int | None = None) -> list[tuple]:
    """(image_id, person_id, idx, suspicion) of unverified points, most suspicious first."""
    where = "q.deleted=0 AND p.verified=0" + (" AND q.image_id=?" if image_id is not None else "")
    sql = (f"SELECT q.image_id, p.person_id, p.idx, {_SUS} AS s FROM points p JOIN persons q ON q.id=p.person_id"
           f" WHERE {where} ORDER BY s DESC, p.person_id, p.idx")
    if limit:
        sql += f" LIMIT {int(limit)}"
    return store.db.execute(sql, (image_id,) if image_id is not None else ()).fetchall()
