"""Place learned policies on the heuristics' accuracy-NFE figure and measure their gap to the front.

Reads the heuristic summaries of a ``dllm-gym sweep`` folder (``*/summary.json``), evaluates each
learned checkpoint on the same problems of the same env, then writes one figure and table with
all of them (``OUT/pareto.png``, ``.svg``, ``.md``, ``.csv``) and prints, for every learned
policy, the best heuristic accuracy at no more than its mean NFE (the heuristics' Pareto front
read as a step function) and the difference in points::

    python scripts/learned_pareto.py DLLMUnmask-Arith-v0 --sweep runs/sweep-arith \\
        --policy "alpha 1" runs/grpo-a1/policy --policy "alpha 0.25" runs/grpo-a025/policy \\
        --episodes 400 --out runs/learned-arith

``--policy LABEL PATH`` may repeat; ``--set gen_length=64`` evaluates at other env settings
(for transfer), then ``--sweep`` must hold heuristics run with the same settings. Each policy
decodes as its checkpoint says (``extra.evaluation``; deterministic when absent) unless
``--decoding deterministic`` or ``--decoding sampled --temperature T`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from agents import evaluate as evaluation
from agents import results
from agents.cli import parse_assignments
from agents.policy import LearnedPolicy
from agents.sweep import folder_name


def heuristic_summaries(folder: Path, env_id: str, episodes: int, overrides: dict) -> list[dict]:
    """The sweep's summaries, checked to be of the same env, settings and problem count."""
    summaries = []
    for path in sorted(folder.glob("*/summary.json")):
        summary = json.loads(path.read_text())
        if summary["policy"] == LearnedPolicy.name:
            continue
        same = (summary["env_id"], summary["episodes"], summary.get("overrides") or {})
        if same != (env_id, episodes, overrides):
            raise SystemExit(
                f"{path}: env {same[0]}, {same[1]} episodes, overrides {same[2]}; expected "
                f"{env_id}, {episodes}, {overrides}"
            )
        summaries.append(summary)
    if not summaries:
        raise SystemExit(f"--sweep {folder}: no */summary.json of heuristics found")
    return summaries


def front_accuracy_at(summaries: list[dict], nfe: float) -> tuple[float, dict | None]:
    """Best accuracy of any summary with mean NFE at most ``nfe`` (0 and None when none)."""
    eligible = [s for s in summaries if float(s["mean_nfe"]) <= nfe]
    if not eligible:
        return 0.0, None
    best = max(eligible, key=lambda s: float(s["accuracy"]))
    return float(best["accuracy"]), best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("env_id")
    parser.add_argument("--sweep", type=Path, required=True, help="dllm-gym sweep output folder")
    parser.add_argument(
        "--policy", nargs=2, action="append", required=True, metavar=("LABEL", "PATH")
    )
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--num-envs", type=int, default=50)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument(
        "--decoding",
        choices=("checkpoint", "deterministic", "sampled"),
        default="checkpoint",
        help="checkpoint: the mode its config.json's extra.evaluation names (deterministic when "
        "it names none); deterministic: logit > 0; sampled: draws (seed 0) at --temperature",
    )
    parser.add_argument("--temperature", type=float, default=1.0, help="with --decoding sampled")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default=None)
    args = parser.parse_args()

    overrides = parse_assignments(args.set, "--set")
    heuristics = heuristic_summaries(args.sweep, args.env_id, args.episodes, overrides)
    decoding = {
        "checkpoint": {},
        "deterministic": {"deterministic": True},
        "sampled": {"deterministic": False, "temperature": args.temperature, "seed": 0},
    }[args.decoding]
    learned: list[dict[str, Any]] = []
    for label, path in args.policy:
        policy = LearnedPolicy.load(path, **decoding)
        summary = evaluation.evaluate(
            policy, args.env_id, episodes=args.episodes, num_envs=args.num_envs,
            overrides=overrides, out_dir=args.out / folder_name(label),
            progress=False,
        )  # fmt: skip
        summary["hyperparameters"] = {"run": label}
        learned.append(summary)

    summaries = heuristics + learned
    title = args.title or f"{args.env_id}: learned policies and heuristics"
    results.plot_accuracy_vs_nfe(summaries, args.out / "pareto", title)
    results.write_tables(summaries, args.out / "pareto")
    print("| learned | accuracy (%) | mean NFE | best heuristic at <= NFE | its acc. (%) | gap |")
    print("|---|---:|---:|---|---:|---:|")
    for summary in learned:
        accuracy, nfe = float(summary["accuracy"]), float(summary["mean_nfe"])
        best_accuracy, best = front_accuracy_at(heuristics, nfe)
        name = best["label"] if best else "-"
        print(
            f"| {summary['hyperparameters']['run']} | {100 * accuracy:.1f} | {nfe:.2f} | {name} "
            f"| {100 * best_accuracy:.1f} | {100 * (accuracy - best_accuracy):+.1f} |"
        )
    print(f"figure: {args.out / 'pareto.png'}; table: {args.out / 'pareto.md'}")


if __name__ == "__main__":
    main()
