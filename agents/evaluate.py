"""Evaluate an unmasking policy: accuracy against forward passes on an id's problems.

A policy maps a batch of observations to a batch of reveal decisions (see :class:`Policy`).
:func:`evaluate` runs it over problems ``0 .. episodes - 1`` of an id's split on the
registered vector env, one batched forward pass per step for every busy row, refilling rows as
their episodes end, and returns a summary: accuracy with a 95% Wilson interval, mean NFE,
tokens per NFE, throughput. Given an ``out_dir`` it keeps ``run.json`` (the settings),
``episodes.jsonl`` (one line per finished episode, flushed as it ends) and ``summary.json``;
run again with the same settings and it resumes where it stopped.

    import dllm_gym  # registers the ids
    from agents.evaluate import evaluate
    from agents.heuristics import make_policy
    from agents.results import plot_accuracy_vs_nfe, write_tables
    from agents.sweep import sweep

    summary = evaluate(make_policy("threshold", tau=0.9), "DLLMUnmask-Arith-v0",
                       episodes=200, out_dir="runs/threshold-0.9")
    policies = [make_policy("threshold", tau=t) for t in (0.5, 0.7, 0.9, 0.99)]
    summaries = sweep(policies, "DLLMUnmask-Arith-v0", episodes=200, out_dir="runs/sweep")
    plot_accuracy_vs_nfe(summaries, "runs/sweep/pareto", "Arith: accuracy against NFE")
    write_tables(summaries, "runs/sweep/pareto")

Sweeps are in :mod:`agents.sweep`, the figure and tables in :mod:`agents.results`, the
statistics in :mod:`agents.statistics`, the run files in :mod:`agents.run_files`. Uses only
the public Gymnasium API and the registered ids.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from tqdm import tqdm

import dllm_gym  # noqa: F401  (registers the ids)
from agents.policies import Policy, hyperparameters, jsonable, policy_label
from agents.rollout import run_episodes
from agents.run_files import SUMMARY_FILE, RunFolder, write_json_atomic
from agents.statistics import summarize


def evaluate(
    policy: Policy,
    env_id: str,
    *,
    episodes: int | None = None,
    num_envs: int = 32,
    overrides: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    resume: bool = True,
    workers: int = 0,
    worker_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``policy`` on problems ``0 .. episodes - 1`` of ``env_id``'s split; the summary.

    Args:
        policy: see :class:`Policy`; configured once with the env's ``gen_length`` and
            ``block_length`` (the id's settings with ``overrides`` applied).
        env_id: a registered id, e.g. ``"DLLMUnmask-Arith-v0"``.
        episodes: how many problems, from index 0; None: the whole split.
        num_envs: rows decoded together (one batched forward pass per step).
        overrides: settings passed to ``gym.make_vec`` (``gen_length``, ``model``, ...); the
            policy's ``required_features`` are added to ``obs_features``.
        out_dir: folder for ``run.json``, ``episodes.jsonl`` and ``summary.json``; None: no
            files.
        progress: show a progress bar (episodes done, running accuracy) on stderr.
        resume: continue the run found in ``out_dir`` (its settings must match: a ValueError
            says what differs; an empty ``episodes.jsonl`` is not checked); False: start
            again, overwriting it.
        workers: 0 decodes in this process; ``W >= 1`` on ``W`` Ray actors (the distributed
            vector env, same results: a run may resume with another ``workers``).
        worker_options: further arguments of the distributed env (``num_gpus_per_worker``,
            ``num_cpus_per_worker``, ``step_timeout``).

    Returns:
        The summary (see :func:`summarize`) of every recorded episode of ``0 .. episodes - 1``.
    """
    overrides = dict(overrides or {})
    _check_count("num_envs", num_envs)
    if episodes is not None:
        _check_count("episodes", episodes)
    run = _run_description(policy, env_id, overrides)
    folder = RunFolder(Path(out_dir), run, resume) if out_dir is not None else None
    records: dict[int, dict[str, Any]] = dict(folder.records) if folder is not None else {}
    try:
        policy.configure(gen_length=run["gen_length"], block_length=run["block_length"])
        distributed = {"workers": workers, **(worker_options or {})} if workers else {}
        with _Envs(env_id, overrides, policy, distributed) as envs:
            if episodes is None or any(i not in records for i in range(episodes)):
                size = split_size(envs.make(min(num_envs, episodes or num_envs)))
                if episodes is not None and episodes > size:
                    raise ValueError(
                        f"episodes={episodes} exceeds the {size} problems of the split"
                    )
                episodes = size if episodes is None else episodes
            _play(policy, envs, [i for i in range(episodes) if i not in records], records,
                  folder, episodes, run["label"], progress)  # fmt: skip
    finally:
        if folder is not None:
            folder.close()
    summary = summarize([records[i] for i in sorted(records) if i < episodes], run)
    if folder is not None:
        write_json_atomic(folder.path / SUMMARY_FILE, summary)
    return summary


