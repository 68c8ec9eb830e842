"""Does the review queue bring images with missed people forward? recall@20% of missed GT people.

    .venv/bin/pose-annotator init /tmp/gt --images ../shared/data/pose-gt-dev/images
    .venv/bin/pose-annotator prefill /tmp/gt --no-tta
    .venv/bin/python bench/missing_people.py /tmp/gt ../shared/data/pose-gt-dev/annotations.json

A GT person is missed when no pre-filled person matches it (OKS >= the evaluation's match threshold).
The images are ranked by the queue's expected fixes: the points' suspicion alone (weight 0), and with
the expected missed people (review/missing.py) at several weights; recall@F = the share of missed
people whose image is in the first F of the ranking. Also prints the app's own queue order
(image_queue, MISSING_WEIGHT) so the figure is the one an annotator gets.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotator.core.project import Project  # noqa: E402
from annotator.review import metrics  # noqa: E402
from annotator.review.missing import MISSING_WEIGHT, expected_missing  # noqa: E402
from annotator.review.queue import _SUS, image_queue  # noqa: E402
from annotator.review.suspicion import update_suspicion  # noqa: E402


def recall_at(order: list[int], missed: dict[int, int], frac: float) -> float:
    total = sum(missed.values())
    top = order[:math.ceil(frac * len(order))]
    return sum(missed.get(i, 0) for i in top) / total if total else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("project")
    ap.add_argument("gt")
    ap.add_argument("--rescore", action="store_true", help="recompute suspicion and missing-people first")
    a = ap.parse_args()
    with Project.open(a.project) as proj:
        st = proj.store
        if a.rescore:
            update_suspicion(proj, [r.id for r in st.images()])
        gt = metrics.load_gt(a.gt)
        rows = st.images("i.status='done'")
        by_key, _ = metrics.match_images(gt, [r.file_name for r in rows])
        missed, people = {}, 0
        for r in rows:
            g = by_key.get(r.file_name)
            if g is None:
                continue
            preds = st.load_frame(r.id).persons
            m = metrics.match_people(metrics.oks_matrix(g.people, preds))
            people += len(g.people)
            if len(g.people) - len(m):
                missed[r.id] = len(g.people) - len(m)
        ids = [r.id for r in rows if r.file_name in by_key]
        pts = dict(st.db.execute(f"SELECT q.image_id, SUM({_SUS}) FROM persons q JOIN points p ON p.person_id=q.id"
                                 " WHERE q.deleted=0 AND p.verified=0 GROUP BY q.image_id").fetchall())
        miss = {i: expected_missing(st, i) for i in ids}
        n_missed = sum(missed.values())
        print(f"{len(ids)} images, {people} GT people, {n_missed} missed by pre-fill in {len(missed)} images;"
              f" {sum(v > 0 for v in miss.values())} images have open candidate boxes"
              f" ({sum(v > 0 for i, v in miss.items() if i in missed)} of the {len(missed)} with missed people)")
        print(f"{'ranking':<32} {'recall@10%':>10} {'recall@20%':>10} {'recall@30%':>10}")
        for w in (0.0, 4.0, 8.0, 17.0, 33.0, 66.0):
            order = sorted(ids, key=lambda i: (-(pts.get(i, 0.0) + w * miss[i]), i))
            print(f"{'points + %4.0f x missing' % w:<32}"
                  + "".join(f" {recall_at(order, missed, f):10.2f}" for f in (0.1, 0.2, 0.3)))
        rng = np.random.default_rng(0)
        rand = np.mean([[recall_at(list(rng.permutation(ids)), missed, f) for f in (0.1, 0.2, 0.3)]
                        for _ in range(200)], 0)
        print(f"{'random order (mean of 200)':<32}" + "".join(f" {v:10.2f}" for v in rand))
        q = [it.image_id for it in image_queue(st, ("to_review", "in_progress", "verified"))]
        q = [i for i in q if i in set(ids)]
        print(f"{'app queue (weight %g)' % MISSING_WEIGHT:<32}"
              + "".join(f" {recall_at(q, missed, f):10.2f}" for f in (0.1, 0.2, 0.3)))


if __name__ == "__main__":
    main()
