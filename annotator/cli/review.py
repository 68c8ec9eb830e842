"""`evaluate`, `queue` and `suspicion` subcommands (loaded by cli.py's plugin list).

evaluate: how good are the project's current points against a ground-truth
file, and how well does the review queue find the wrong ones (the combined
suspicion next to each signal alone, MediaPipe's confidence among them).
queue: what to review first. suspicion: recompute, or re-calibrate, scores.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from annotator.core.errors import UserError

SPLITS = ("all", "cal", "held")


def _open(path):
    from annotator.core.project import Project
    return Project.open(path)


def _split_filter(gt, names: list[str], split: str) -> list[str]:
    """The prediction names whose GT image falls in the split (calibration.assign_splits)."""
    if split == "all":
        return names
    from annotator.review import metrics
    from annotator.review.calibration import assign_splits
    mapping, _ = metrics.match_images(gt, names)
    part = assign_splits([im.file_name for im in gt.images])
    return [n for n in names if n in mapping and part[mapping[n].file_name] == split]


def _flat(result: dict) -> dict:
    """JSON-ready: nested per-joint errors become error_px_<joint>, NaN becomes null."""
    out = {}
    for k, v in result.items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                out[f"{k.replace('per_joint_', '')}_{kk}"] = vv
        else:
            out[k] = v
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def signal_table(figs: dict[str, dict]) -> str:
    """Side-by-side queue recall per ordering signal."""
    from annotator.review.suspicion import SIGNALS
    lines = [f"  {'queue ordered by':<16} {'@10%':>6} {'@20%':>6} {'@30%':>6} {'AUC':>6}  what it measures"]
    labels = {**SIGNALS, "suspicion": "calibrated combination (stored suspicion)",
              "diverse": "the combination, spread over folders and body regions (--diverse)",
              "conf": "MediaPipe visibility x presence alone (1 - conf)"}
    for name, f in figs.items():
        def v(k):
            x = f.get(k)
            return "   n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:6.3f}"
        lines.append(f"  {name:<16} {v('queue_recall_at_0_1')} {v('queue_recall_at_0_2')} {v('queue_recall_at_0_3')}"
                     f" {v('auc')}  {labels.get(name, '')}")
    any_f = next(iter(figs.values()), {})
    lines.append(f"  {'random':<16} {any_f.get('random_recall_at_0_1', math.nan):6.3f} "
                 f"{any_f.get('random_recall_at_0_2', math.nan):6.3f} {any_f.get('random_recall_at_0_3', math.nan):6.3f}")
    lines.append(f"  {'oracle':<16} {any_f.get('oracle_recall_at_0_1', math.nan):6.3f} "
                 f"{any_f.get('oracle_recall_at_0_2', math.nan):6.3f} {any_f.get('oracle_recall_at_0_3', math.nan):6.3f}")
    return "\n".join(lines)


def _diverse_figures(rows: list[dict]) -> dict:
    """Queue recall when the points are taken in `queue --points --diverse` order."""
    from annotator.review import metrics
    from annotator.review.calibration import auc
    from annotator.review.queue import _kind, spread
    q = metrics.queue_rows(rows)
    order = spread(list(range(len(q))), lambda k: metrics._row_score(q[k], "suspicion"),
                   lambda k: _kind(q[k]["pred_key"], q[k]["bp"], 1))
    score = [0.0] * len(q)
    for pos, k in enumerate(order):
        score[k] = float(len(q) - pos)
    fig = metrics.queue_figures(rows, scores=score)
    fig["auc"] = auc(score, [r["needs_fix"] for r in q]) if q else math.nan
    return fig


def run_evaluate(project, gt_path, split: str = "all", signals: bool = True) -> tuple[dict, str]:
    """(flat result, printable report) for the project's current points against a GT file."""
    from annotator.review import metrics
    from annotator.review import suspicion
    gt = metrics.load_gt(gt_path)
    cands = suspicion.collect(project)
    if not cands:
        raise UserError(f"{project.root}: no pre-filled images to evaluate (run prefill first)")
    names = _split_filter(gt, list(cands), split)
    if not names:
        raise UserError(f"{gt.name}: no project image falls in the {split!r} split")
    model = suspicion.load_model(project.store)
    preds = suspicion.featurize({n: cands[n] for n in names}, model, score=False)
    result = metrics.evaluate(gt, preds)
    result["split"] = split
    report = [metrics.format_report(result)]
    n_unscored = sum(int(math.isnan(x)) for ps in preds.values() for p in ps for x in p.suspicion)
    if n_unscored:
        report.append(f"  note: {n_unscored} points have no stored suspicion (1 - confidence stands in); "
                      f"run `pose-annotator suspicion {project.root}`")
    trained = model.meta.get("trained_on") or {}
    if trained:
        report.append(f"  suspicion model: fit on {trained.get('gt', '?')} split {trained.get('split', '?')!r} "
                      f"({trained.get('images', '?')} images)")
        mapping, _ = metrics.match_images(gt, names)
        seen = set(trained.get("files") or ()) & {im.file_name for im in mapping.values()}
        if seen:
            report.append(f"  note: {len(seen)} of these images were used to fit the suspicion model; "
                          "--split held reports on images it has not seen")
    if signals:
        rows = metrics.point_table(gt, preds)
        figs = suspicion.signal_figures(rows, ["suspicion", "conf"] + [k for k in suspicion.SIGNALS if k != "conf"])
        figs["diverse"] = _diverse_figures(rows)
        report.append("Review-queue recall by ordering signal (same points, same needs-fixing rule):")
        report.append(signal_table(figs))
        for name, f in figs.items():
            if name == "suspicion":
                result["queue_auc"] = f["auc"]
                continue
            for k in ("queue_recall_at_0_1", "queue_recall_at_0_2", "queue_recall_at_0_3"):
                result[f"{name}_{k}"] = f[k]
            result[f"{name}_queue_auc"] = f["auc"]
    return _flat(result), "\n".join(report)


