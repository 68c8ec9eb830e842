"""The round report's plot: gold metrics per distillation round (the `rounds --report` figure, the web viewer).

A matplotlib Figure without pyplot (no backend switch, no global state: safe on a server thread and
on a machine without a display); `out` is a file path or a binary file object (the web page
serves it from memory).
"""
from __future__ import annotations

import math


def plot_gold_metrics(project_name: str, rounds: list[dict], out, dpi: int = 100) -> None:
    """PNG of gold OKS AP and PCK@0.05 per round: the student of each round, the teacher it had to beat."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(10, 4))
    ax = fig.subplots(1, 2)
    done = [r for r in rounds if r["record"].get("gold_after")]
    if done:
        base = done[0]["record"]["gold_before"]
        for i, key in enumerate(("oks_ap", "pck_0_05")):
            xs = [0] + [r["k"] for r in done]
            ys = [base.get(key)] + [r["record"]["gold_after"].get(key) for r in done]
            ax[i].plot(xs, [y if y is not None else math.nan for y in ys], "o-", label="student of round")
            for r in done:
                ax[i].plot([r["k"]], [r["record"]["gold_before"].get(key) or math.nan], "s", color="grey",
                           label="teacher" if r is done[0] else None)
                ax[i].annotate(r["status"][0].upper(), (r["k"], r["record"]["gold_after"].get(key) or 0),
                               textcoords="offset points", xytext=(4, 4))
            ax[i].set_xticks(xs)
            ax[i].set_xlabel("round (0 = MediaPipe)")
            ax[i].set_title({"oks_ap": "gold OKS AP", "pck_0_05": "gold PCK@0.05"}[key])
            ax[i].grid(alpha=0.3)
            ax[i].legend(fontsize=8)
    fig.suptitle(f"{project_name}: gold metrics per round (A accepted, R rejected)")
    fig.tight_layout()
    fig.savefig(out, dpi=dpi, format="png")
