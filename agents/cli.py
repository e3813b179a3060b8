"""The ``dllm-gym`` command: list the environments, evaluate and sweep policies, watch one play.

::

    dllm-gym list
    dllm-gym eval DLLMUnmask-Arith-v0 --policy threshold --param tau=0.9 --episodes 200
    dllm-gym sweep DLLMUnmask-Arith-v0 --episodes 200 --out runs/sweep-arith
    dllm-gym play DLLMUnmask-Arith-v0 --policy top_k --param steps_per_block=8 --index 3
    dllm-gym train DLLMUnmask-Arith-v0 --alpha 1.0 --iterations 150 --out-dir runs/grpo

Settings of the environment are overridden with ``--set name=value`` (``--set gen_length=96``),
hyperparameters of a policy with ``--param name=value``; values are read as YAML scalars
(``0.9``, ``8``, ``true``, ``[margin, entropy]``). A user mistake (unknown id, policy or
setting, a value out of range, a path that cannot be written, a model that is not available)
ends with one line on standard error and exit status 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import yaml
from gymnasium.vector import AutoresetMode

import dllm_gym
from agents import evaluate as evaluation
from agents import grpo, results
from agents.arguments import add_dataclass_arguments, dataclass_from_namespace
from agents.heuristics import DEFAULT_GRIDS, POLICIES, make_policy
from agents.policies import policy_label
from agents.policy import LearnedPolicy, shipped_checkpoint
from agents.rollout import run_episodes
from agents.sweep import sweep
from dllm_gym.distributed import ShardError

ID_PREFIX = "DLLMUnmask-"
# User mistakes: one line and exit status 2. Anything else is a bug and shows its traceback.
USER_ERRORS = (
    ValueError, OSError, gym.error.Error, dllm_gym.ModelUnavailableError, ShardError,
)  # fmt: skip


def parse_assignments(items: Sequence[str], flag: str) -> dict[str, Any]:
    """``["tau=0.9", "k=4"]`` -> ``{"tau": 0.9, "k": 4}``, values as YAML scalars."""
    parsed: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"{flag}: expected name=value, got {item!r}")
        try:
            parsed[name] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise ValueError(f"{flag}: cannot read the value of {name!r}: {value!r}") from error
    return parsed


def build_policy(name: str, hyperparameters: dict[str, Any], env_id: str | None = None):
    """A heuristic by name, or ``learned`` from ``checkpoint=PATH`` (a policy folder) or
    ``checkpoint=shipped`` (the policy shipped for ``env_id``)."""
    if name != LearnedPolicy.name:
        return make_policy(name, **hyperparameters)
    settings = dict(hyperparameters)
    checkpoint = settings.pop("checkpoint", None)
    if checkpoint is None:
        raise ValueError(
            "learned: give the policy folder with --param checkpoint=PATH (or =shipped)"
        )
    if checkpoint == "shipped":
        if env_id is None:
            raise ValueError("learned: checkpoint=shipped needs the env id")
        checkpoint = shipped_checkpoint(env_id)
    unknown = sorted(set(settings) - {"deterministic", "temperature", "seed"})
    if unknown:
        raise ValueError(
            f"learned: unknown hyperparameter(s) {unknown}; valid hyperparameters: "
            "['checkpoint', 'deterministic', 'seed', 'temperature']"
        )
    return LearnedPolicy.load(str(checkpoint), **settings)


def check_env_id(env_id: str) -> None:
    if env_id not in gym.registry:
        known = ", ".join(registered_ids())
        raise ValueError(f"unknown environment id {env_id!r}; choose one of {known}")


def registered_ids() -> list[str]:
    return sorted(name for name in gym.registry if name.startswith(ID_PREFIX))


def settings_of(env_id: str, overrides: dict[str, Any]) -> dict[str, Any]:
    return {**gym.spec(env_id).kwargs, **overrides}


# -- subcommands ------------------------------------------------------------------------------


def command_list(args: argparse.Namespace) -> None:
    print("| id | task | model | L | block | reward | alpha |")
    print("|---|---|---|---:|---:|---|---:|")
    for env_id in registered_ids():
        kw = gym.spec(env_id).kwargs
        print(
            f"| {env_id} | {kw['task']} | {kw['model']} | {kw['gen_length']} "
            f"| {kw['block_length']} | {kw['reward']} | {kw['alpha']} |"
        )


def command_eval(args: argparse.Namespace) -> None:
    check_env_id(args.env_id)
    policy = build_policy(args.policy, parse_assignments(args.param, "--param"), args.env_id)
    summary = evaluation.evaluate(
        policy,
        args.env_id,
        episodes=args.episodes,
        num_envs=args.num_envs,
        overrides=parse_assignments(args.set, "--set"),
        out_dir=args.out,
        progress=not args.quiet,
        resume=args.resume,
        **distributed_arguments(args),
    )
    print(format_summary(summary))
    if args.out:
        print(f"episodes and summary in {args.out}")


def format_summary(summary: dict[str, Any]) -> str:
    low, high = summary["accuracy_ci95"]
    return (
        f"{summary['env_id']} | {summary['label']} | {summary['episodes']} episodes: "
        f"accuracy {100 * summary['accuracy']:.1f}% (95% CI {100 * low:.1f}-{100 * high:.1f}), "
        f"mean NFE {summary['mean_nfe']:.2f}, {summary['tokens_per_nfe']:.2f} tokens/NFE, "
        f"{summary['tokens_per_second']:.0f} tokens/s, "
        f"{summary['seconds_per_episode']:.3f} s/episode"
    )


def command_sweep(args: argparse.Namespace) -> None:
    check_env_id(args.env_id)
    names = args.policies or list(DEFAULT_GRIDS)
    grids = {name: list(DEFAULT_GRIDS.get(name, [{}])) for name in names}
    for name, grid in parse_grids(args.grid).items():
        grids[name] = grid
    policies = [make_policy(name, **point) for name in names for point in grids[name]]
    out = Path(args.out)
    summaries = sweep(
        policies,
        args.env_id,
        episodes=args.episodes,
        num_envs=args.num_envs,
        overrides=parse_assignments(args.set, "--set"),
        out_dir=out,
        progress=not args.quiet,
        **distributed_arguments(args),
    )
    title = args.title or f"{args.env_id}: accuracy against forward passes"
    results.plot_accuracy_vs_nfe(summaries, out / "pareto", title)
    results.write_tables(summaries, out / "pareto")
    print((out / "pareto.md").read_text(), end="")
    print(f"figure: {out / 'pareto.png'} and .svg; table: {out / 'pareto.md'} and .csv")


def parse_grids(items: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """``["threshold:tau=0.5,0.9"]`` -> ``{"threshold": [{"tau": 0.5}, {"tau": 0.9}]}``."""
    grids: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        name, sep, assignment = item.partition(":")
        field, eq, values = assignment.partition("=")
        if not (sep and eq and name and field and values):
            raise ValueError(f"--grid: expected policy:name=v1,v2,..., got {item!r}")
        if name not in POLICIES:
            raise ValueError(f"--grid: unknown policy {name!r}; choose one of {sorted(POLICIES)}")
        grids[name] = [{field: yaml.safe_load(v)} for v in values.split(",")]
    return grids


def command_play(args: argparse.Namespace) -> None:
    check_env_id(args.env_id)
    policy = build_policy(args.policy, parse_assignments(args.param, "--param"), args.env_id)
    overrides = parse_assignments(args.set, "--set")
    settings = settings_of(args.env_id, overrides)
    features = sorted(set(settings.get("obs_features") or []) | set(policy.required_features))
    envs = gym.make_vec(
        args.env_id,
        num_envs=1,
        render_mode="ansi",
        autoreset_mode=AutoresetMode.DISABLED,
        **{**overrides, "obs_features": features},
    )
    policy.configure(gen_length=settings["gen_length"], block_length=settings["block_length"])
    print(f"{policy_label(policy)} on {args.env_id}\n")
    steps = 0

    def act(obs: dict[str, np.ndarray], running: np.ndarray) -> np.ndarray:
        if steps == 0:
            print(envs.render()[0])
        return policy(obs)

    def show(before: dict, actions: np.ndarray, after: dict, running: np.ndarray) -> None:
        nonlocal steps
        steps += 1
        revealed = np.flatnonzero(before["mask"][0].astype(bool) & ~after["mask"][0].astype(bool))
        print(f"step {steps}: revealed positions {revealed.tolist()}")
        print(envs.render()[0])

    indices = None if args.index is None else [args.index]
    try:
        (episode,) = run_episodes(envs, act, indices, refill=False, seed=args.seed, on_step=show)
    finally:
        envs.close()
    info = episode.info
    verdict = "correct" if info["correct"] else "wrong"
    answer, reference = (None if v is None else str(v) for v in (info["answer"], info["reference"]))
    print(
        f"answer {answer!r}, reference {reference!r}: {verdict}; "
        f"NFE {int(info['nfe'])}, reward {episode.reward:.3f}"
    )


def command_train(args: argparse.Namespace) -> None:
    check_env_id(args.env_id)
    settings = dataclass_from_namespace(grpo.Args, args)
    last = grpo.train(settings)
    print(
        f"iteration {last['iteration']}: reward {last['reward']:.3f}, accuracy "
        f"{100 * last['accuracy']:.1f}%, mean NFE {last['mean_nfe']:.2f}; policy in "
        f"{Path(settings.out_dir) / 'policy'}, log in {Path(settings.out_dir) / 'log.csv'}"
    )


# -- argument parsing -------------------------------------------------------------------------


POLICY_NAMES = [*sorted(POLICIES), LearnedPolicy.name]


def environment_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("env_id", help="a registered id, e.g. DLLMUnmask-Arith-v0")
    sub.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="override an environment setting (gen_length, block_length, model, ...)",
    )  # fmt: skip


def run_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--episodes", type=int, default=None,
        help="problems 0..N-1 of the split (default: the whole split)",
    )  # fmt: skip
    sub.add_argument("--num-envs", type=int, default=32, help="rows decoded together")
    sub.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_argument(
        "--workers", type=int, default=0,
        help="decode on this many Ray actors, each with a model replica (0: in this process)",
    )  # fmt: skip
    sub.add_argument(
        "--gpus-per-worker", type=float, default=0.0, help="GPUs Ray reserves per actor"
    )
    sub.add_argument(
        "--step-timeout", type=float, default=600.0,
        help="seconds an actor may take per step before the run fails",
    )  # fmt: skip


def distributed_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """``evaluate``'s ``workers`` and ``worker_options`` from the command line."""
    options = {"num_gpus_per_worker": args.gpus_per_worker, "step_timeout": args.step_timeout}
    return {"workers": args.workers, "worker_options": options}


