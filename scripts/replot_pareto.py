"""Redraw an accuracy-vs-NFE figure from the CSV tables written beside figures, without
evaluating anything again (a change of the figure's layout, or runs of two sweeps in one).

    python scripts/replot_pareto.py docs/figures/learned-arith-full.csv \
        --title "Arith full diffusion (L = 96), 300 test problems"
    python scripts/replot_pareto.py docs/figures/pareto-arith.csv runs/new/pareto.csv \
        --out docs/figures/pareto-arith --tables --title "..."

writes ``docs/figures/learned-arith-full.png`` and ``.svg`` (the first CSV's stem; ``--out``
to change it). Several tables are drawn as one (rows in order); ``--tables`` also writes the
joined Markdown and CSV tables, the Pareto front recomputed over every row.
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
            "tokens_per_nfe": float(row["tokens_per_nfe"]),
        }
        for row in rows
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", type=Path, nargs="+", help="CSV tables written beside figures")
    parser.add_argument("--title", required=True, help="the figure's title")
    parser.add_argument("--out", type=Path, help="path stem of the outputs (default: first CSV's)")
    parser.add_argument("--tables", dest="write_tables", action="store_true",
                        help="also write the joined .md and .csv tables")  # fmt: skip
    args = parser.parse_args()
    stem = args.out or args.tables[0].with_suffix("")
    summaries = [summary for table in args.tables for summary in read_summaries(table)]
    png, svg = results.plot_accuracy_vs_nfe(summaries, stem, args.title)
    print(f"wrote {png} and {svg}")
    if args.write_tables:
        md, csv_path = results.write_tables(summaries, stem)
        print(f"wrote {md} and {csv_path}")


if __name__ == "__main__":
    main()
