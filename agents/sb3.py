"""Stable-Baselines3 on a native Gymnasium vector environment, one batched forward per step.

SB3's ``DummyVecEnv`` would step ``N`` single environments in turn (``N`` forward passes of
the model per step); :class:`SB3VecEnv` hands SB3 the registered vector environment instead,
in Gymnasium's ``SAME_STEP`` autoreset mode, and translates its outputs into SB3's: ``dones =
terminated | truncated``, a list of per-env info dicts with ``terminal_observation`` and
``TimeLimit.truncated`` where an episode ended.

    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor

    import dllm_gym  # registers the ids
    from agents.sb3 import SB3VecEnv

    venv = VecMonitor(SB3VecEnv("DLLMUnmask-Arith-v0", num_envs=16))
    PPO("MultiInputPolicy", venv, n_steps=64).learn(4096)

Uses only the public Gymnasium API and the registered ids; needs ``stable-baselines3``
(``pip install "dllm-gym[sb3]"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

try:
    from stable_baselines3.common.vec_env import VecEnv
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError("agents.sb3 needs stable-baselines3: pip install 'dllm-gym[sb3]'") from error


class SB3VecEnv(VecEnv):
    """A Gymnasium vector environment seen as an SB3 ``VecEnv``.

    Args:
        env: a registered id (built with ``gym.make_vec(env, num_envs, **overrides)`` in
            ``SAME_STEP`` autoreset mode) or an already built vector env in that mode.
        num_envs: number of sub-environments when ``env`` is an id.
        **overrides: settings passed to ``gym.make_vec`` when ``env`` is an id.
    """

    def __init__(self, env: str | gym.vector.VectorEnv, num_envs: int = 1, **overrides: Any):
        if isinstance(env, str):
            env = gym.make_vec(
                env, num_envs=num_envs, autoreset_mode=AutoresetMode.SAME_STEP, **overrides
            )
        elif overrides:
            raise ValueError(
                f"overrides {sorted(overrides)} apply only when env is an id, not a built env"
            )
        mode = env.metadata.get("autoreset_mode")
        if mode is not AutoresetMode.SAME_STEP:
            raise ValueError(
                f"env: SB3 resets sub-environments in the step that ends them; expected a "
                f"vector env with autoreset_mode=AutoresetMode.SAME_STEP, got {mode!r}"
            )
        self.vector_env = env
        self.render_mode = env.render_mode
        self._actions: np.ndarray | None = None
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)

    def reset(self) -> dict[str, np.ndarray]:
        seeds = self._seeds
        seed: Sequence[int | None] | None = None if all(s is None for s in seeds) else seeds
        options = self._options[0] if self._options and self._options[0] else None
        obs, infos = self.vector_env.reset(seed=seed, options=options)
        self.reset_infos = _per_env(infos, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[dict]]:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async(actions)")
        actions, self._actions = self._actions, None
        obs, rewards, terminated, truncated, infos = self.vector_env.step(actions)
        dones = terminated | truncated
        per_env = _per_env(infos, self.num_envs)
        if dones.any():
            final_info = _per_env(infos.get("final_info", {}), self.num_envs)
            for row in np.flatnonzero(dones):  # only the rows whose episode ended
                per_env[row].update(final_info[row])
                per_env[row]["terminal_observation"] = infos["final_obs"][row]
                per_env[row]["TimeLimit.truncated"] = bool(truncated[row] and not terminated[row])
        return obs, rewards.astype(np.float32), dones, per_env

    def close(self) -> None:
        self.vector_env.close()

    # SB3 asks these of the sub-environments; the vector env holds them all.
    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        value = getattr(self.vector_env, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.vector_env, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any):
        result = getattr(self.vector_env, method_name)(*args, **kwargs)
        return [result for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def _indices(self, indices: Any) -> Iterable[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return indices


def _per_env(infos: dict[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """Gymnasium's batched infos (arrays with ``_key`` masks) as one dict per sub-env."""
    per_env: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    for key, values in infos.items():
        if key.startswith("_") or key in ("final_obs", "final_info"):
            continue
        present = infos.get(f"_{key}", np.ones(num_envs, dtype=bool))
        nested = _per_env(values, num_envs) if isinstance(values, dict) else None
        for row in np.flatnonzero(present):
            per_env[row][key] = values[row] if nested is None else nested[row]
    return per_env
