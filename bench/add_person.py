"""What a person the pre-fill missed really costs in the app: drawn as a box, filled by the engine.

    .venv/bin/pose-annotator init /tmp/gt --images ../shared/data/pose-gt-dev/images
    .venv/bin/pose-annotator prefill /tmp/gt
    .venv/bin/python bench/add_person.py /tmp/gt ../shared/data/pose-gt-dev/annotations.json

`evaluate`'s click count charges a missed person 1 + one click per labelled point, as if every point
were placed by hand. In the app an annotator drags a box around the person (`a`, one drag) and the
project's engine fills it (`prefill.estimator.person_in_user_box`, the call the GUI makes: the
engine's pose in the box, a template of hidden guesses when it sees nobody). This adds, for every
missed GT person with >= 5 points, what the engine puts in that person's GT box to the pre-fill,
re-evaluates with the same rules, and counts one more click per box: the same figure with the
add-person step measured instead of assumed. --visible-template: where the engine sees nobody, a
visible template skeleton instead of hidden guesses (the app's behaviour before), to compare.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotator.core.media import load_image  # noqa: E402
from annotator.core.project import Project  # noqa: E402
from annotator.core.model import template_person  # noqa: E402
from annotator.prefill.estimator import person_in_user_box  # noqa: E402
from annotator.prefill.run import estimator_settings, make_estimator  # noqa: E402
from annotator.review import metrics, suspicion  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project")
    ap.add_argument("gt", type=Path, help="COCO keypoints file; its images in images/ next to it")
    ap.add_argument("--visible-template", action="store_true", help="templates drawn visible, not as guesses")
    a = ap.parse_args(argv)
    with Project.open(a.project) as proj:
        cands = suspicion.collect(proj)
        preds = suspicion.featurize(cands, suspicion.load_model(proj.store), score=False)
        est = make_estimator(estimator_settings(proj.settings))
    gt = metrics.load_gt(a.gt)
    before = metrics.evaluate(gt, preds, bootstrap=0)
    mapping, _ = metrics.match_images(gt, preds.keys())
    added = {k: list(v) for k, v in preds.items()}
    n_box = n_template = 0
    t0 = time.perf_counter()
    for key, im in mapping.items():
        match = metrics.match_people(metrics.oks_matrix(im.people, preds[key]))
        missed = [gp for g, gp in enumerate(im.people)
                  if g not in match and gp.n_labelled17 >= metrics.MIN_PEOPLE_POINTS]
        if not missed:
            continue
        rgb = load_image(a.gt.parent / "images" / im.file_name)
        for gp in missed:
            person, pose = person_in_user_box(est, rgb, gp.bbox)
            if pose is None and a.visible_template:
                person = template_person(gp.bbox)
            added[key].append(person)
            n_template += pose is None
            n_box += 1
    secs = time.perf_counter() - t0
    after = metrics.evaluate(gt, added, bootstrap=0)
    n = before["n_clicks_people"]

    def parts(r, extra=0.0):
        return (f"{r['clicks_per_person'] + extra:.2f} (missed {r['clicks_missed_per_person']:.2f}, drags "
                f"{r['clicks_drags_per_person']:.2f}, unlabel {r['clicks_unlabel_per_person']:.2f}, deletes "
                f"{r['clicks_deletes_per_person']:.2f}{f', boxes {extra:.2f}' if extra else ''})")
    print(f"{n} GT people with >= {metrics.MIN_PEOPLE_POINTS} points; {n_box} missed by the pre-fill "
          f"(recall {before['person_recall']:.3f})")
    print(f"clicks per person, a missed person placed point by point (evaluate): {parts(before)}")
    print(f"clicks per person, a missed person boxed and filled by the engine:  {parts(after, n_box / n)}")
    print(f"  the boxed people: {n_box - n_template} filled by the engine, {n_template} templates; "
          f"person recall after {after['person_recall']:.3f}; {secs / max(n_box, 1) * 1000:.0f} ms a box")
    # the missed people's own cost, boxed: the project's total change plus what they cost placed by hand
    by_hand = before["clicks_missed_per_person"] * n
    boxed = (after["clicks_per_person"] - before["clicks_per_person"]) * n + n_box + by_hand
    print(f"  the {n_box} missed people: {by_hand:.0f} clicks placed point by point, {boxed:.0f} boxed "
          f"(the box, the fixes, and any delete or unlabel the added people cause elsewhere)")


if __name__ == "__main__":
    main()
