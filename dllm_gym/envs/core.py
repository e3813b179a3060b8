"""What the single and the vector environment share: spaces, observations, actions, rewards.

Every function works on a batch of rows of one :class:`~dllm_gym.decoding.DecodingState`, so
``UnmaskEnv`` (one row) and ``UnmaskVectorEnv`` (N rows) compute exactly the same things.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from dllm_gym.decoding import DecodingState, most_confident
from dllm_gym.envs.settings import EnvSettings


def feature_upper_bound(name: str, vocab_size: int) -> float:
    """Upper bound of an optional real-valued feature: probabilities are at most 1, the
    entropy of a distribution over V tokens at most log V; the KL divergence is unbounded, so
    its bound is the largest float32."""
    if name == "margin":
        return 1.0
    if name == "entropy":
        return float(np.log(vocab_size))
    return float(np.finfo(np.float32).max)


def observation_space(settings: EnvSettings, vocab_size: int) -> spaces.Dict:
    """The flat ``Dict`` observation space of one environment."""
    length = settings.gen_length
    entries: dict[str, spaces.Space] = {
        "confidence": spaces.Box(0.0, 1.0, (length,), np.float32),
        "mask": spaces.MultiBinary(length),
        "active": spaces.MultiBinary(length),
        "progress": spaces.Box(0.0, 1.0, (1,), np.float32),
    }
    for name in settings.obs_features:
        if name == "token":
            entries[name] = spaces.MultiDiscrete(np.full(length, vocab_size, dtype=np.int64))
        else:
            high = feature_upper_bound(name, vocab_size)
            entries[name] = spaces.Box(0.0, high, (length,), np.float32)
    return spaces.Dict(entries)


def observations(
    state: DecodingState, settings: EnvSettings, vocab_size: int
) -> dict[str, np.ndarray]:
    """Observations of every row of ``state``: arrays with a leading batch dimension.

    Only (B, L) arrays cross from the model's device to the host. Real values are clipped to
    their space's bounds, which rounding could otherwise cross by an ulp.
    """
    host = {
        "confidence": state.confidence.clamp(0.0, 1.0),
        "mask": state.masked.to(torch.int8),
        "active": state.active.to(torch.int8),
        "progress": (state.nfe.float() / settings.gen_length).clamp(0.0, 1.0)[:, None],
    }
    for name in settings.obs_features:
        if name == "token":
            host[name] = state.predicted
        else:
            high = feature_upper_bound(name, vocab_size)
            host[name] = state.extra[name].clamp(0.0, high)
    return {name: value.cpu().numpy() for name, value in host.items()}


def check_actions(actions: object, shape: tuple[int, ...]) -> np.ndarray:
    """``actions`` as a bool array of ``shape``; a clear error for anything else.

    Bool, integer and floating arrays are accepted as long as every value is exactly 0 or 1
    (Stable-Baselines3 hands ``MultiBinary`` actions over as float32 0.0/1.0).
    """
    array = np.asarray(actions)
    if array.shape != shape:
        raise ValueError(
            f"action: expected shape {shape} (one 0/1 per position), got {array.shape}"
        )
    if not (
        array.dtype == np.bool_
        or np.issubdtype(array.dtype, np.integer)
        or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(
            f"action: expected bool, integer or float 0/1 values, got dtype {array.dtype}"
        )
    valid = (array == 0) | (array == 1)
    if not valid.all():
        bad = np.unique(array[~valid])[:5].tolist()
        raise ValueError(f"action: expected only 0 and 1, got values {bad}")
    return array.astype(bool)


def selection(state: DecodingState, actions: np.ndarray, empty_action: str) -> torch.Tensor:
    """(B, L) positions to reveal: the active ones chosen, or the most confident active
    position of a row that chose none when ``empty_action == "force_top1"``."""
    chosen = torch.as_tensor(actions, device=state.tokens.device) & state.active
    if empty_action == "force_top1":
        empty = ~chosen.any(dim=1, keepdim=True)
        chosen = chosen | (most_confident(state, torch.ones_like(state.nfe)) & empty)
    return chosen


def final_rewards(correct: np.ndarray, nfe: np.ndarray, settings: EnvSettings) -> np.ndarray:
    """The reward of the last step: multiplicative ``1[correct] * ((L - NFE + 1) / L) ** alpha``
    (NFE clamped to L) or additive ``1[correct] - alpha * NFE / L``."""
    length = settings.gen_length
    correct = correct.astype(np.float64)
    if settings.reward == "multiplicative":
        speed = (length - np.minimum(nfe, length) + 1) / length
        return correct * speed**settings.alpha
    return correct - settings.alpha * nfe / length
