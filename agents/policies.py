"""What every unmasking policy is, and how it is named in results.

A policy (a heuristic of :mod:`agents.heuristics`, the learned policy of :mod:`agents.policy`,
or your own) maps an observation of a dllm-gym environment to reveal decisions; it is
configured once with the environment's generation and block lengths. Its label,
``name(field=value, ...)``, names it in run folders, tables and figures.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """What any unmasking policy offers (the heuristics and the learned policy)."""

    name: ClassVar[str]  # registry name, e.g. "threshold"
    required_features: ClassVar[tuple[str, ...]]  # optional obs features it needs

    def configure(self, *, gen_length: int, block_length: int) -> None:
        """Receive the environment's settings (called once, before the first episode)."""
        ...

    def __call__(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """(L,) or (N, L) observation entries -> int8 action of the same shape."""
        ...


def hyperparameters(policy: Policy) -> dict[str, Any]:
    """The policy's constructor fields (dataclass fields with ``init=True``) as JSON values."""
    if not dataclasses.is_dataclass(policy):
        return {}
    return {
        f.name: jsonable(getattr(policy, f.name))
        for f in dataclasses.fields(policy)
        if f.init and not f.name.startswith("_")
    }


def policy_label(policy: Policy) -> str:
    """``name(field=value, ...)``, e.g. ``threshold(tau=0.9)``; a policy that is not a
    dataclass is its name (its class name without one)."""
    name = getattr(policy, "name", type(policy).__name__)
    if not dataclasses.is_dataclass(policy):
        return name
    return f"{name}({format_hyperparameters(hyperparameters(policy))})"


def format_hyperparameters(values: Mapping[str, Any] | str) -> str:
    """``k=1, seed=0``; a string (a table's text, read back) as it is."""
    if isinstance(values, str):
        return values
    return ", ".join(f"{k}={v if isinstance(v, str) else repr(v)}" for k, v in values.items())


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (numpy scalars, tuples, paths converted)."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)
