"""What an unmasking policy does with end-of-text: when it reveals it, and where.

Decodes test problems of an id with each policy given (a heuristic, or a learned policy
folder) and reports, besides accuracy and mean NFE:

- **EOS in the first 3 steps**: of the end-of-text tokens in the finished buffers, the
  fraction revealed at steps 1 to 3 (the confidence rules' failure on long full-diffusion
  buffers is to fill the end-of-text tail first);
- **cut answers**: the fraction of episodes whose text has no ``####`` line (end-of-text was
  revealed where the answer should have gone on);
- the **reveal order** on the first ``--show`` problems: per step, the positions revealed
  (as ranges) and their tokens, end-of-text runs counted.

    python scripts/reveal_order.py DLLMUnmask-Arith-FullDiffusion-v1 \
        --policy threshold:tau=0.9 --policy learned:checkpoint=runs/grpo-full-v1/policy \
        --problems 200 --show 3 --out runs/reveal-order.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

import dllm_gym  # noqa: F401  (registers the ids)
from agents.cli import build_policy, parse_assignments
from agents.rollout import run_episodes

EARLY_STEPS = 3


def parse_policy(text: str) -> tuple[str, dict[str, Any]]:
    """``name`` or ``name:key=value:key=value`` (values read as YAML scalars)."""
    name, *assignments = text.split(":")
    return name, parse_assignments(assignments, "--policy")


def ranges(positions: np.ndarray) -> str:
    """Sorted positions as ``a-b`` runs: ``0-3, 7, 9-12``."""
    if positions.size == 0:
        return "-"
    breaks = np.flatnonzero(np.diff(positions) != 1)
    starts = np.concatenate([[positions[0]], positions[breaks + 1]])
    ends = np.concatenate([positions[breaks], [positions[-1]]])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in zip(starts, ends, strict=True))


def decode_with_trace(
    env_id: str, policy, problems: int, num_envs: int
) -> tuple[list[dict[str, Any]], Any]:
    """One record per problem (correct, nfe, tokens and reveal step per position, cut) and
    the tokenizer."""
    envs = gym.make_vec(
        env_id, num_envs=num_envs, autoreset_mode=AutoresetMode.DISABLED, obs_features=["token"]
    )
    settings = envs.unwrapped.settings
    policy.configure(gen_length=settings.gen_length, block_length=settings.block_length)
    length = settings.gen_length
    tokens = np.zeros((num_envs, length), dtype=np.int64)

    def record(before, actions, _after, running) -> None:
        revealed = (actions == 1) & (before["active"] == 1) & running[:, None]
        tokens[revealed] = before["token"][revealed]

    records = []
    for episode in run_episodes(
        envs, lambda obs, running: policy(obs), range(problems), on_step=record
    ):
        info = episode.info
        records.append(
            {
                "index": episode.index,
                "correct": bool(info["correct"]),
                "nfe": int(info["nfe"]),
                "tokens": tokens[episode.row].copy(),
                "step": np.asarray(info["unmask_step"]).copy(),
                "cut": "####" not in str(info["text"]),
            }
        )
    tokenizer = envs.unwrapped.model.tokenizer
    envs.close()
    records.sort(key=lambda item: item["index"])
    return records, tokenizer


def summarize(records: list[dict[str, Any]], eos: int) -> dict[str, Any]:
    tokens = np.stack([r["tokens"] for r in records])
    steps = np.stack([r["step"] for r in records])
    is_eos = tokens == eos
    return {
        "problems": len(records),
        "accuracy": float(np.mean([r["correct"] for r in records])),
        "mean_nfe": float(np.mean([r["nfe"] for r in records])),
        "eos_in_first_3_steps": float((is_eos & (steps <= EARLY_STEPS)).sum() / is_eos.sum()),
        "cut_answers": float(np.mean([r["cut"] for r in records])),
    }


def show(record: dict[str, Any], tokenizer, eos: int) -> list[str]:
    """Per step: the positions revealed and their tokens (end-of-text runs counted)."""
    lines = [
        f"problem {record['index']}: {'correct' if record['correct'] else 'wrong'}, "
        f"{record['nfe']} NFE{', no #### line' if record['cut'] else ''}"
    ]
    for step in range(1, record["step"].max() + 1):
        positions = np.flatnonzero(record["step"] == step)
        if positions.size == 0:
            continue
        words = tokenizer.convert_ids_to_tokens(record["tokens"][positions].tolist())
        content = [w for p, w in zip(positions, words, strict=True) if record["tokens"][p] != eos]
        eos_count = positions.size - len(content)
        text = " ".join(content) + (f"  [+{eos_count} EOS]" if eos_count else "")
        lines.append(f"  step {step:3d}: {ranges(positions):<28} {text}")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env_id")
    parser.add_argument("--policy", action="append", required=True,
                        help="name or name:key=value (learned:checkpoint=PATH)")  # fmt: skip
    parser.add_argument("--problems", type=int, default=200, help="test problems 0..N-1")
    parser.add_argument("--num-envs", type=int, default=100)
    parser.add_argument("--show", type=int, default=3, help="problems whose order is printed")
    parser.add_argument("--out", type=Path, default=None, help="JSON of the figures")
    args = parser.parse_args(argv)

    results = {}
    for text in args.policy:
        name, settings = parse_policy(text)
        policy = build_policy(name, settings, args.env_id)
        records, tokenizer = decode_with_trace(
            args.env_id, policy, args.problems, min(args.num_envs, args.problems)
        )
        eos = tokenizer.eos_token_id
        summary = summarize(records, eos)
        results[text] = summary
        print(
            f"\n{text}: accuracy {100 * summary['accuracy']:.1f}% at {summary['mean_nfe']:.2f} "
            f"NFE on {summary['problems']} problems; end-of-text revealed in the first "
            f"{EARLY_STEPS} steps: {100 * summary['eos_in_first_3_steps']:.1f}%; answers with no "
            f"#### line: {100 * summary['cut_answers']:.1f}%"
        )
        shown = []
        for record in records[: args.show]:
            lines = show(record, tokenizer, eos)
            shown.append(lines)
            print("\n".join(lines))
        summary["reveal_order"] = shown
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