def cmd_evaluate(a) -> int:
    with _open(a.project) as proj:
        result, report = run_evaluate(proj, a.gt, a.split, not a.no_signals)
    print(report)
    if a.json:
        out = Path(a.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=1, sort_keys=True))
        os.replace(tmp, out)
        print(f"wrote {out}")
    return 0


def cmd_queue(a) -> int:
    from annotator.core import skeleton as sk
    from annotator.review.queue import image_queue, person_queue, point_queue
    with _open(a.project) as proj:
        st = proj.store
        if a.people:
            names = {r.id: r.file_name for r in st.images()}
            print(f"{'#':>4} {'expected':>8} {'worst':>6} person  image")
            for n, (iid, pid, exp, worst) in enumerate(person_queue(st, a.limit), 1):
                print(f"{n:>4} {exp:8.2f} {worst:6.3f} {pid:>6}  {names.get(iid, iid)}")
            return 0
        if a.points:
            rows = point_queue(st, a.limit, diverse=a.diverse)
            names = {r.id: r.file_name for r in st.images()}
            print(f"{'#':>4} {'suspicion':>9}  {'joint':<18} person  image")
            for n, (iid, pid, idx, s) in enumerate(rows, 1):
                print(f"{n:>4} {s:9.3f}  {sk.NAMES[idx]:<18} {pid:>6}  {names.get(iid, iid)}")
            return 0
        items = image_queue(st, limit=a.limit, diverse=a.diverse)
        print(f"{'#':>4} {'expected':>8} {'worst':>6} {'points':>6}  {'state':<11} image"
              + ("  [kind]" if a.diverse else ""))
        for n, it in enumerate(items, 1):
            print(f"{n:>4} {it.score:8.2f} {it.top:6.3f} {it.n_unverified:>6}  {it.review_state:<11} {it.file_name}"
                  + (f"  [{it.kind}]" if a.diverse else ""))
        if not items:
            print("nothing to review")
    return 0


