"""`distill` and `rounds` subcommands (loaded by cli.py's plugin list).

distill: run pseudo-label distillation rounds (needs torch: pip install .[train]).
rounds: list the project's rounds, write a report with a plot of gold metrics
per round, or export a round's student to ONNX.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from annotator.core.errors import UserError


def _open(path):
    from annotator.core.project import Project
    return Project.open(path)


def cmd_distill(a) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError("distill needs torch (install with pip install .[train])") from None
    from annotator.distill.rounds import Config, run_rounds
    cfg = Config(mode=a.mode, epochs=a.epochs, threads=a.threads)
    if a.gold_fraction is not None:
        cfg.gold_fraction = a.gold_fraction
    with _open(a.project) as proj:
        rs = run_rounds(proj, a.rounds, cfg, quiet=a.quiet)
        for r in rs:
            print(_line(r))
    return 0


def _fmt(v, f="{:.3f}"):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f.format(v)


def _line(r: dict) -> str:
    rec = r["record"]
    gb, ga = rec.get("gold_before", {}), rec.get("gold_after", {})
    c = rec.get("counts", {})
    secs = rec.get("seconds", {}).get("total")
    return (f"round {r['k']}: {r['status']:<11} teacher {r['teacher']:<10} mode {r['mode']:<4}"
            f" people {c.get('people', '-')} (verified pts {c.get('verified_points', '-')},"
            f" pseudo {c.get('pseudo_accepted', '-')}/{c.get('pseudo_candidates', '-')})"
            f" gold AP {_fmt(gb.get('oks_ap'))}->{_fmt(ga.get('oks_ap'))}"
            f" PCK@0.05 {_fmt(gb.get('pck_0_05'))}->{_fmt(ga.get('pck_0_05'))}"
            f" {_fmt(secs, '{:.0f}')}s" + (f"\n    {r['reason']}" if r.get("reason") else ""))


def write_report(proj, rounds: list[dict], out: Path) -> Path:
    """rounds.json, rounds.md and gold_metrics.png (matplotlib Agg) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "rounds.json").write_text(json.dumps(rounds, indent=1, default=str))
    lines = ["# Distillation rounds", "", "| round | status | teacher | mode | people | pseudo pts | gold OKS AP"
             " before | after | PCK@0.05 before | after | seconds | model sha256 |", "|" + "---|" * 12]
    for r in rounds:
        rec = r["record"]
        gb, ga, c = rec.get("gold_before", {}), rec.get("gold_after", {}), rec.get("counts", {})
        lines.append(f"| {r['k']} | {r['status']} | {r['teacher']} | {r['mode']} | {c.get('people', '-')} |"
                     f" {c.get('pseudo_accepted', '-')} | {_fmt(gb.get('oks_ap'))} | {_fmt(ga.get('oks_ap'))} |"
                     f" {_fmt(gb.get('pck_0_05'))} | {_fmt(ga.get('pck_0_05'))} |"
                     f" {_fmt(rec.get('seconds', {}).get('total'), '{:.0f}')} | {(r['model_sha256'] or '')[:12]} |")
    lines.append("")
    for r in rounds:
        if r.get("reason"):
            lines.append(f"- round {r['k']}: {r['reason']}")
    lines.append("\n![gold metrics per round](gold_metrics.png)\n")
    (out / "rounds.md").write_text("\n".join(lines))
    from annotator.distill.report import plot_gold_metrics
    png = out / "gold_metrics.png"
    plot_gold_metrics(proj.settings["project"]["name"], rounds, png)
    return png


def cmd_rounds(a) -> int:
    from annotator.distill import registry as reg
    with _open(a.project) as proj:
        rs = reg.rounds(proj.store)
        if a.export_onnx:
            k, out = a.export_onnx
            r = reg.get_round(proj.store, int(k)) if str(k).isdigit() else None
            if r is None or not r["model_path"]:
                raise UserError(f"{proj.root}: no round {k} with a model")
            from annotator.prefill.student_runtime import export_checked, load_student, make_spec
            st = load_student(make_spec(Path(proj.root) / r["model_path"], r["model_sha256"]))
            diffs = export_checked(st, out)
            print(f"wrote {out} (round {k}; onnxruntime vs torch max diff: "
                  + ", ".join(f"{n} {d:.2e}" for n, d in diffs.items()) + ")")
            return 0
        if not rs:
            print("no distillation rounds yet (pose-annotator distill PROJECT)")
        for r in rs:
            print(_line(r))
        if a.report:
            png = write_report(proj, rs, Path(a.report))
            print(f"wrote {Path(a.report) / 'rounds.md'} and {png}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("distill", help="train a student on verified + pseudo-labelled points, guarded by gold")
    p.add_argument("project")
    p.add_argument("--rounds", type=int, default=1, help="rounds to run (stops at the first rejected one)")
    p.add_argument("--mode", choices=["head", "full"], default="full",
                   help="full: fine-tune every layer (default; ~4 min a round on pose-gt-dev, 2 cores);"
                        " head: only the landmark layer on frozen features (~40 s, smaller gains)")
    p.add_argument("--epochs", type=int, help="default 40 (head) / 3 (full)")
    p.add_argument("--gold-fraction", type=float,
                   help="share of verified images frozen as gold the first time (default 0.35)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_distill)

    p = sub.add_parser("rounds", help="list distillation rounds; --report DIR writes a table and a plot")
    p.add_argument("project")
    p.add_argument("--report", help="folder for rounds.md, rounds.json and gold_metrics.png")
    p.add_argument("--export-onnx", nargs=2, metavar=("K", "OUT"),
                   help="write round K's student as ONNX (checked against torch with onnxruntime)")
    p.set_defaults(fn=cmd_rounds)
