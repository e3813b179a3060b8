"""What the single and the vector environment share: spaces, observations, actions, rewards.

Every function works on a batch of rows of one :class:`~dllm_gym.decoding.DecodingState`, so
``UnmaskEnv`` (one row) and ``UnmaskVectorEnv`` (N rows) compute exactly the same things.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from dllm_gym.decoding import DecodingState, at_least_one
from dllm_gym.envs.settings import EnvSettings
from dllm_gym.models.loading import DiffusionLM, shared_model
from dllm_gym.tasks import Problem, Task, make_task


@dataclass
class Workload:
    """The task, its problems and the model an environment decodes with, built from its
    settings; prompts are tokenized once per problem and kept."""

    settings: EnvSettings
    task: Task
    problems: Sequence[Problem]
    model: DiffusionLM
    _prompt_ids: dict[int, list[int]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, settings: EnvSettings) -> Workload:
        task_kwargs = dict(settings.task_kwargs)
        if settings.data_files is not None:
            task_kwargs["data_files"] = settings.data_files
        task = make_task(settings.task, **task_kwargs)
        problems = task.problems(settings.split)
        model = shared_model(
            settings.model,
            device=settings.device,
            dtype=settings.dtype,
            trust_remote_code=settings.trust_remote_code,
            backend=settings.backend,
        )
        if settings.cache != "none":
            model.check_cache_support()
        limit = model.max_length
        if limit is not None and settings.gen_length >= limit:
            raise ValueError(
                f"gen_length={settings.gen_length} leaves no room for a prompt in the model's "
                f"limit of {limit} tokens; expected gen_length < {limit}"
            )
        return cls(settings, task, problems, model)

    @property
    def vocab_size(self) -> int:
        return len(self.model.tokenizer)

    def check_index(self, index: object, what: str = "index") -> int:
        """A problem index of the split, or a clear error."""
        return check_problem_index(index, len(self.problems), what)

    def prompts(self, indices: Sequence[int]) -> list[list[int]]:
        """Token ids of the formatted prompts of problems ``indices``."""
        for index in indices:
            if index not in self._prompt_ids:
                question = self.problems[index].question
                self._prompt_ids[index] = self.task.format_prompt(question, self.model.tokenizer)
        return [self._prompt_ids[index] for index in indices]

    def start(self, indices: Sequence[int], generator: torch.Generator | None) -> DecodingState:
        """A decoding state of one row per problem index (no forward pass yet)."""
        s = self.settings
        return DecodingState.for_model(
            self.model,
            self.prompts(indices),
            gen_length=s.gen_length,
            block_length=s.block_length,
            features=s.obs_features,
            temperature=s.temperature,
            generator=generator,
            cache=s.cache,
            cache_refresh=s.cache_refresh,
        )

    def episode_ends(
        self, state: DecodingState, rows: np.ndarray, problem_indices: np.ndarray
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Rewards and end-of-episode infos of the finished ``rows`` (indices into ``state``)
        decoding problems ``problem_indices``: one entry per row in each info list/array."""
        rows_t = torch.as_tensor(rows, dtype=torch.long, device=state.tokens.device)
        generations = state.generation.index_select(0, rows_t).cpu()
        nfe = state.nfe.index_select(0, rows_t).cpu().numpy()
        revealed = (~state.masked.index_select(0, rows_t)).sum(dim=1).cpu().numpy()
        texts = [self.model.decode_generation(g) for g in generations]
        problems = [self.problems[i] for i in problem_indices]
        correct = np.array(
            [self.task.is_correct(t, p.reference) for t, p in zip(texts, problems, strict=True)],
            dtype=bool,
        )
        info = {
            "correct": correct,
            "answer": [self.task.extract_answer(t) for t in texts],
            "reference": [p.reference for p in problems],
            "scorer": [self.task.scorer] * len(rows),
            "text": texts,
            "tokens_per_nfe": revealed / nfe,
            "full_forwards": state.full_forwards.index_select(0, rows_t).cpu().numpy(),
            "window_forwards": state.window_forwards.index_select(0, rows_t).cpu().numpy(),
            "cache": [self.settings.cache] * len(rows),
            "unmask_step": state.unmask_step.index_select(0, rows_t).cpu().numpy(),
            "problem_index": np.asarray(problem_indices, dtype=np.int64),
        }
        return final_rewards(correct, nfe, self.settings), info


def check_problem_index(index: object, count: int, what: str = "index") -> int:
    """``index`` as a problem index of a split of ``count`` problems, or a clear error."""
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise ValueError(f"reset options: {what} must be an integer in [0, {count}), got {index!r}")
    if not 0 <= index < count:
        raise ValueError(f"reset options: {what} must be in [0, {count}), got {index}")
    return int(index)


def feature_upper_bound(name: str, vocab_size: int) -> float:
    """Upper bound of an optional real-valued feature: probabilities (margin, eos) are at most
    1, the entropy of a distribution over V tokens at most log V; the KL divergence is
    unbounded, so its bound is the largest float32."""
    if name in ("margin", "eos"):
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
        if name == "token":  # a copy: on the CPU, numpy() would share the state's memory
            host[name] = state.predicted.clone()
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
    chosen = torch.as_tensor(actions, device=state.tokens.device)
    if empty_action == "force_top1":
        return at_least_one(state, chosen)
    return chosen & state.active


def transition(
    state: DecodingState,
    actions: np.ndarray,
    acting: np.ndarray,
    steps: np.ndarray,
    settings: EnvSettings,
    max_episode_steps: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One step of the rows ``acting`` ((B,) bool): reveal what ``actions`` ((B, L) bool)
    choose (``settings.empty_action`` deciding an empty choice), count the step in ``steps``
    and say which episodes end: (terminated: nothing left masked, truncated: NFE at the cap
    or ``max_episode_steps`` steps, not terminated). Other rows are left as they are."""
    on_device = torch.as_tensor(acting, device=state.tokens.device)
    chosen = actions & acting[:, None]
    state.reveal(selection(state, chosen, settings.empty_action) & on_device[:, None])
    steps[acting] += 1
    nfe = state.nfe.cpu().numpy()
    terminated = state.done.cpu().numpy() & acting
    limit = nfe >= settings.nfe_cap
    if max_episode_steps is not None:
        limit |= steps >= max_episode_steps
    return terminated, acting & ~terminated & limit


def final_rewards(correct: np.ndarray, nfe: np.ndarray, settings: EnvSettings) -> np.ndarray:
    """The reward of the last step: multiplicative ``1[correct] * ((L - NFE + 1) / L) ** alpha``
    (NFE clamped to L) or additive ``1[correct] - alpha * NFE / L``."""
    length = settings.gen_length
    correct = correct.astype(np.float64)
    if settings.reward == "multiplicative":
        speed = (length - np.minimum(nfe, length) + 1) / length
        return correct * speed**settings.alpha
    return correct - settings.alpha * nfe / length
