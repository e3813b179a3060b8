"""Redraw an accuracy-vs-NFE figure from the CSV table written beside it, without evaluating
anything again (for a change of the figure's layout, not of its numbers).

    python scripts/replot_pareto.py docs/figures/learned-arith-full.csv \
        --title "Arith full diffusion (L = 96), 300 test problems"

writes ``docs/figures/learned-arith-full.png`` and ``.svg`` (the CSV's stem; ``--out`` to
change it). The table's hyperparameters are shown as written there.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from agents import results


def read_summaries(path: Path) -> list[dict]:
    """The rows of a table written by :func:`agents.results.write_tables` as summaries."""
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        raise SystemExit(f"{path}: no rows")
    return [
        {
            "policy": row["policy"],
            "hyperparameters": row["hyperparameters"],  # the table's text, shown as it is
            "episodes": int(row["episodes"]),
            "accuracy": float(row["accuracy_pct"]) / 100,
            "accuracy_ci95": (float(row["ci95_low_pct"]) / 100, float(row["ci95_high_pct"]) / 100),
            "mean_nfe": float(row["mean_nfe"]),
        }
        for row in rows
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("table", type=Path, help="CSV table written beside a figure")
    parser.add_argument("--title", required=True, help="the figure's title")
    parser.add_argument("--out", type=Path, help="path stem of the figure (default: the CSV's)")
    args = parser.parse_args()
    stem = args.out or args.table.with_suffix("")
    png, svg = results.plot_accuracy_vs_nfe(read_summaries(args.table), stem, args.title)
    print(f"wrote {png} and {svg}")


if __name__ == "__main__":
    main()
