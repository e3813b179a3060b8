"""Sweeps: one evaluation per policy, each in its own resumable run folder."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.evaluate import evaluate
from agents.policies import Policy, policy_label


def sweep(
    runs: Sequence[Policy],
    env_id: str,
    *,
    out_dir: str | Path | None = None,
    **evaluate_kwargs: Any,
) -> list[dict[str, Any]]:
    """:func:`~agents.evaluate.evaluate` each policy of ``runs`` with ``evaluate_kwargs``
    (``episodes``, ``num_envs``, ``overrides``, ``progress``, ``resume``); their summaries, in
    order. Each run keeps its files in ``out_dir/<label>`` (the label made a folder name), so
    a sweep resumes too."""
    folders = [folder_name(policy_label(policy)) for policy in runs]
    repeated = sorted({name for name in folders if folders.count(name) > 1})
    if repeated:
        raise ValueError(f"sweep: policies repeated (or with clashing labels): {repeated}")
    return [
        evaluate(
            policy,
            env_id,
            out_dir=None if out_dir is None else Path(out_dir) / name,
            **evaluate_kwargs,
        )
        for policy, name in zip(runs, folders, strict=True)
    ]


def folder_name(label: str) -> str:
    """A folder name for a policy label: ``threshold(tau=0.9)`` -> ``threshold_tau=0.9``."""
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", label).strip("_") or "policy"