def cmd_suspicion(a) -> int:
    from annotator.prefill import rerun
    from annotator.review import suspicion
    if a.calibrate and a.gt:
        from annotator.review import metrics
        gt = metrics.load_gt(a.gt)            # a bad file fails before any slow work
    with _open(a.project) as proj:
        st = proj.store
        if a.reset:
            st.set_kv(suspicion.KV_CALIBRATION, None)
            print("project calibration removed; using the shipped default")
        if a.import_model:
            try:
                d = json.loads(Path(a.import_model).read_text(encoding="utf-8"))
                model = suspicion.SuspicionModel.from_json(d, a.import_model)
            except FileNotFoundError:
                raise UserError(f"{a.import_model}: no such file") from None
            except (json.JSONDecodeError, ValueError, KeyError) as e:
                raise UserError(f"{a.import_model}: not a suspicion model ({e})") from None
            suspicion.save_model(st, model)
            print(f"using the suspicion model from {a.import_model}")
        if a.tta or a.calibrate:
            from tqdm import tqdm
            tqdm.monitor_interval = 0       # no monitor thread, so the workers below may fork
            n = len(suspicion._image_ids(st, None))
            with tqdm(total=n, unit="img", desc="TTA", disable=a.quiet) as bar:
                workers = a.workers or int(proj.settings["prefill"].get("workers", 2))
                s = rerun.compute_tta(proj, progress=bar.update, workers=workers)
            print(f"TTA: {s['people']} people in {s['seconds']:.1f}s")
        if a.calibrate:
            if a.gt:
                cands = suspicion.collect(proj, include_empty=False)
                names = _split_filter(gt, list(cands), a.split)
                cands, truth, keypoints = {n: cands[n] for n in names}, gt, "coco17"
                where = f"{a.gt} ({a.split} split)"
                mapping, _ = metrics.match_images(gt, names)
                files = sorted(im.file_name for im in mapping.values())
            else:
                truth, cands = suspicion.project_truth(proj)
                keypoints, where, files = "all", "the project's verified points", []
            try:
                model, rep = suspicion.fit_model(truth, cands, keypoints=keypoints, meta={"trained_on": {
                    "gt": Path(gt.name).name if a.gt else "verified points", "split": a.split if a.gt else "all",
                    "images": len(cands), "files": files}})
            except ValueError as e:
                hint = "" if a.gt else "; verify more people, or pass --gt GT.json"
                raise UserError(f"calibration on {where}: {e}{hint}") from None
            suspicion.save_model(st, model)
            print(f"calibrated on {rep['n_points']} points of {rep['n_images']} images from {where}, "
                  f"{rep['n_needs_fix']} needing a fix")
            for which, cal in (("with the engine's or re-run signals", model.full),
                               ("without them (cheap)", model.cheap)):
                print(f"  {which}: " + ", ".join(f"{f} {c:+.2f}" for f, c in zip(cal.features, cal.coef)))
        if a.export_model:
            Path(a.export_model).write_text(json.dumps(suspicion.load_model(st).to_json(), indent=1))
            print(f"wrote {a.export_model}")
        s = suspicion.update_suspicion(proj)
        print(f"suspicion: {s['people']} people on {s['images']} images scored in {s['seconds']:.1f}s"
              f" ({s['people_with_tta']} with engine or re-run signals)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="compare the project's points with COCO keypoint ground truth")
    p.add_argument("project")
    p.add_argument("--gt", required=True, help="COCO keypoints JSON (17 or 33 points), images matched by file name")
    p.add_argument("--json", help="also write the figures to this file (flat JSON)")
    p.add_argument("--split", choices=SPLITS, default="all",
                   help="only the calibration ('cal') or held-out ('held') half of the GT images")
    p.add_argument("--no-signals", action="store_true", help="skip the per-signal queue table")
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("queue", help="what to review first: images (or points) by expected fixes")
    p.add_argument("project")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--diverse", action="store_true", help="spread the first items over kinds of images")
    p.add_argument("--points", action="store_true", help="list single points instead of images")
    p.add_argument("--people", action="store_true", help="list people by expected wrong points")
    p.set_defaults(fn=cmd_queue)

    p = sub.add_parser("suspicion", help="recompute suspicion scores (optionally TTA signals, calibration)")
    p.add_argument("project")
    p.add_argument("--tta", action="store_true", help="run the transformed-crop predictions where missing (slow)")
    p.add_argument("--workers", type=int, help="processes for --tta (default: project.toml prefill.workers)")
    p.add_argument("--calibrate", action="store_true",
                   help="fit the combination on the project's verified points, or on --gt (implies --tta)")
    p.add_argument("--gt", help="ground truth to calibrate on instead of the verified points")
    p.add_argument("--split", choices=SPLITS, default="cal", help="which GT images to calibrate on")
    p.add_argument("--import-model", help="use a suspicion model JSON (from --export-model)")
    p.add_argument("--export-model", help="write the model in use to a JSON file")
    p.add_argument("--reset", action="store_true", help="forget the project's calibration (use the default)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_suspicion)