def policy_arguments(sub: argparse.ArgumentParser, required: bool) -> None:
    sub.add_argument(
        "--policy", required=required, default=None if required else "threshold",
        metavar="POLICY", help=f"one of {', '.join(POLICY_NAMES)}",
    )  # fmt: skip
    sub.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="a hyperparameter of the policy, e.g. tau=0.9",
    )  # fmt: skip


def add_eval_and_sweep(commands: argparse._SubParsersAction) -> None:
    evaluating = commands.add_parser("eval", help="evaluate one policy on one id")
    environment_arguments(evaluating)
    policy_arguments(evaluating, required=True)
    run_arguments(evaluating)
    evaluating.add_argument("--out", default=None, help="folder for episodes.jsonl, summary.json")
    evaluating.add_argument(
        "--resume", action=argparse.BooleanOptionalAction, default=True,
        help="continue a run found in --out (default) or start it again",
    )  # fmt: skip
    evaluating.set_defaults(run=command_eval)

    sweeping = commands.add_parser(
        "sweep", help="policies over hyperparameter grids: accuracy-vs-NFE figure and table"
    )
    environment_arguments(sweeping)
    sweeping.add_argument(
        "--policies", nargs="+", default=None, metavar="POLICY",
        help=f"policy families (default: all of {', '.join(sorted(POLICIES))})",
    )  # fmt: skip
    sweeping.add_argument(
        "--grid", action="append", default=[], metavar="POLICY:NAME=V1,V2",
        help="replace a family's default grid, e.g. threshold:tau=0.5,0.9",
    )  # fmt: skip
    run_arguments(sweeping)
    sweeping.add_argument("--out", required=True, help="folder for runs, figure and table")
    sweeping.add_argument("--title", default=None, help="figure title")
    sweeping.set_defaults(run=command_sweep)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dllm-gym",
        description="Environments where a diffusion LM is the environment: list, eval, sweep, "
        "play.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help="registered ids and their settings")
    listing.set_defaults(run=command_list)
    add_eval_and_sweep(commands)

    playing = commands.add_parser("play", help="one episode rendered step by step")
    environment_arguments(playing)
    policy_arguments(playing, required=False)
    playing.add_argument("--index", type=int, default=None, help="problem index of the split")
    playing.add_argument("--seed", type=int, default=0, help="seed drawing the problem")
    playing.set_defaults(run=command_play)

    training = commands.add_parser(
        "train", help="train the learned unmasking policy with GRPO (see agents/grpo.py)"
    )
    training.add_argument("env_id", help="a registered id, e.g. DLLMUnmask-Arith-v0")
    add_dataclass_arguments(training, grpo.Args, skip=("env_id",))
    training.set_defaults(run=command_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"dllm-gym {args.command}: error: {error}".splitlines()[0], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dllm-gym {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
