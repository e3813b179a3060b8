"""Plot GRPO training curves: reward, accuracy and mean NFE per iteration from ``log.csv``.

One column per quantity, one line per run (raw values faint, a moving average solid)::

    python scripts/plot_training_curve.py runs/grpo-a1 runs/grpo-a025 \\
        --labels "alpha 1" "alpha 0.25" --out docs/figures/grpo-arith --title "GRPO on Arith"

writes ``--out`` + ``.png`` and ``.svg``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def read_log(run: Path) -> dict[str, np.ndarray]:
    with open(run / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise SystemExit(f"{run / 'log.csv'}: no iterations logged")
    return {key: np.array([float(r[key]) for r in rows]) for key in rows[0]}


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    window = max(1, min(window, len(values)))
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="GRPO out-dirs (with log.csv)")
    parser.add_argument("--labels", nargs="+", default=None)
    parser.add_argument("--window", type=int, default=10, help="moving-average window")
    parser.add_argument("--out", type=Path, required=True, help="path without suffix")
    parser.add_argument("--title", default="GRPO training curves")
    args = parser.parse_args()
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        raise SystemExit(f"--labels: {len(labels)} labels for {len(args.runs)} runs")

    import matplotlib
    from matplotlib.figure import Figure

    panels = (
        ("reward", "mean reward"),
        ("accuracy", "accuracy (%)"),
        ("mean_nfe", "mean NFE (forward passes)"),
    )
    rc = {"font.size": 12, "axes.titlesize": 13, "legend.fontsize": 11, "svg.fonttype": "none"}
    with matplotlib.rc_context(rc):
        figure = Figure(figsize=(14, 4.2), layout="constrained")
        axes = figure.subplots(1, 3)
        for run, label, color in zip(args.runs, labels, matplotlib.colormaps["tab10"].colors,
                                     strict=False):  # fmt: skip
            log = read_log(run)
            for ax, (key, name) in zip(axes, panels, strict=True):
                values = log[key] * (100 if key == "accuracy" else 1)
                ax.plot(log["iteration"], values, color=color, alpha=0.25, linewidth=1)
                ax.plot(log["iteration"], moving_average(values, args.window), color=color,
                        linewidth=2, label=label)  # fmt: skip
                ax.set_xlabel("GRPO iteration")
                ax.set_ylabel(name)
                ax.set_title(name.split(" (")[0])
                ax.grid(alpha=0.3)
        axes[0].legend(loc="best")
        figure.suptitle(
            f"{args.title}: each iteration's rollouts (faint), {args.window}-iteration mean"
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.out.with_name(args.out.name + ".png"), dpi=130)
        figure.savefig(args.out.with_name(args.out.name + ".svg"))
    print(f"wrote {args.out}.png and .svg")


if __name__ == "__main__":
    main()
