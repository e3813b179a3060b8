"""The one episode driver: a policy on a vector environment, episode by episode.

:func:`run_episodes` plays problems of a list on the rows of a vector env made with
``autoreset_mode=AutoresetMode.DISABLED``: each row starts on the next problem of the list,
and when its episode ends it either takes the next problem (``refill=True``) or waits,
stepped with no forward pass, until every row is done. It yields each finished episode as an
:class:`Episode`, in the order they end. Evaluation, GRPO's rollouts and warm start,
``dllm-gym play`` and the SB3 example's evaluation all drive their envs with it.

    envs = gym.make_vec("DLLMUnmask-Arith-v0", num_envs=8, autoreset_mode=AutoresetMode.DISABLED)
    for episode in run_episodes(envs, lambda obs, running: policy(obs), range(100)):
        print(episode.index, episode.info["correct"], episode.info["nfe"])

Uses only the public Gymnasium API (``reset(options={"index": ..., "reset_mask": ...})`` is
the documented way to choose problems and restart rows of a dllm-gym vector env).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

# act(obs, running) -> actions: obs are the (N, L) observations, ``running`` the (N,) rows
# whose episode is still going (a copy the callback may keep).
Act = Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]
# on_step(obs_before, actions, obs_after, running): called after every step.
OnStep = Callable[[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray], np.ndarray], None]


@dataclass
class Episode:
    """One finished episode of one row."""

    row: int  # the row of the vector env that played it
    index: int  # the problem index of the env's split
    reward: float  # the final step's reward (0 on every step before it)
    truncated: bool  # ended by the NFE cap rather than by revealing every position
    seconds: float  # wall time from the row's reset to its last step
    finished_at: float  # time.perf_counter() when the episode ended
    info: dict[str, Any] = field(default_factory=dict)  # the row's final info entries


def row_info(infos: Mapping[str, Any], row: int) -> dict[str, Any]:
    """Row ``row``'s entries of a vector env's ``infos`` (those set for it: ``_key`` True)."""
    return {
        key: value[row]
        for key, value in infos.items()
        if not key.startswith("_") and np.asarray(infos.get(f"_{key}", True))[row]
    }


def run_episodes(
    envs: gym.vector.VectorEnv,
    act: Act,
    indices: Iterable[int] | None,
    *,
    refill: bool = True,
    seed: int | None = None,
    on_step: OnStep | None = None,
) -> Iterator[Episode]:
    """Play the problems ``indices`` on ``envs`` (autoreset disabled) with ``act``.

    Args:
        envs: a dllm-gym vector env made with ``autoreset_mode=AutoresetMode.DISABLED``.
        act: ``act(obs, running) -> (N, L) actions``; rows not running may get any action
            (the env ignores a finished row's action).
        indices: problem indices; the first ``N`` start the rows (at least ``N`` are needed).
            None: one episode per row on a problem the env draws (with ``seed``).
        refill: a row whose episode ends takes the next index while any is left; False:
            exactly one episode per row (``len(indices) == N``).
        seed: passed to the first ``reset`` (seeds the rows' sampling generators).
        on_step: called after every step with the observations before, the actions, the
            observations after and the rows that were running.

    Yields:
        Each finished :class:`Episode`, in the order the episodes end.
    """
    n = envs.num_envs
    if indices is None:
        queue: deque[int] = deque()
        obs, infos = envs.reset(seed=seed)
        index = np.asarray(infos.get("problem_index", np.full(n, -1)), dtype=np.int64)
    else:
        queue = deque(int(i) for i in indices)
        if len(queue) < n or (not refill and len(queue) != n):
            expected = f"exactly {n}" if not refill else f"at least {n}"
            raise ValueError(f"indices: {expected} problems for {n} rows, got {len(queue)}")
        index = np.array([queue.popleft() for _ in range(n)], dtype=np.int64)
        obs, _ = envs.reset(seed=seed, options={"index": index.tolist()})
    started = np.full(n, time.perf_counter())
    running = np.ones(n, dtype=bool)
    while running.any():
        actions = np.asarray(act(obs, running.copy()))
        before = obs
        obs, rewards, terminated, truncated, infos = envs.step(actions)
        if on_step is not None:
            on_step(before, actions, obs, running.copy())
        ended = np.flatnonzero((terminated | truncated) & running)
        if not len(ended):
            continue
        now = time.perf_counter()
        restart = np.zeros(n, dtype=bool)
        for row in ended:
            yield Episode(
                row=int(row),
                index=int(index[row]),
                reward=float(rewards[row]),
                truncated=bool(truncated[row]),
                seconds=float(now - started[row]),
                finished_at=now,
                info=row_info(infos, int(row)),
            )
            if refill and queue:
                index[row] = queue.popleft()
                restart[row] = True
            else:
                running[row] = False
        if restart.any():
            started[restart] = time.perf_counter()
            obs, _ = envs.reset(options={"index": index.tolist(), "reset_mask": restart})
