"""Accuracy against forward passes (NFE) of the reference decoding rules on a task.

Decodes problems of a task's split with LLaDA's top-k schedule at 1, 2, 4, 8 tokens per step
and with Fast-dLLM's confidence threshold at several values, then prints a Markdown table of
accuracy (with a 95% Wilson interval), mean NFE and time. Runs on the batched decoding core
(``dllm_gym.decoding.decode``); on the embedded model it needs only a CPU.

    python scripts/decoding_table.py --problems 200                     # about a minute
    python scripts/decoding_table.py --problems 1000 --gen-length 80 --block-length 80
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from agents.statistics import wilson_interval
from dllm_gym.decoding import Rule, check_lengths, decode, threshold_rule, top_k_rule
from dllm_gym.models.loading import DiffusionLM, load_model
from dllm_gym.tasks import Task, make_task


def rules(
    block_length: int, tokens_per_step: list[int], thresholds: list[float]
) -> dict[str, Rule]:
    table: dict[str, Rule] = {}
    for k in tokens_per_step:
        if block_length % k:
            raise SystemExit(f"--tokens-per-step {k} does not divide --block-length {block_length}")
        table[f"top-k, {k} per step"] = top_k_rule(block_length // k)
    for tau in thresholds:
        table[f"threshold {tau:g}"] = threshold_rule(tau)
    return table


def evaluate(
    lm: DiffusionLM,
    task: Task,
    split: str,
    count: int,
    rule: Rule,
    gen_length: int,
    block_length: int,
    batch_size: int,
) -> dict[str, float]:
    problems = task.problems(split)[:count]
    correct, nfe = 0, 0
    started = time.perf_counter()
    for begin in range(0, len(problems), batch_size):
        batch = problems[begin : begin + batch_size]
        prompts = [task.format_prompt(p.question, lm.tokenizer) for p in batch]
        out = decode(lm, prompts, rule, gen_length=gen_length, block_length=block_length)
        for generation, problem in zip(out.generations, batch, strict=True):
            correct += task.is_correct(lm.decode_generation(generation), problem.reference)
        nfe += int(out.nfe.sum())
    low, high = wilson_interval(correct, len(problems))
    return {
        "problems": len(problems),
        "accuracy": correct / len(problems),
        "ci_low": low,
        "ci_high": high,
        "mean_nfe": nfe / len(problems),
        "seconds": time.perf_counter() - started,
    }


def markdown(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "| rule | accuracy (%) | 95% CI | mean NFE | seconds |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        interval = f"{100 * r['ci_low']:.1f}-{100 * r['ci_high']:.1f}"
        lines.append(
            f"| {name} | {100 * r['accuracy']:.1f} | {interval} | {r['mean_nfe']:.1f} "
            f"| {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="embedded", help="model name or folder (default: embedded)"
    )
    parser.add_argument("--task", default="arith", help="a task name: arith, arith-v1, gsm8k, ...")
    parser.add_argument("--data-files", default=None, help="GSM8K JSON-lines file or folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--problems", type=int, default=200, help="first N problems of the split")
    parser.add_argument("--gen-length", type=int, default=48)
    parser.add_argument("--block-length", type=int, default=16)
    parser.add_argument("--tokens-per-step", type=int, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument("--thresholds", type=float, nargs="*", default=[0.5, 0.7, 0.9, 0.99])
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        check_lengths(args.gen_length, args.block_length)
        task_kwargs = {"data_files": args.data_files} if args.task == "gsm8k" else {}
        task = make_task(args.task, **task_kwargs)
        lm = load_model(args.model, device=args.device, dtype=args.dtype)
        table = rules(args.block_length, args.tokens_per_step, args.thresholds)
    except (ValueError, OSError, RuntimeError) as error:
        sys.exit(f"error: {error}")
    print(
        f"{args.task} {args.split}, {args.problems} problems, model {args.model}, "
        f"gen_length {args.gen_length}, block_length {args.block_length}",
        flush=True,
    )
    results = {}
    for name, rule in table.items():
        results[name] = evaluate(
            lm,
            task,
            args.split,
            args.problems,
            rule,
            args.gen_length,
            args.block_length,
            args.batch_size,
        )
        r = results[name]
        print(
            f"  {name}: accuracy {100 * r['accuracy']:.1f}%, mean NFE {r['mean_nfe']:.1f}",
            flush=True,
        )
    print()
    print(markdown(results))
    if args.json:
        path = Path(args.json)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"settings": vars(args), "results": results}, indent=2) + "\n")
        os.replace(tmp, path)


if __name__ == "__main__":
    main()
