"""The environment registry: ``envs_registry.yaml`` read, validated and given to Gymnasium.

The file lives at the top of the repository; ``dllm_gym/envs_registry.yaml`` is a link to it,
so it is package data (the wheel holds a copy) and one file stays the source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import gymnasium as gym
import yaml

from dllm_gym.envs.settings import EnvSettings

REGISTRY_FILE = "envs_registry.yaml"
ENTRY_POINT = "dllm_gym.envs.unmask_env:UnmaskEnv"
VECTOR_ENTRY_POINT = "dllm_gym.envs.vector_entry:make_vector_env"
_EXTRA_KEYS = {"description", "nondeterministic"}


@dataclass(frozen=True)
class RegisteredEnv:
    """One id of the registry with its settings."""

    env_id: str
    description: str
    settings: dict[str, Any]
    nondeterministic: bool = False


def read_registry(text: str | None = None) -> list[RegisteredEnv]:
    """Parse and validate the registry (the packaged YAML unless ``text`` is given)."""
    if text is None:
        text = resources.files("dllm_gym").joinpath(REGISTRY_FILE).read_text(encoding="utf-8")
    document = yaml.safe_load(text) or {}
    unknown = sorted(set(document) - {"defaults", "environments"})
    if unknown:
        raise ValueError(f"{REGISTRY_FILE}: unknown top-level key(s) {unknown}")
    defaults = document.get("defaults") or {}
    entries = []
    for env_id, entry in (document.get("environments") or {}).items():
        entry = dict(entry or {})
        description = entry.pop("description", "")
        nondeterministic = bool(entry.pop("nondeterministic", False))
        settings = {**defaults, **entry}
        try:
            EnvSettings.from_kwargs(**settings)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{REGISTRY_FILE}: {env_id}: {error}") from error
        entries.append(RegisteredEnv(env_id, description, settings, nondeterministic))
    return entries


def register_all() -> list[str]:
    """Register every id of the registry with Gymnasium (idempotent); returns the ids."""
    ids = []
    for entry in read_registry():
        if entry.env_id not in gym.registry:
            gym.register(
                id=entry.env_id,
                entry_point=ENTRY_POINT,
                vector_entry_point=VECTOR_ENTRY_POINT,
                nondeterministic=entry.nondeterministic,
                kwargs=dict(entry.settings),
            )
        ids.append(entry.env_id)
    return ids
