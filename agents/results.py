"""Results of sweeps for people: the accuracy-vs-NFE figure and Markdown/CSV tables.

Plots need matplotlib (``pip install "dllm-gym[plot]"``).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.policies import format_hyperparameters
from agents.statistics import pareto_front


def _points(summaries: Sequence[Mapping[str, Any]]) -> list[tuple[float, float]]:
    return [(float(s["mean_nfe"]), float(s["accuracy"])) for s in summaries]


def _output_path(path_stem: str | Path, suffix: str) -> Path:
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    return stem.with_name(stem.name + suffix)


def plot_accuracy_vs_nfe(
    summaries: Sequence[Mapping[str, Any]], path_stem: str | Path, title: str
) -> tuple[Path, Path]:
    """Accuracy (%, with 95% CI bars) against mean NFE, one line per policy family, the
    Pareto front dashed with its points ringed and named (log NFE axis when NFE spans 8 times
    or more); written to ``path_stem.png`` and ``.svg``; returns both paths."""
    if not summaries:
        raise ValueError("plot_accuracy_vs_nfe: no summaries to plot")
    try:
        import matplotlib
        from matplotlib.figure import Figure
        from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError("plots need matplotlib: pip install 'dllm-gym[plot]'") from error

    families: dict[str, list[Mapping[str, Any]]] = {}
    for summary in summaries:
        families.setdefault(summary["policy"], []).append(summary)
    rc = {"font.size": 12, "axes.titlesize": 14, "legend.fontsize": 11, "svg.fonttype": "none"}
    on_front = {id(summaries[i]) for i in pareto_front(_points(summaries))}
    with matplotlib.rc_context(rc):
        figure = Figure(figsize=(9.5, 5.5), layout="constrained")
        ax = figure.add_subplot()
        for name, group in families.items():
            group = sorted(group, key=lambda s: float(s["mean_nfe"]))
            x = np.array([float(s["mean_nfe"]) for s in group])
            y = np.array([100 * float(s["accuracy"]) for s in group])
            low = np.array([100 * float(s["accuracy_ci95"][0]) for s in group])
            high = np.array([100 * float(s["accuracy_ci95"][1]) for s in group])
            ax.errorbar(
                x, y, yerr=[y - low, high - y], marker="o", markersize=6, linewidth=1.5,
                capsize=3, label=name,
            )  # fmt: skip
            for xi, yi, summary in zip(x, y, group, strict=True):
                # Only the front's points are named (the table names every point).
                text = format_hyperparameters(summary.get("hyperparameters") or {})
                if text and id(summary) in on_front:
                    ax.annotate(
                        text, (xi, yi), xytext=(9, 3), textcoords="offset points", fontsize=8,
                        alpha=0.8,
                    )  # fmt: skip
        points = _points(summaries)
        front = pareto_front(points)
        fx = [points[i][0] for i in front]
        fy = [100 * points[i][1] for i in front]
        ax.step(
            fx, fy, where="post", linestyle="--", color="black", linewidth=1, marker="o",
            markersize=14, markerfacecolor="none", markeredgewidth=1.5, label="Pareto front",
            zorder=4,
        )  # fmt: skip
        nfe = [x for x, _ in points if x > 0]
        if nfe and max(nfe) >= 8 * min(nfe):  # a wide NFE range: log scale, plain numbers
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("mean NFE (forward passes)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over data
        png, svg = _output_path(path_stem, ".png"), _output_path(path_stem, ".svg")
        figure.savefig(png, dpi=150)
        figure.savefig(svg)
    return png, svg


TABLE_COLUMNS = (
    "policy",
    "hyperparameters",
    "episodes",
    "accuracy (%)",
    "95% CI (%)",
    "mean NFE",
    "tokens/NFE",
    "Pareto front",
)


def write_tables(
    summaries: Sequence[Mapping[str, Any]], path_stem: str | Path
) -> tuple[Path, Path]:
    """One row per summary, in order, to ``path_stem.md`` (Markdown) and ``path_stem.csv``:
    policy, hyperparameters, episodes, accuracy, 95% CI, mean NFE, tokens/NFE, on the front."""
    on_front = set(pareto_front(_points(summaries)))
    rows = []
    for i, s in enumerate(summaries):
        low, high = s["accuracy_ci95"]
        rows.append(
            {
                "policy": s["policy"],
                "hyperparameters": format_hyperparameters(s.get("hyperparameters") or {}),
                "episodes": int(s["episodes"]),
                "accuracy": 100 * float(s["accuracy"]),
                "low": 100 * float(low),
                "high": 100 * float(high),
                "mean_nfe": float(s["mean_nfe"]),
                "tokens_per_nfe": float(s["tokens_per_nfe"]),
                "front": "yes" if i in on_front else "no",
            }
        )
    md = _output_path(path_stem, ".md")
    lines = [
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        cells = [
            r["policy"],
            r["hyperparameters"].replace("|", "\\|") or "-",
            str(r["episodes"]),
            f"{r['accuracy']:.1f}",
            f"{r['low']:.1f}-{r['high']:.1f}",
            f"{r['mean_nfe']:.2f}",
            f"{r['tokens_per_nfe']:.2f}",
            r["front"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")

    path = _output_path(path_stem, ".csv")
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["policy", "hyperparameters", "episodes", "accuracy_pct", "ci95_low_pct",
             "ci95_high_pct", "mean_nfe", "tokens_per_nfe", "pareto_front"]
        )  # fmt: skip
        for r in rows:
            writer.writerow(
                [r["policy"], r["hyperparameters"], r["episodes"], r["accuracy"], r["low"],
                 r["high"], r["mean_nfe"], r["tokens_per_nfe"], r["front"]]
            )  # fmt: skip
    return md, path
