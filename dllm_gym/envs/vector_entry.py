"""The vector entry point of every registered id: the local or the distributed vector env."""

from __future__ import annotations

from typing import Any

from gymnasium.vector import VectorEnv

from dllm_gym.envs.unmask_vector_env import UnmaskVectorEnv

DISTRIBUTED_ARGUMENTS = (
    "num_cpus_per_worker", "num_gpus_per_worker", "step_timeout", "startup_timeout",
)  # fmt: skip


def make_vector_env(num_envs: int = 1, *, workers: int = 0, **kwargs: Any) -> VectorEnv:
    """``gym.make_vec(id, num_envs=N, **kwargs)``: an :class:`UnmaskVectorEnv` in this
    process, or with ``workers=W >= 1`` a
    :class:`~dllm_gym.distributed.DistributedUnmaskVectorEnv` of ``W`` Ray actors (which
    also takes ``num_cpus_per_worker``, ``num_gpus_per_worker``, ``step_timeout`` and
    ``startup_timeout``)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(
            f"workers must be an integer >= 0 (0: this process, W: W Ray actors), got {workers!r}"
        )
    if workers == 0:
        given = sorted(set(kwargs) & set(DISTRIBUTED_ARGUMENTS))
        if given:
            raise ValueError(
                f"{given} are arguments of the distributed vector env; give workers >= 1"
            )
        return UnmaskVectorEnv(num_envs, **kwargs)
    from dllm_gym.distributed import DistributedUnmaskVectorEnv

    return DistributedUnmaskVectorEnv(num_envs, workers=workers, **kwargs)
