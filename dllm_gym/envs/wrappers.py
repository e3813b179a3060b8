"""Action-space wrappers for the other common parameterisations of an unmasking step."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class _ConfidenceAction(gym.Wrapper):
    """Turns a low-dimensional action into the env's ``MultiBinary`` action using the last
    observation's ``confidence`` and ``active``."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._last: dict[str, np.ndarray] | None = None

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self._last = obs
        return obs, info

    def step(self, action: Any):
        if self._last is None:
            raise RuntimeError("step() called before reset(); call env.reset() first")
        obs, reward, terminated, truncated, info = self.env.step(self.reveal(action))
        self._last = obs
        return obs, reward, terminated, truncated, info

    def reveal(self, action: Any) -> np.ndarray:
        raise NotImplementedError

    def _ranked_active(self) -> np.ndarray:
        """Active positions, most confident first (ties: leftmost first)."""
        active = np.flatnonzero(self._last["active"])
        order = np.argsort(-self._last["confidence"][active], kind="stable")
        return active[order]


class ThresholdAction(_ConfidenceAction):
    """Action ``Box(0, 1, (1,))``: a confidence threshold. Reveals the most confident active
    position plus every active position whose confidence is at or above the threshold
    (Fast-dLLM's parallel decoding, with the threshold chosen per step)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.action_space = spaces.Box(0.0, 1.0, (1,), np.float32)

    def reveal(self, action: Any) -> np.ndarray:
        threshold = np.asarray(action, dtype=np.float64).reshape(-1)
        if threshold.shape != (1,) or not 0.0 <= threshold[0] <= 1.0:
            raise ValueError(f"action: expected one threshold in [0, 1], got {action!r}")
        binary = (self._last["active"] == 1) & (self._last["confidence"] >= threshold[0])
        ranked = self._ranked_active()
        if ranked.size:
            binary[ranked[0]] = True
        return binary.astype(np.int8)


class TopKAction(_ConfidenceAction):
    """Action ``Discrete(block_length, start=1)``: how many of the most confident active
    positions to reveal (all of them when fewer are active)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.action_space = spaces.Discrete(env.unwrapped.settings.block_length, start=1)

    def reveal(self, action: Any) -> np.ndarray:
        count = int(np.asarray(action).reshape(-1)[0]) if np.ndim(action) else int(action)
        if not self.action_space.contains(np.int64(count)):
            raise ValueError(
                f"action: expected a count in [1, {self.action_space.n}], got {action!r}"
            )
        binary = np.zeros_like(self._last["active"])
        binary[self._ranked_active()[:count]] = 1
        return binary
