"""Statistics of evaluation runs: Wilson intervals, episode summaries, the Pareto front."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default). It always holds the
    observed proportion: at 0 or n successes rounding would otherwise leave it a hair
    outside (an upper end of 0.9999999999999999 for 30 of 30)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))


def summarize(records: Sequence[Mapping[str, Any]], run: Mapping[str, Any]) -> dict[str, Any]:
    """The summary of episode ``records`` of a run described by ``run`` (see ``run.json``).

    ``total_seconds`` is the run's wall time (over all resumed sessions) when its last
    episode ended; ``tokens_per_second`` is ``gen_length * episodes / total_seconds``.
    """
    n = len(records)
    correct = sum(bool(r["correct"]) for r in records)
    total = max((float(r["run_seconds"]) for r in records), default=0.0)
    low, high = wilson_interval(correct, n)
    return {
        **{key: run[key] for key in ("env_id", "overrides", "policy", "hyperparameters")},
        "label": run["label"],
        "gen_length": run["gen_length"],
        "block_length": run["block_length"],
        "episodes": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "accuracy_ci95": [low, high],
        "mean_nfe": mean(r["nfe"] for r in records),
        "tokens_per_nfe": mean(r["tokens_per_nfe"] for r in records),
        "mean_reward": mean(r["reward"] for r in records),
        "tokens_per_second": run["gen_length"] * n / total if total > 0 else None,
        "seconds_per_episode": total / n if n else None,
        "total_seconds": total,
    }


def mean(values: Iterator[Any] | Sequence[Any]) -> float:
    values = [float(v) for v in values]
    return math.fsum(values) / len(values) if values else 0.0


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the ``(mean NFE, accuracy)`` points no other point dominates (lower NFE and
    higher accuracy are better; dominating means at least as good in both and better in one).

    Exact duplicates of a front point are all on the front. Points with a NaN are never on
    it. The indices come in the order of the front: NFE ascending, then index.
    """
    values = [(float(x), float(y)) for x, y in points]
    valid = [i for i, (x, y) in enumerate(values) if not (math.isnan(x) or math.isnan(y))]
    front = [
        i
        for i in valid
        if not any(
            values[j][0] <= values[i][0] and values[j][1] >= values[i][1] and values[j] != values[i]
            for j in valid
        )
    ]
    return sorted(front, key=lambda i: (values[i][0], -values[i][1], i))
