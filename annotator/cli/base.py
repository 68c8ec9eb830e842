"""`pose-annotator` command line. Thin: parses arguments, calls the core.

User errors (bad paths, corrupt files, wrong keypoint counts) print one line
and exit 2; Ctrl+C exits 130 after whatever was finished has been saved.
Heavy modules (MediaPipe, torch, Dear PyGui) are imported only by the
subcommands that need them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from annotator.core.errors import UserError


def _open(path):
    from annotator.core.project import Project
    return Project.open(path)


def cmd_init(a) -> int:
    from annotator.core.project import Project
    proj, s = Project.create(a.project, a.images, stride=a.stride, name=a.name)
    with proj:
        print(f"{a.project}: {s['added']} sources added ({s['video_frames']} video frames),"
              f" {s['skipped']} already present, {proj.store.count_images()} images in project")
        for name, err in s["failed"]:
            print(f"  unreadable: {err}")
    return 0


def cmd_prefill(a) -> int:
    from annotator.prefill.run import prefill
    with _open(a.project) as proj:
        from annotator.distill.registry import project_model
        landmark_model, model_name, note = project_model(proj, a.model)
        if not a.quiet:
            print(f"landmark model: {note}")
        s = prefill(proj, workers=a.workers, force=a.force, limit=a.limit, landmark_model=landmark_model,
                    model_name=model_name, progress=not a.quiet, tta=False if a.no_tta else True if a.tta else None,
                    retry_failed=a.retry_failed)
        if not s["images"]:
            c = proj.store.counts()
            print(f"nothing to pre-fill: {c.get('images_done', 0)} images already done, {c.get('images_failed', 0)}"
                  " failed (--force redoes unverified images, --retry-failed tries the failed ones again)")
            return 0
        if s["failed"] and not s["done"]:
            errs = proj.store.failures()
            raise UserError(f"pre-fill failed on all {s['failed']} images (first: {errs[0][1] if errs else '?'});"
                            f" `pose-annotator status {a.project}` lists them")
        rate = s["done"] / s["seconds"] if s["seconds"] else 0.0
        print(f"pre-filled {s['done']} images ({s['people']} people), {s['failed']} failed,"
              f" {s['seconds']:.1f}s ({rate:.1f} images/s)")
    return 0


def cmd_status(a) -> int:
    with _open(a.project) as proj:
        from annotator.core.commands import complete_images
        from annotator.review.suspicion import tta_coverage
        c = {**proj.store.counts(), **tta_coverage(proj.store), "images_complete": len(complete_images(proj.store))}
        if a.json:
            print(json.dumps({**c, "failures": proj.store.failures()}, indent=1))
            return 0
        print(f"project {proj.settings['project']['name']} ({proj.root})")
        print(f"  images: {c['images']}  (pending {c.get('images_pending', 0)}, pre-filled "
              f"{c.get('images_done', 0)}, failed {c.get('images_failed', 0)})")
        print(f"  review: to review {c.get('review_to_review', 0)}, in progress {c.get('review_in_progress', 0)},"
              f" verified {c.get('review_verified', 0)}")
        print(f"  complete: {c['images_complete']} images (people verified, nobody missing: C in the app)")
        print(f"  people: {c['persons']} ({c['persons_fully_verified']} fully verified)")
        print(f"  points: {c['points_verified']} verified, {c['points_predicted']} predicted")
        if c["tta_older"]:
            print(f"  review signals: {c['tta_older']} people have re-run features from an older version and are"
                  f" scored without them; `pose-annotator suspicion {a.project} --tta` recomputes them")
        for name, err in proj.store.failures():
            print(f"  failed: {err}")
    return 0


def cmd_export(a) -> int:
    with _open(a.project) as proj:
        frames = proj.store.iter_frames()

        def source(f):
            row = proj.store.image(f.id)
            return proj.source_path(row) if row.kind == "image" else proj.load_rgb(row)
        if a.complete_only:
            from annotator.core.commands import complete_images
            keep = complete_images(proj.store)
            frames = (f for f in frames if f.id in keep)
            print(f"{len(keep)} complete images (people verified, nobody missing) of {proj.store.count_images()}")
        if not proj.store.counts()["persons"]:
            print(f"warning: {a.project} has no people yet: the export holds images only "
                  f"(run `pose-annotator prefill {a.project}` first)", file=sys.stderr)
        if a.format in ("coco", "coco17"):
            from exporters.coco import to_coco, write_json
            data = to_coco(frames, "33" if a.format == "coco" else "17", a.verified_only)
            write_json(data, Path(a.out))
            crowds = sum(1 for x in data["annotations"] if x["iscrowd"])
            print(f"wrote {a.out}: {len(data['images'])} images, {len(data['annotations']) - crowds} people"
                  + (f", {crowds} crowd regions" if crowds else ""))
        elif a.format in ("yolo", "yolo17"):
            from exporters.yolo import write_yolo
            s = write_yolo(frames, Path(a.out), source, "33" if a.format == "yolo" else "17", a.verified_only)
            print(f"wrote {a.out}: {s['images']} images, {s['people']} people")
        elif a.format == "cvat-xml":
            from exporters.cvat_xml import write_cvat_xml
            write_cvat_xml(list(frames), Path(a.out))
            print(f"wrote {a.out}")
        else:
            from exporters import sleap
            s = sleap.write(frames, a.format, Path(a.out), sleap.media_path(proj.root), source, a.verified_only)
            print(f"wrote {a.out}: {s['images']} images, {s['people']} people")
    return 0


def cmd_import(a) -> int:
    from annotator.core.importing import import_frames
    with _open(a.project) as proj:
        if a.format == "coco":
            from exporters.coco import read_coco
            kind, frames = read_coco(Path(a.file))
        elif a.format in ("slp", "dlc", "labelstudio"):
            from exporters import sleap
            kind, frames = sleap.read(Path(a.file), a.format, proj.rel)
        else:
            from exporters.cvat_xml import read_cvat_xml
            kind, frames = "33", read_cvat_xml(Path(a.file))
        from annotator.review.suspicion import update_suspicion
        s = import_frames(proj, frames, a.as_, source=f"import:{Path(a.file).name}",
                          rescore=lambda ids: update_suspicion(proj, ids))
        print(f"imported {a.file} ({kind} keypoints) as {a.as_}: {s['images_matched']} images matched,"
              f" {s['persons_updated']} people updated, {s['persons_added']} added, {s['points_set']} points")
        if s["persons_unchanged"] or s["persons_empty"]:
            print(f"  {s['persons_unchanged']} people already as in the file, unchanged;"
                  f" {s['persons_empty']} annotations without a labelled point, skipped")
        if s["crowd_regions_added"]:
            print(f"  {s['crowd_regions_added']} crowd regions (iscrowd) added")
        if s["unknown_images"]:
            print(f"  {len(s['unknown_images'])} images not in the project, skipped (e.g. {s['unknown_images'][0]})")
    return 0


def cmd_render(a) -> int:
    from annotator.core.render import render_project
    with _open(a.project) as proj:
        s = render_project(proj, a.out, a.limit)
        print(f"rendered {s['rendered']} images to {a.out}")
        for e in s["failed"]:
            print(f"  skipped: {e}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pose-annotator", description="Turn photos/videos of people into a verified "
                                 "33-point pose dataset.")
    from importlib.metadata import PackageNotFoundError, version
    try:
        ver = version("pose-annotator")
    except PackageNotFoundError:
        ver = "unknown (not installed)"
    ap.add_argument("--version", action="version", version=f"pose-annotator {ver}")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("init", help="create a project (or add sources to one)")
    p.add_argument("project")
    p.add_argument("--images", nargs="+", required=True, help="folders, image files, video files")
    p.add_argument("--stride", type=int, default=1, help="use every N-th video frame")
    p.add_argument("--name")
    p.set_defaults(fn=cmd_init)

    p = sub.add_parser("prefill", help="predict 33 landmarks for every person in images not done yet")
    p.add_argument("project")
    p.add_argument("--workers", type=int, help="processes (default: project.toml, 2)")
    p.add_argument("--force", action="store_true", help="redo images already pre-filled (never verified ones)")
    p.add_argument("--retry-failed", action="store_true",
                   help="also try the images that failed before (e.g. a file fixed since, a worker that crashed)")
    p.add_argument("--limit", type=int)
    p.add_argument("--model", default="auto",
                   help="'auto' (the latest accepted distillation round, else MediaPipe), 'mediapipe', 'latest' or 'round-K'")
    runs = p.add_mutually_exclusive_group()
    runs.add_argument("--tta", action="store_true",
                      help="also re-run every person on 8 other views for the review signals (slower; project.toml prefill.tta)")
    runs.add_argument("--no-tta", action="store_true", help="no re-runs, whatever project.toml says (the default)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_prefill)

    p = sub.add_parser("status", help="counts by status, failures")
    p.add_argument("project")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_status)

    p = sub.add_parser("export", help="write a dataset")
    p.add_argument("project")
    p.add_argument("--format", required=True, help="slp, dlc, labelstudio, nwb need the 'sleap' extra",
                   choices=["coco", "coco17", "yolo", "yolo17", "cvat-xml", "slp", "dlc", "labelstudio", "nwb"])
    p.add_argument("--out", required=True, help="a file; a folder for yolo/yolo17/dlc")
    p.add_argument("--verified-only", action="store_true")
    p.add_argument("--complete-only", action="store_true",
                   help="only complete images: every person verified and nobody missing (C in the app)")
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("import", help="merge keypoints from a COCO (17/33), CVAT XML, SLEAP, DeepLabCut or Label Studio file")
    p.add_argument("project")
    p.add_argument("file")
    p.add_argument("--format", choices=["coco", "cvat-xml", "slp", "dlc", "labelstudio"], default="coco",
                   help="dlc: a CSV, or the folder `export --format dlc` wrote")
    p.add_argument("--as", dest="as_", choices=["verified", "predicted"], default="verified")
    p.set_defaults(fn=cmd_import)

    p = sub.add_parser("render", help="draw skeletons on the images into a folder")
    p.add_argument("project")
    p.add_argument("--out", required=True)
    p.add_argument("--limit", type=int)
    p.set_defaults(fn=cmd_render)

    for register in _plugins():
        register(sub)
    return ap


def _plugins():
    """Subcommands that live beside their feature (gui, review, distill, cvat, serve)."""
    import importlib
    out = []
    for mod in ("annotator.cli.gui", "annotator.cli.review", "annotator.cli.distill", "annotator.cli.cvat",
                "annotator.cli.models", "annotator.cli.web"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:
                continue
            raise
        out.append(m.register)
    return out


def _one_line(msg: str) -> str:
    """A message on one line even when a file name in it holds a line break."""
    return msg.replace("\r", "\\r").replace("\n", "\\n")


def main(argv: list[str] | None = None) -> int:
    import sqlite3
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args) or 0
    except UserError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as e:
        # a damaged database file (a page overwritten, cut short), a read-only or full disk: it shows up
        # in whichever query meets it. Constraint and programming errors are bugs and keep their traceback.
        if isinstance(e, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)):
            raise
        where = getattr(args, "project", None)
        where = f"{Path(where) / 'project.db'}: " if where else ""
        damaged = any(w in str(e) for w in ("malformed", "not a database", "no such table", "no such column"))
        print(f"error: {_one_line(where)}{'damaged project database' if damaged else 'database error'}"
              f" ({_one_line(str(e))}){'; restore it from a backup' if damaged else ''}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.filename is None:          # not about a file the user named: a bug or the machine
            raise
        print(f"error: {_one_line(str(e.filename))}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work is saved; run the command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
