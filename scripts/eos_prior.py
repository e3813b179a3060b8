"""Where a model puts end-of-text at the first forward pass, against the true answer length.

A model that reads the answer's length off the prompt predicts end-of-text confidently from
exactly the true length on, before any token is revealed; a model that must follow the chain
to know it spreads its end-of-text probability over the possible lengths. For test problems,
with every generation position masked, this prints per number of worked steps: the mean
probability of end-of-text at the first padding position (the true length) and one token
before it, and how often the first position whose end-of-text probability exceeds 0.5 is the
true length; and, per number of worked steps, the mean end-of-text probability at the
typical length of every number of steps (a smeared prior spreads it over them).

    python scripts/eos_prior.py --model runs/arith_v1/model --task arith-v1 --gen-length 64
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from dllm_gym.decoding import DecodingState
from dllm_gym.models.loading import load_model
from dllm_gym.tasks import make_task


def first_pass_eos(lm, task, problems, gen_length: int) -> tuple[np.ndarray, np.ndarray]:
    """End-of-text probabilities at the first forward pass (every generation position
    masked), one row per problem, and the problems' answer lengths in tokens."""
    state = DecodingState.start(
        [task.format_prompt(p.question, lm.tokenizer) for p in problems],
        gen_length=gen_length,
        block_length=gen_length,
        mask_token_id=lm.mask_token_id,
        pad_token_id=lm.pad_token_id,
        max_length=lm.max_length,
    )
    with torch.no_grad():
        logits = lm.generation_logits(
            state.tokens, state.attention_mask, state.position_ids,
            start=state.tokens.shape[1] - gen_length, length=gen_length,
        )  # fmt: skip
    p_eos = torch.softmax(logits.float(), -1)[..., lm.eos_token_id].numpy()
    lengths = np.array(
        [len(lm.tokenizer(p.solution, add_special_tokens=False)["input_ids"]) for p in problems]
    )
    return p_eos, lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--task", default="arith-v1")
    parser.add_argument("--split", default="test")
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--gen-length", type=int, default=48)
    args = parser.parse_args()
    lm = load_model(args.model, device="cpu")
    task = make_task(args.task)
    problems = task.problems(args.split)[: args.problems]
    p_eos, lengths = first_pass_eos(lm, task, problems, args.gen_length)
    rows = np.arange(len(problems))
    at_length = p_eos[rows, lengths]
    before = p_eos[rows, lengths - 1]
    confident = p_eos > 0.5
    first = np.where(confident.any(1), confident.argmax(1), args.gen_length)
    steps = np.array([p.solution.split("\n")[0].count(". ") for p in problems])
    print(f"{args.model} on {args.task}, L = {args.gen_length}, first forward pass (all masked)")
    counts = sorted(set(steps))
    typical = [int(np.median(lengths[steps == count])) for count in counts]
    print(
        "| worked steps | n | true length | p(EOS) at true length | one before "
        "| first p>0.5 == true | "
        + " | ".join(
            f"p(EOS) at {length} ({count} steps)"
            for count, length in zip(counts, typical, strict=True)
        )
        + " |"
    )
    print("|---:" * (6 + len(counts)) + "|")
    for count in counts:
        pick = steps == count
        others = " | ".join(f"{p_eos[pick, length].mean():.2f}" for length in typical)
        print(
            f"| {count} | {pick.sum()} | {int(np.median(lengths[pick]))} "
            f"| {at_length[pick].mean():.2f} | {before[pick].mean():.2f} "
            f"| {np.mean(first[pick] == lengths[pick]):.0%} | {others} |"
        )
    print(
        f"all: p(EOS) at true length {at_length.mean():.2f}; first p>0.5 at the true length "
        f"in {np.mean(first == lengths):.0%} of problems"
    )


if __name__ == "__main__":
    main()
