"""What the key/value cache buys: env steps/s and tokens/s for cache none / prefix / dual.

Each measurement runs whole episodes of the vector env (`autoreset_mode=DISABLED`, every row
from its reset to its end, the reset's full forward included) under one fixed reveal rule:
the `k` most confident active positions a step (LLaDA's top-k schedule; `--per-step`, 4 by
default, so a block of 32 takes 8 steps: one full forward and 7 partial ones). Reported, all
from this one run:

(a) the GSM8K-like shape: a random-weight model written in LLaDA-8B-Instruct's published
    layout (config keys, tensor names) and loaded by the native backend, sized for a CPU
    (d 512, 8 layers, 8 heads, MLP 1536; the word tokenizer's 68-token vocabulary, where
    LLaDA's head is about 6% of its compute), prompts of 200 tokens, L = 256, block 32,
    N = 8;
(b) the embedded model on `DLLMUnmask-Arith-v0` (L = 48, block 16), N = 32;
(c) with `--memory-steps S`: resident memory of the vector env with `cache="dual"`
    (embedded model, N = 8, random reveals, autoreset) after 100 steps and after S steps,
    and how often its cache slab was replaced (only when a longer prompt widens the buffer).

    python benchmarks/kv_cache.py                        # CPU: (a) and (b), ~10 min
    python benchmarks/kv_cache.py --memory-steps 10000   # and (c)
    python benchmarks/kv_cache.py --size full --device cuda --dtype bfloat16 --rows 1 8 32
        # LLaDA-8B shape with random weights (GPU, ~20 GB of weights), N = 1, 8, 32

Goal at the GSM8K-like shape: prefix at least 2x and dual at least 3x the uncached steps/s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

import dllm_gym  # noqa: F401  (registers the ids)
from dllm_gym.models.tokenizer import build_word_tokenizer, save_portable_tokenizer
from dllm_gym.tasks.arith import vocabulary

sys.path.insert(0, str(Path(__file__).parent))
from native_backend_gpu import (  # a sibling script, not a package
    SHAPES,
    published_config,
    write_prompts,
    write_random_checkpoint,
)

MODES = ("none", "prefix", "dual")
CPU_LLADA = {
    "d_model": 512, "n_heads": 8, "n_kv_heads": 8, "n_layers": 8, "mlp_hidden_size": 1536,
    "max_sequence_length": 1024,
}  # fmt: skip


def resident_mib() -> float:
    """Current resident set size of this process, MiB (Linux ``/proc``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def top_k_actions(obs: dict[str, np.ndarray], k: int) -> np.ndarray:
    """The ``k`` most confident active positions of each row."""
    score = np.where(obs["active"] == 1, obs["confidence"], -1.0)
    chosen = np.zeros(score.shape, dtype=bool)
    top = np.argsort(-score, axis=1, kind="stable")[:, :k]
    np.put_along_axis(chosen, top, True, axis=1)
    return chosen & (obs["active"] == 1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_episodes(env_id: str, rows: int, per_step: int, overrides: dict) -> dict[str, float]:
    """Seconds, env steps and revealed tokens of one episode of every row (after a warm-up
    of two steps on the same shape)."""
    envs = gym.make_vec(env_id, num_envs=rows, autoreset_mode=AutoresetMode.DISABLED, **overrides)
    device = envs.unwrapped.workload.model.device
    result = {}
    for label in ("warm-up", "timed"):
        sync(device)
        start = time.perf_counter()
        obs, _ = envs.reset(seed=0, options={"index": list(range(rows))})
        steps, done = 0, np.zeros(rows, dtype=bool)
        full = window = 0
        while not done.all() and (label == "timed" or steps < 2 * rows):
            obs, _, terminated, truncated, infos = envs.step(top_k_actions(obs, per_step))
            steps += int((~done).sum())
            ended = terminated | truncated
            if ended.any():
                full += int(infos["full_forwards"][ended].sum())
                window += int(infos["window_forwards"][ended].sum())
            done |= ended
        sync(device)
        result = {
            "seconds": time.perf_counter() - start,
            "steps": steps,
            "tokens": rows * envs.unwrapped.settings.gen_length,
            "full": full,
            "window": window,
            "label": label,
        }
    envs.close()
    return result


def speed_table(title: str, env_id: str, rows: int, per_step: int, overrides: dict) -> None:
    print(f"\n{title}")
    print("| cache | N | env steps/s | tokens/s | full / partial forwards | vs none |")
    print("|---|---:|---:|---:|---:|---:|")
    base = None
    for mode in MODES:
        r = run_episodes(env_id, rows, per_step, {**overrides, "cache": mode})
        rate = r["steps"] / r["seconds"]
        base = base or rate
        print(
            f"| {mode} | {rows} | {rate:.2f} | {r['tokens'] / r['seconds']:.1f} | "
            f"{r['full']} / {r['window']} | {rate / base:.2f}x |",
            flush=True,
        )


def memory_check(steps: int) -> None:
    envs = gym.make_vec("DLLMUnmask-Arith-v0", num_envs=8, cache="dual")
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    replaced, slab, after_100 = 0, None, None
    for step in range(1, steps + 1):
        envs.step(rng.random((8, 48)) < 0.1)
        current = envs.unwrapped._state._kv.slab
        replaced += slab is not None and current is not slab
        slab = current
        if step == 100:
            after_100 = resident_mib()
    final = resident_mib()
    print(
        f"\n(c) cache='dual', N = 8, {steps} steps: resident {after_100:.0f} MiB after 100 "
        f"steps, {final:.0f} MiB after {steps}; slab {tuple(slab.shape)} "
        f"({slab.numel() * slab.element_size() / 2**20:.2f} MiB), replaced {replaced} times"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["cpu", "full"], default="cpu")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--rows", type=int, nargs="+", default=[8])
    parser.add_argument("--per-step", type=int, default=4, help="tokens revealed a step")
    parser.add_argument("--prompt-words", type=int, default=190, help="about 200 tokens")
    parser.add_argument("--memory-steps", type=int, default=0)
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    tokenizer = build_word_tokenizer(vocabulary())
    if args.size == "full":
        config = dict(SHAPES[("llada", "full")])
    else:
        config = {**published_config("llada", "tiny", tokenizer), **CPU_LLADA}
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kv_cache_"))
    folder = work / f"llada-{args.size}"
    write_random_checkpoint(folder, "llada", config, device)
    save_portable_tokenizer(tokenizer, folder)
    data = work / "prompts.jsonl"
    write_prompts(data, max(args.rows), words=args.prompt_words)
    threads = torch.get_num_threads()
    print(
        f"torch {torch.__version__}, {args.device}, {args.dtype}, {threads} CPU threads; "
        f"{args.per_step} tokens revealed a step"
    )
    overrides = {
        "model": str(folder), "device": args.device, "dtype": args.dtype,
        "data_files": {"test": str(data)}, "gen_length": 256, "block_length": 32,
    }  # fmt: skip
    shape = "LLaDA-8B" if args.size == "full" else "LLaDA layout, d 512, 8 layers"
    for rows in args.rows:
        speed_table(
            f"(a) {shape}, random weights, prompt ~200 tokens, L = 256, block 32",
            "DLLMUnmask-GSM8K-v0", rows, args.per_step, overrides,
        )  # fmt: skip
    if not args.skip_embedded:
        speed_table(
            "(b) embedded model, DLLMUnmask-Arith-v0 (L = 48, block 16)",
            "DLLMUnmask-Arith-v0", 32, args.per_step, {"device": args.device},
        )  # fmt: skip
    if args.memory_steps:
        memory_check(args.memory_steps)


if __name__ == "__main__":
    main()
