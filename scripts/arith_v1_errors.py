"""Where a model goes wrong on Arith-v1: accuracy by number of worked steps, and the kind of
each wrong answer's first wrong step.

Decodes problems with LLaDA's top-k schedule (``--tokens-per-step`` per step, blocks of
``--block-length``) and compares each worked step ``Box B has x op y = r`` with the
reference. The first step that differs is classified as:

- ``box``: the step names another box than the chain's next one;
- ``operator`` / ``operand``: the right link, the operation or operand of another sentence;
- ``mixed forms``: the right operands, but the second repeats the first (``5 + 5`` for
  ``5 + 0`` written as ``0 + 5``): two forms of the step mixed;
- ``arithmetic``: the right operation and operands, a wrong result;
- ``stopped early``: every written step right, but fewer of them (before a 0, 3, 6 or 9);
- ``went on``: every step right up to the stop, then more steps (or, if nothing parsed,
  ``length``).

    python scripts/arith_v1_errors.py --model runs/arith_v1/model --problems 200
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict

import torch

from dllm_gym.decoding import decode, top_k_rule
from dllm_gym.models.loading import load_model
from dllm_gym.tasks import make_task

STEP = re.compile(r"Box (\d) has (\d+) ([-+*]) (\d+) = (\d+)")


def error_kind(reference: str, generation: str) -> str:
    """The kind of the first worked step of ``generation`` that differs from ``reference``."""
    wanted, written = STEP.findall(reference), STEP.findall(generation)
    for want, got in zip(wanted, written, strict=False):
        if want == got:
            continue
        if want[0] != got[0]:
            return "box"
        if want[2] != got[2]:
            return "operator"
        if sorted((got[1], got[3])) != sorted((want[1], want[3])):
            repeated = got[1] == got[3] and got[1] in (want[1], want[3])
            return "mixed forms" if repeated else "operand"
        return "arithmetic"
    if 0 < len(written) < len(wanted):
        return "stopped early"
    return "went on" if len(written) > len(wanted) else "length"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded-v1")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--gen-length", type=int, default=64)
    parser.add_argument("--block-length", type=int, default=16)
    parser.add_argument("--tokens-per-step", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.block_length % args.tokens_per_step:
        parser.error("--tokens-per-step must divide --block-length")
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model(args.model, device="cpu")
    task = make_task("arith-v1")
    problems = task.problems(args.split)[: args.problems]
    out = decode(
        lm,
        [task.format_prompt(p.question, lm.tokenizer) for p in problems],
        top_k_rule(args.block_length // args.tokens_per_step),
        gen_length=args.gen_length,
        block_length=args.block_length,
    )
    solved: dict[int, list[bool]] = defaultdict(list)
    kinds: Counter[str] = Counter()
    for generation, problem in zip(out.generations, problems, strict=True):
        text = lm.decode_generation(generation)
        correct = task.is_correct(text, problem.reference)
        solved[problem.solution.count("=")].append(correct)
        if not correct:
            kinds[error_kind(problem.solution, text)] += 1
    total = sum(map(sum, solved.values()))
    print(
        f"{args.model} on {len(problems)} {args.split} problems, L = {args.gen_length}, "
        f"block {args.block_length}, {args.tokens_per_step} token(s) per step: "
        f"{100 * total / len(problems):.1f}%\n"
    )
    print("| worked steps | solved |\n|---:|---:|")
    for links, results in sorted(solved.items()):
        print(f"| {links} | {sum(results)}/{len(results)} |")
    print("\n| first wrong step | answers |\n|---|---:|")
    for kind, count in kinds.most_common():
        print(f"| {kind} | {count} |")


if __name__ == "__main__":
    main()
