"""What sharding the vector env over Ray actors costs: step time against the local env.

Each measurement runs whole episodes of every row (`autoreset_mode=DISABLED`, the reset's
forward pass included; the median of 10 timed runs after a warm-up of two steps) under one
fixed rule: reveal the 4 most confident active positions a step. Reported, from this one run:

- seconds per vector-env step of the local `UnmaskVectorEnv` and of the
  `DistributedUnmaskVectorEnv` with W = 1 and W = 2 actors (CPU actors share the machine's
  threads: the local env and W = 1 get all of them, W = 2 half each), and their ratio;
- the Ray round trip per step: a call to every actor that does nothing, gathered as a step
  is (median of 200).

    python benchmarks/distributed.py                 # CPU, embedded model, Arith, N = 32
    python benchmarks/distributed.py --size full --device cuda --dtype bfloat16 --rows 8 \\
        --workers 1 --gpus-per-worker 1              # LLaDA-8B shape, random weights, 1 GPU
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import ray
import torch
from gymnasium.vector import AutoresetMode

import dllm_gym  # noqa: F401  (registers the ids)
from dllm_gym.models.tokenizer import build_word_tokenizer, save_portable_tokenizer
from dllm_gym.tasks.arith import vocabulary

sys.path.insert(0, str(Path(__file__).parent))
from kv_cache import top_k_actions  # sibling scripts, not a package
from native_backend_gpu import SHAPES, write_prompts, write_random_checkpoint


def episodes(
    envs: gym.vector.VectorEnv, rows: int, per_step: int, repeats: int
) -> tuple[float, int]:
    """Median seconds of one episode of every row (``repeats`` timed runs after a warm-up
    of two steps) and its vector-env steps."""
    times = []
    for repeat in range(repeats + 1):
        start = time.perf_counter()
        obs, _ = envs.reset(seed=0, options={"index": list(range(rows))})
        calls, done = 0, np.zeros(rows, dtype=bool)
        while not done.all() and (repeat > 0 or calls < 2):
            obs, _, terminated, truncated, _ = envs.step(top_k_actions(obs, per_step))
            calls += 1
            done |= terminated | truncated
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), calls


def round_trip_ms(envs, repeats: int = 200) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ray.get([shard.ping.remote() for shard in envs.shards])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["embedded", "full"], default="embedded")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--gpus-per-worker", type=float, default=0.0)
    parser.add_argument("--per-step", type=int, default=4, help="tokens revealed a step")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs (median)")
    args = parser.parse_args()
    cpus = torch.get_num_threads()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    if args.size == "full":  # LLaDA-8B's published layout and shape, random weights
        work = Path(tempfile.mkdtemp(prefix="distributed_"))
        folder = work / "llada-full"
        tokenizer = build_word_tokenizer(vocabulary())
        write_random_checkpoint(
            folder, "llada", dict(SHAPES[("llada", "full")]), torch.device(args.device)
        )
        save_portable_tokenizer(tokenizer, folder)
        write_prompts(work / "prompts.jsonl", args.rows)
        env_id = "DLLMUnmask-GSM8K-v0"
        overrides = {
            "model": str(folder), "device": args.device, "dtype": args.dtype,
            "data_files": {"test": str(work / "prompts.jsonl")}, "gen_length": 256,
            "block_length": 32,
        }  # fmt: skip
        shape = "LLaDA-8B shape, random weights, prompt ~200, L 256, block 32"
    else:
        env_id, overrides = "DLLMUnmask-Arith-v0", {"device": args.device}
        shape = "embedded model, DLLMUnmask-Arith-v0 (L 48, block 16)"
    print(f"{shape}; N = {args.rows}; torch {torch.__version__}, {args.device}, {args.dtype}, "
          f"{cpus} threads; {args.per_step} tokens revealed a step")  # fmt: skip
    print("| env | W | s / step | steps | vs local | Ray round trip (ms) |")
    print("|---|---:|---:|---:|---:|---:|")
    kwargs = {"num_envs": args.rows, "autoreset_mode": AutoresetMode.DISABLED, **overrides}
    local = gym.make_vec(env_id, **kwargs)
    seconds, calls = episodes(local, args.rows, args.per_step, args.repeats)
    local.close()
    base = seconds / calls
    print(f"| local | - | {base:.4f} | {calls} | 1.00x | - |", flush=True)
    for workers in args.workers:
        envs = gym.make_vec(
            env_id, workers=workers, num_gpus_per_worker=args.gpus_per_worker,
            num_cpus_per_worker=max(1, cpus // workers), **kwargs,
        )  # fmt: skip
        seconds, calls = episodes(envs, args.rows, args.per_step, args.repeats)
        trip = round_trip_ms(envs)
        envs.close()
        per_step = seconds / calls
        print(f"| distributed | {workers} | {per_step:.4f} | {calls} | {per_step / base:.2f}x "
              f"| {trip:.2f} |", flush=True)  # fmt: skip
    ray.shutdown()


if __name__ == "__main__":
    main()
