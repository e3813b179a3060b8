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
    """:func:`accuracy_vs_nfe_figure` written to ``path_stem.png`` and ``.svg``; returns both
    paths."""
    figure = accuracy_vs_nfe_figure(summaries, title)
    png, svg = _output_path(path_stem, ".png"), _output_path(path_stem, ".svg")
    figure.savefig(png, dpi=150)
    figure.savefig(svg)
    return png, svg


def accuracy_vs_nfe_figure(summaries: Sequence[Mapping[str, Any]], title: str):
    """Accuracy (%, with 95% CI bars) against mean NFE, one line per policy family, the
    Pareto front dashed with its points ringed and numbered; the key beside the plot names
    each numbered point (the table names every point). Numbers are placed so that none
    overlap another. Log NFE axis when NFE spans 8 times or more. A matplotlib ``Figure``."""
    if not summaries:
        raise ValueError("plot_accuracy_vs_nfe: no summaries to plot")
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError("plots need matplotlib: pip install 'dllm-gym[plot]'") from error

    families: dict[str, list[Mapping[str, Any]]] = {}
    for summary in summaries:
        families.setdefault(summary["policy"], []).append(summary)
    rc = {"font.size": 12, "axes.titlesize": 14, "legend.fontsize": 11, "svg.fonttype": "none"}
    with matplotlib.rc_context(rc):
        figure = Figure(figsize=(11, 5.5), layout="constrained")
        FigureCanvasAgg(figure)  # a renderer, to measure the numbers' extents
        ax = figure.add_subplot()
        markers = "os^Dv<>ph*"  # ten colours cycle; a new marker with each cycle
        for number, (name, group) in enumerate(families.items()):
            group = sorted(group, key=lambda s: float(s["mean_nfe"]))
            x = np.array([float(s["mean_nfe"]) for s in group])
            y = np.array([100 * float(s["accuracy"]) for s in group])
            low = np.array([100 * float(s["accuracy_ci95"][0]) for s in group])
            high = np.array([100 * float(s["accuracy_ci95"][1]) for s in group])
            ax.errorbar(
                x, y, yerr=[y - low, high - y], marker=markers[number // 10 % len(markers)],
                markersize=6, linewidth=1.5, capsize=3, label=name,
            )  # fmt: skip
        points = _points(summaries)
        front = [summaries[i] for i in pareto_front(points)]
        fx = [float(s["mean_nfe"]) for s in front]
        fy = [100 * float(s["accuracy"]) for s in front]
        ax.step(
            fx, fy, where="post", linestyle="--", color="black", linewidth=1, marker="o",
            markersize=14, markerfacecolor="none", markeredgewidth=1.5, label="Pareto front",
            zorder=4,
        )  # fmt: skip
        _nfe_axis(ax, [x for x, _ in points if x > 0])
        ax.set_xlabel("mean NFE (forward passes)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        legend = ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside the data
        key = [f"{k}  {_point_name(s)}" for k, s in enumerate(front, start=1)]
        ax.annotate(
            "Pareto front\n" + "\n".join(key), xy=(0, 0), xycoords=legend, xytext=(0, -8),
            textcoords="offset points", va="top", ha="left", fontsize=9,
        )  # fmt: skip
        _number_points(ax, fx, fy)
    return figure


def _point_name(summary: Mapping[str, Any]) -> str:
    """``policy hyperparameters`` (hyperparameters: a mapping, or text as a table has it)."""
    values = summary.get("hyperparameters") or {}
    text = values if isinstance(values, str) else format_hyperparameters(values)
    return f"{summary['policy']} {text}".rstrip()


def _nfe_axis(ax, nfe: Sequence[float]) -> None:
    """A log NFE axis with plain numbers when NFE spans 8 times or more."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    if nfe and max(nfe) >= 8 * min(nfe):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())


# Offsets (points) tried in turn for a front point's number: above, below, then further out.
_NUMBER_OFFSETS = [
    (dx * r, dy * r)
    for r in (1, 2, 3, 4)
    for dx, dy in ((0, 13), (0, -13), (12, 9), (-12, 9), (12, -9), (-12, -9), (16, 0), (-16, 0))
]


def _number_points(ax, xs: Sequence[float], ys: Sequence[float]) -> None:
    """Number the points 1..n, each at the first offset where its number overlaps no number
    placed before it (measured on the drawn figure)."""
    figure = ax.figure
    figure.draw_without_rendering()  # the final layout, so extents are measured where drawn
    renderer = figure.canvas.get_renderer()
    placed = []
    for k, (x, y) in enumerate(zip(xs, ys, strict=True), start=1):
        label = ax.annotate(
            str(k), (x, y), xytext=_NUMBER_OFFSETS[0], textcoords="offset points",
            ha="center", va="center", fontsize=9, fontweight="bold", zorder=5,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
        )  # fmt: skip
        for offset in _NUMBER_OFFSETS:
            label.xyann = offset
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
        placed.append(label.get_window_extent(renderer))


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
