"""Missed people: the chance that an image holds people nobody has labelled yet.

A missed person is the most expensive error (every point placed by hand), and
the points queue cannot see it: there are no points. What pre-fill does know
is the person boxes it rejected (under the detector's threshold, or a box the
pose model found no person in): pre-fill keeps them per image in the kv table
(`KV_CANDIDATES`). An image's expected missed people is the sum of those boxes'
probabilities of being a real, unlabelled person, counting only boxes that do
not overlap a person already there.
"""
from __future__ import annotations

import numpy as np

KV_CANDIDATES = "prefill.candidates:"      # + image id: [[x0, y0, x1, y1, score], ...]
OVERLAP = 0.3                              # a candidate box overlapping a labelled person this much is that person


def _iou(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _person_boxes(frame) -> list[tuple]:
    out = []
    for p in frame.persons:
        m = p.labelled
        if m.sum() >= 2:
            x0, y0 = p.xy[m].min(0)
            x1, y1 = p.xy[m].max(0)
            out.append((float(x0), float(y0), float(x1), float(y1)))
    return out


def open_candidates(store, image_id: int, frame=None) -> list[tuple] | None:
    """The image's rejected boxes that no labelled person covers (None: pre-fill kept none, e.g. an
    older run or another engine)."""
    cands = store.get_kv(f"{KV_CANDIDATES}{image_id}")
    if cands is None:
        return None
    frame = frame or store.load_frame(image_id)
    people = _person_boxes(frame)
    out = []
    for c in cands:
        # a person's points span less than its box: grow the point box a little before comparing
        if not any(_iou(c, (x0 - 0.1 * (x1 - x0), y0 - 0.1 * (y1 - y0), x1 + 0.1 * (x1 - x0), y1 + 0.1 * (y1 - y0)))
                   > OVERLAP for x0, y0, x1, y1 in people):
            out.append(tuple(c))
    return out


# P(an open candidate box is a person pre-fill missed | its detector score), measured on pose-gt-dev
# (6,408 open boxes of 136 images, 41 of them on one of the 43 missed GT people; bench/missing_people.py
# --calibration): the detector's score is far from a probability down there, so it is mapped.
SCORE_KNOTS = (0.05, 0.125, 0.175, 0.25, 0.40, 0.60)
P_MISSED = (0.001, 0.007, 0.018, 0.044, 0.136, 0.25)


def p_missed(score) -> np.ndarray:
    return np.interp(np.asarray(score, np.float64), SCORE_KNOTS, P_MISSED)


def expected_missing(store, image_id: int, frame=None) -> float:
    """Expected number of unlabelled people: the sum over open candidate boxes of p_missed(score),
    0 when pre-fill kept no candidates."""
    cands = open_candidates(store, image_id, frame)
    return float(p_missed([c[4] for c in cands]).sum()) if cands else 0.0


KV_EXPECTED = "review.missing:"           # + image id: expected missed people (the queue reads it in SQL)
# What a missed person is worth in the queue's unit (expected wrong points fixed by a visit): the
# points a person has to be given. Chosen on pose-gt-dev (bench/missing_people.py; docs/review.md).
MISSING_WEIGHT = 33.0       # every point of a missed person is to be placed: 33 wrong points, the unit of the points' sum


def update_missing(store, image_ids=None) -> int:
    """Store each image's expected missed people for the queue (images with candidates only);
    returns how many images have some."""
    n = len(KV_CANDIDATES)
    if image_ids is None:
        image_ids = [int(k[n:]) for (k,) in store.db.execute("SELECT key FROM kv WHERE key LIKE ?",
                                                             (KV_CANDIDATES + "%",))]
    out = 0
    with store.tx():
        for iid in image_ids:
            if store.get_kv(f"{KV_CANDIDATES}{iid}") is None:
                continue
            m = expected_missing(store, iid)
            store.set_kv(f"{KV_EXPECTED}{iid}", round(m, 4))
            out += m > 0
    return out
