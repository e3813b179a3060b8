"""The settings of an unmasking environment, validated in one place for every env class."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dllm_gym.decoding import CACHE_MODES, check_lengths
from dllm_gym.models.features import OPTIONAL_FEATURES
from dllm_gym.models.loading import BACKENDS
from dllm_gym.tasks import TASKS

REWARDS = ("multiplicative", "additive")
DATA_FILE_TASKS = ("gsm8k", "math500", "humaneval")  # tasks that read local files


class UnknownSettingError(ValueError, TypeError):
    """A keyword that is no setting of the environment: a ``ValueError`` (a user mistake),
    and a ``TypeError`` as Python raises for an unexpected keyword argument."""


EMPTY_ACTIONS = ("force_top1", "noop")


@dataclass(frozen=True)
class EnvSettings:
    """Every setting ``gym.make(id, **overrides)`` accepts (see ``UnmaskEnv``)."""

    task: str = "arith"
    model: str = "embedded"
    device: str = "auto"
    dtype: str = "auto"
    gen_length: int = 48
    block_length: int = 16
    reward: str = "multiplicative"
    alpha: float = 1.0
    split: str = "test"
    data_files: str | os.PathLike | Mapping[str, str] | None = None
    obs_features: tuple[str, ...] = ()
    temperature: float = 0.0
    empty_action: str = "force_top1"
    max_nfe: int | None = None
    trust_remote_code: bool | None = None
    backend: str = "auto"
    cache: str = "none"
    cache_refresh: int = 0
    task_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> EnvSettings:
        """Settings from keyword arguments; an unknown name fails with the valid ones listed."""
        unknown = sorted(set(kwargs) - set(cls.names()))
        if unknown:
            raise UnknownSettingError(
                f"unknown setting(s) {unknown} for a DLLMUnmask environment; valid settings: "
                f"{cls.names()} (and render_mode)"
            )
        if "obs_features" in kwargs:
            features = kwargs["obs_features"]
            kwargs["obs_features"] = (features,) if isinstance(features, str) else tuple(features)
        return cls(**kwargs)

    @property
    def nfe_cap(self) -> int:
        """Forward passes after which an episode is truncated (default: the generation length)."""
        return self.gen_length if self.max_nfe is None else self.max_nfe

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(
                f"task={self.task!r} is not a known task; expected one of {sorted(TASKS)}"
            )
        check_lengths(self.gen_length, self.block_length)
        _choice("reward", self.reward, REWARDS)
        _choice("empty_action", self.empty_action, EMPTY_ACTIONS)
        _choice("backend", self.backend, BACKENDS)
        _choice("cache", self.cache, CACHE_MODES)
        if self.cache != "none" and self.backend == "remote":
            raise ValueError(
                f"cache={self.cache!r} needs the native backend: the published model code "
                "(backend='remote') cannot hold a key/value cache; use backend='native' or "
                "'auto', or cache='none'"
            )
        if (
            isinstance(self.cache_refresh, bool)
            or not isinstance(self.cache_refresh, int)
            or self.cache_refresh < 0
        ):
            raise ValueError(
                f"cache_refresh must be an integer >= 0 (0: refresh only when a block opens), "
                f"got {self.cache_refresh!r}"
            )
        unknown = sorted(set(self.obs_features) - set(OPTIONAL_FEATURES))
        if unknown:
            raise ValueError(
                f"obs_features: unknown feature(s) {unknown}; expected a subset of "
                f"{list(OPTIONAL_FEATURES)}"
            )
        if len(set(self.obs_features)) != len(self.obs_features):
            raise ValueError(f"obs_features lists a feature twice: {list(self.obs_features)}")
        if not isinstance(self.alpha, (int, float)) or self.alpha < 0:
            raise ValueError(f"alpha must be a number >= 0, got {self.alpha!r}")
        if not isinstance(self.temperature, (int, float)) or self.temperature < 0:
            raise ValueError(f"temperature must be a number >= 0, got {self.temperature!r}")
        if self.max_nfe is not None and (not isinstance(self.max_nfe, int) or self.max_nfe < 1):
            raise ValueError(f"max_nfe must be a positive integer or None, got {self.max_nfe!r}")
        if self.data_files is not None and self.task not in DATA_FILE_TASKS:
            raise ValueError(
                f"data_files is a setting of the tasks {list(DATA_FILE_TASKS)}, not of "
                f"task={self.task!r}"
            )


def _choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; expected one of {list(choices)}")