def _run_description(policy: Policy, env_id: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """What ``run.json`` records of a run (its env, settings and policy)."""
    settings = {**gym.spec(env_id).kwargs, **overrides}
    return {
        "env_id": env_id,
        "overrides": jsonable(overrides),
        "policy": policy.name,
        "hyperparameters": hyperparameters(policy),
        "label": policy_label(policy),
        "gen_length": int(settings["gen_length"]),
        "block_length": int(settings["block_length"]),
    }


class _Envs:
    """The vector env of a run, built on demand (with the policy's features) and closed."""

    def __init__(
        self,
        env_id: str,
        overrides: dict[str, Any],
        policy: Policy,
        distributed: Mapping[str, Any] | None = None,
    ) -> None:
        settings = {**gym.spec(env_id).kwargs, **overrides}
        features = set(settings.get("obs_features") or ()) | set(policy.required_features)
        self.env_id, self.overrides = env_id, {**overrides, "obs_features": sorted(features)}
        self.distributed = dict(distributed or {})  # workers=W and options: Ray actors
        self.envs: gym.vector.VectorEnv | None = None

    def make(self, rows: int) -> gym.vector.VectorEnv:
        """An env of ``rows`` rows (the one built before if it has as many)."""
        if self.envs is not None and self.envs.num_envs == rows:
            return self.envs
        self.close()
        self.envs = gym.make_vec(
            self.env_id,
            num_envs=rows,
            autoreset_mode=AutoresetMode.DISABLED,
            **self.overrides,
            **self.distributed,
        )
        return self.envs

    def close(self) -> None:
        if self.envs is not None:
            self.envs.close()
            self.envs = None

    def __enter__(self) -> _Envs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _play(
    policy: Policy,
    envs: _Envs,
    todo: list[int],
    records: dict[int, dict[str, Any]],
    folder: RunFolder | None,
    episodes: int,
    label: str,
    progress: bool,
) -> None:
    """Decode the problems ``todo`` (on as many rows as the first env had, at most one per
    problem), adding each finished episode's record to ``records`` and ``folder``."""
    done = [r for i, r in records.items() if i < episodes]
    correct = sum(bool(r["correct"]) for r in done)
    base = max((float(r["run_seconds"]) for r in records.values()), default=0.0)
    with tqdm(total=episodes, initial=len(done), desc=label, unit="ep", disable=not progress,
              dynamic_ncols=True) as bar:  # fmt: skip
        if not todo:
            return
        rows = envs.envs.num_envs if envs.envs is not None else len(todo)
        for record in _episodes(policy, envs.make(min(rows, len(todo))), todo, base):
            records[record["index"]] = record
            if folder is not None:
                folder.append(record)
            correct += record["correct"]
            bar.set_postfix(accuracy=f"{100 * correct / (bar.n + 1):.1f}%", refresh=False)
            bar.update(1)


def split_size(envs: gym.vector.VectorEnv) -> int:
    """How many problems the env's split holds (its ``problems``, index i = problem i)."""
    return len(envs.unwrapped.problems)


def _episodes(
    policy: Policy, envs: gym.vector.VectorEnv, todo: Sequence[int], base_seconds: float
) -> Iterator[dict[str, Any]]:
    """Decode problems ``todo`` with ``policy``, refilling rows as they finish; yield one
    record per finished episode, in the order they end."""
    if len(todo) < envs.num_envs:
        raise ValueError(
            f"{len(todo)} problems for {envs.num_envs} rows: build the env with fewer rows"
        )
    start = time.perf_counter()
    for episode in run_episodes(envs, lambda obs, _: policy(obs), todo, seed=0):
        info = episode.info
        yield {
            "index": episode.index,
            "correct": bool(info["correct"]),
            "nfe": int(info["nfe"]),
            "tokens_per_nfe": float(info["tokens_per_nfe"]),
            "reward": episode.reward,
            "truncated": episode.truncated,
            "seconds": episode.seconds,
            "answer": _text(info["answer"]),
            "reference": _text(info["reference"]),
            "run_seconds": base_seconds + episode.finished_at - start,
        }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


# -- files -----------------------------------------------------------------------------------
