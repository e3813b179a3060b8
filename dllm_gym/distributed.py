"""``DistributedUnmaskVectorEnv``: a vector env whose rows are decoded by Ray actors.

Each of ``workers`` Ray actors (a *shard*) holds one replica of the model and one
:class:`~dllm_gym.envs.UnmaskVectorEnv` of its share of the rows; the driver is a
``gymnasium.vector.VectorEnv`` with the same spaces, autoreset modes, reset options and infos
as the local vector env, so agents do not change. Install the extra with
``pip install "dllm-gym[ray]"``.

    import gymnasium as gym
    import ray
    import dllm_gym

    ray.init()  # or ray.init(address="auto") to join a cluster started with `ray start`
    envs = gym.make_vec("DLLMUnmask-GSM8K-v0", num_envs=256, workers=8, num_gpus_per_worker=1)

A step sends every shard its slice of the actions at once and gathers the results: one round
trip per step, whatever the number of workers; observations travel as numpy arrays.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from dllm_gym.envs import core
from dllm_gym.envs.settings import EnvSettings
from dllm_gym.envs.unmask_vector_env import (
    FIRST_RESET_ERROR,
    UnmaskVectorEnv,
    check_vector_arguments,
    parse_reset_options,
    parse_seeds,
)

RAY_MISSING = "the distributed vector env needs Ray: pip install 'dllm-gym[ray]'"


class ShardError(RuntimeError):
    """A shard of a distributed vector env died, failed or did not answer in time. The env
    cannot go on (its rows are no longer in step): ``close()`` it and build another."""


class _Shard:
    """The body of one Ray actor: a model replica and the vector env of its rows."""

    def __init__(self, num_envs: int, threads: int | None, kwargs: dict[str, Any]) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.env = UnmaskVectorEnv(num_envs, **kwargs)

    def describe(self) -> tuple[spaces.Space, spaces.Space, int, int]:
        """The single spaces, the split's size and the actor's process id."""
        env = self.env
        return env.single_observation_space, env.single_action_space, len(env.problems), os.getpid()

    def problems(self) -> list:
        return list(self.env.problems)

    def reset(self, seed: Any, options: dict[str, Any] | None) -> tuple:
        return self.env.reset(seed=seed, options=options)

    def step(self, actions: np.ndarray) -> tuple:
        return self.env.step(actions)

    def render(self) -> tuple | None:
        return self.env.render()

    def ping(self) -> None:
        """Nothing: a call's round trip, for measuring Ray's share of a step."""


class DistributedUnmaskVectorEnv(VectorEnv):
    """
    :class:`~dllm_gym.envs.UnmaskVectorEnv` with its ``num_envs`` rows split over ``workers``
    Ray actors, each holding a model replica. Build it with ``gym.make_vec(id,
    num_envs=N, workers=W)`` (the ids' vector entry point) or directly with the settings.

    Rows are split in contiguous shards, the first ``N % W`` one row larger. Everything a
    user sees is the local env's: the spaces, the three autoreset modes, ``reset(seed=,
    options={"index": ..., "reset_mask": ...})``, rewards, ``terminated``/``truncated`` and
    ``infos`` (with the ``_key`` masks; where a mask is False the value is unspecified), and
    ``problems``. ``reset(seed=s)`` seeds row ``i`` with ``s + i`` as the local env does, so
    greedy decoding gives the local env's tokens, row for row. At ``temperature > 0`` each
    shard draws its own noise: runs are reproducible, but differ from the local env's.

    ## Ray

    ``ray.init(...)`` is the caller's: the env joins the running Ray instance (a cluster
    joined with ``ray.init(address=...)``), or, if there is none, calls ``ray.init()``
    (which follows ``RAY_ADDRESS`` and otherwise starts a local instance). Each actor is
    scheduled with ``num_cpus_per_worker`` CPUs and ``num_gpus_per_worker`` GPUs; a CPU actor
    runs torch with that many threads.

    ## Faults

    A shard whose actor dies, raises, or takes longer than ``step_timeout`` seconds makes the
    call raise :class:`ShardError` naming the shard and its rows, never hang; after it the env
    refuses every call but ``close()``. ``close()`` kills every actor.

    ## Arguments

    | Parameter             | Default | Description                                            |
    |-----------------------|---------|--------------------------------------------------------|
    | `num_envs`            | 1       | rows N, over all workers                               |
    | `workers`             | 2       | Ray actors W (1 <= W <= N)                             |
    | `num_cpus_per_worker` | 1       | CPUs Ray reserves per actor (torch threads on a CPU)   |
    | `num_gpus_per_worker` | 0       | GPUs Ray reserves per actor (1: a model per GPU)       |
    | `step_timeout`        | 600     | seconds a reset, step or render may take; None: no cap |
    | `startup_timeout`     | 1800    | seconds the actors may take to load the model          |
    | `autoreset_mode`, `max_episode_steps`, `render_mode`, every setting | | as `UnmaskVectorEnv` |
    """

    metadata: ClassVar[dict[str, Any]] = dict(UnmaskVectorEnv.metadata)

    def __init__(
        self,
        num_envs: int = 1,
        *,
        workers: int = 2,
        num_cpus_per_worker: float = 1.0,
        num_gpus_per_worker: float = 0.0,
        step_timeout: float | None = 600.0,
        startup_timeout: float | None = 1800.0,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        **settings: Any,
    ) -> None:
        mode = check_vector_arguments(
            num_envs, autoreset_mode, max_episode_steps, render_mode, self.metadata
        )
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)):
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        if not 1 <= workers <= num_envs:
            raise ValueError(f"workers must be in [1, num_envs={num_envs}], got {workers}")
        for name, value in (
            ("num_cpus_per_worker", num_cpus_per_worker),
            ("num_gpus_per_worker", num_gpus_per_worker),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        for name, value in (("step_timeout", step_timeout), ("startup_timeout", startup_timeout)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
            ):
                raise ValueError(f"{name} must be a number of seconds > 0 or None, got {value!r}")
        self.settings = EnvSettings.from_kwargs(**settings)  # fails here, before any actor
        try:
            import ray
        except ImportError:
            raise ImportError(RAY_MISSING) from None
        self._ray = ray
        if not ray.is_initialized():
            ray.init()

        self.num_envs = int(num_envs)
        self.num_workers = int(workers)
        self.autoreset_mode = mode
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.step_timeout = step_timeout
        sizes = [self.num_envs // workers + (w < self.num_envs % workers) for w in range(workers)]
        self.shard_bounds = [(sum(sizes[:w]), sum(sizes[: w + 1])) for w in range(workers)]
        self._error: ShardError | None = None
        self._problems: list | None = None
        self._has_reset = False

        kwargs = {
            **settings,
            "autoreset_mode": mode,
            "max_episode_steps": max_episode_steps,
            "render_mode": render_mode,
        }
        threads = max(1, int(num_cpus_per_worker)) if num_gpus_per_worker == 0 else None
        actor = ray.remote(_Shard)
        self.name = f"dllm-gym-{uuid.uuid4().hex[:8]}"
        self.shards = [
            actor.options(
                name=f"{self.name}-shard-{w}",
                num_cpus=num_cpus_per_worker,
                num_gpus=num_gpus_per_worker,
            ).remote(size, threads, kwargs)
            for w, size in enumerate(sizes)
        ]
        self.closed = False
        try:
            described = self._gather([s.describe.remote() for s in self.shards], "startup",
                                     startup_timeout)  # fmt: skip
        except BaseException:
            self.close()
            raise
        self.single_observation_space, self.single_action_space, self._split_size, _ = described[0]
        self.worker_pids = [pid for *_, pid in described]
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    # ------------------------------------------------------------------------------- API
    @property
    def problems(self) -> list:
        """The split's problems (index i is problem i), as on ``UnmaskVectorEnv``."""
        if self._problems is None:
            self._problems = self._gather([self.shards[0].problems.remote()], "problems")[0]
        return self._problems

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset every row, or those of ``options["reset_mask"]`` (see ``UnmaskVectorEnv``)."""
        self._check_usable()
        seeds = parse_seeds(seed, self.num_envs)
        rows, indices = parse_reset_options(
            options, self.num_envs, lambda i, what: core.check_problem_index(i, self._split_size,
                                                                             what)
        )  # fmt: skip
        if not self._has_reset and not rows.all():
            raise ValueError(FIRST_RESET_ERROR)
        if isinstance(seed, (int, np.integer)):
            super().reset(seed=int(seed))
        calls = []
        for (start, stop), shard in zip(self.shard_bounds, self.shards, strict=True):
            if seed is None or isinstance(seed, (int, np.integer)):
                shard_seed = None if seed is None else seeds[start]  # its rows: seed + i
            else:
                shard_seed = seeds[start:stop]
            shard_options: dict[str, Any] = {}
            if options and options.get("reset_mask") is not None:
                shard_options["reset_mask"] = rows[start:stop]
            if options and options.get("index") is not None:
                shard_options["index"] = [None if i < 0 else int(i) for i in indices[start:stop]]
            calls.append(shard.reset.remote(shard_seed, shard_options or None))
        results = self._gather(calls, "reset")
        self._has_reset = True
        return _concatenate([r[0] for r in results]), self._merge_infos([r[1] for r in results])

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        self._check_usable()
        if not self._has_reset:
            raise RuntimeError("step() called before reset(); call envs.reset() first")
        chosen = core.check_actions(actions, (self.num_envs, *self.single_action_space.shape))
        calls = [
            shard.step.remote(chosen[start:stop])
            for (start, stop), shard in zip(self.shard_bounds, self.shards, strict=True)
        ]
        results = self._gather(calls, "step")
        observations = _concatenate([r[0] for r in results])
        rewards, terminated, truncated = (
            np.concatenate([r[k] for r in results]) for k in (1, 2, 3)
        )
        infos = self._merge_infos([r[4] for r in results])
        return observations, rewards, terminated, truncated, infos

    def render(self) -> tuple[Any, ...] | None:
        self._check_usable()
        if self.render_mode is None or not self._has_reset:
            return None
        frames = self._gather([s.render.remote() for s in self.shards], "render")
        return tuple(frame for shard_frames in frames for frame in shard_frames)

    def close_extras(self, **kwargs: Any) -> None:
        """Kill every actor (idempotent)."""
        for shard in getattr(self, "shards", []):
            with contextlib.suppress(Exception):  # an actor already gone
                self._ray.kill(shard)
        self.shards = []

    # ------------------------------------------------------------------------------- details
    def _merge_infos(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        return _merge(parts, [stop - start for start, stop in self.shard_bounds])

    def _check_usable(self) -> None:
        if self.closed:
            raise RuntimeError("the distributed vector env is closed")
        if self._error is not None:
            raise ShardError(f"the env is unusable after an earlier failure: {self._error}")

    def _describe_shard(self, w: int) -> str:
        start, stop = self.shard_bounds[w]
        return f"shard {w} of {self.num_workers} (rows {start}..{stop - 1})"

    def _gather(self, calls: list, what: str, timeout: float | str | None = "step") -> list[Any]:
        """The results of ``calls`` (one per shard, in shard order); a failed, dead or late
        shard raises :class:`ShardError` and leaves the env unusable."""
        ray = self._ray
        timeout = self.step_timeout if timeout == "step" else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        shard_of = {call: w for w, call in enumerate(calls)}
        results: dict[int, Any] = {}
        pending = list(calls)
        while pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, pending = ray.wait(pending, num_returns=1, timeout=left)
            if not ready:
                late = ", ".join(self._describe_shard(shard_of[c]) for c in pending)
                self._fail(f"{what}: {late} did not answer within {timeout} s")
            for call in ready:
                w = shard_of[call]
                try:
                    results[w] = ray.get(call)
                except ray.exceptions.RayActorError as error:
                    self._fail(f"{what}: {self._describe_shard(w)} died: {_first_line(error)}")
                except ray.exceptions.RayTaskError as error:
                    cause = error.as_instanceof_cause()
                    self._fail(f"{what}: {self._describe_shard(w)} raised {_first_line(cause)}",
                               cause)  # fmt: skip
        return [results[w] for w in range(len(calls))]

    def _fail(self, message: str, cause: BaseException | None = None) -> None:
        self._error = ShardError(message)
        raise self._error from cause


def _first_line(error: BaseException) -> str:
    """What went wrong, in one line: an actor that failed to start ends its message with the
    exception its ``__init__`` raised (a model that cannot be loaded, say); else the first
    line."""
    text = [line for line in str(error).strip().splitlines() if line.strip()]
    if len(text) > 1 and "creation task" in text[0]:
        return text[-1].strip()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _merge(parts: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """The shards' batched infos as one: arrays concatenated in shard order, a key missing
    from a shard filled with zeros (None for objects) under a False ``_key`` mask."""
    keys = list(dict.fromkeys(key for part in parts for key in part))
    merged: dict[str, Any] = {}
    for key in keys:
        values = [part.get(key) for part in parts]
        example = next(v for v in values if v is not None)
        if isinstance(example, dict):
            merged[key] = _merge([v or {} for v in values], sizes)
            continue
        filled = []
        for value, size in zip(values, sizes, strict=True):
            if value is None:
                value = (
                    np.full(size, None, dtype=object)
                    if example.dtype == object
                    else np.zeros((size, *example.shape[1:]), dtype=example.dtype)
                )
            filled.append(value)
        merged[key] = np.concatenate(filled)
    return merged
