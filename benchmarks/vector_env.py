"""How close the native vector environment comes to the cost of the model's forward pass.

Prints, from measurements taken in this one run:

(a) vector env step time against the raw batched forward of the same model on the same
    buffers (the step's own forward included), at each N;
(b) env steps per second of the vector env against N single envs stepped in turn
    (``SyncVectorEnv`` of ``gym.make``), at each N, beside the ceiling of that ratio: the
    same forward done row by row (each row unpadded) over the batched forward;
(c) resident memory after many steps against after 100 (a leak shows as growth);
(d) where a step's time goes (cProfile over many steps): the forward pass, the features
    computed from the logits, host transfer of the observations, and the rest (bookkeeping:
    action checks, reveals, block updates, scoring and resets of finished episodes).

    python benchmarks/vector_env.py                          # embedded model, CPU, ~3 min
    python benchmarks/vector_env.py --num-envs 32 --memory-steps 1000

Targets (DESIGN's performance principles): step/forward <= 1.15 on the CPU (<= 1.03 on a
GPU) and vector/sync >= 5 at N = 32.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import dllm_gym  # noqa: F401  (registers the ids)


def resident_mib() -> float:
    """Current resident set size of this process, MiB (Linux ``/proc``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_actions(rng: np.random.Generator, num_envs: int, length: int, steps: int):
    """A bank of reveal decisions (10% of positions), drawn before any timing."""
    return rng.random((steps, num_envs, length)) < 0.1


def time_vector_env(env_id: str, num_envs: int, steps: int, overrides: dict) -> dict:
    """Mean seconds of a vector env step and of the raw forward on the same buffers."""
    envs = gym.make_vec(env_id, num_envs=num_envs, **overrides)
    inner = envs.unwrapped
    model, length = inner.workload.model, inner.settings.gen_length
    envs.reset(seed=0)
    actions = random_actions(np.random.default_rng(0), num_envs, length, steps + 5)
    for action in actions[:5]:  # warm-up: allocator, kernels, prompt cache
        envs.step(action)
    step_seconds, forward_seconds, row_by_row_seconds = [], [], []
    for index, action in enumerate(actions[5:]):
        # Interleaved, so that both see the same machine state.
        state = inner._state
        if index < ROW_BY_ROW_STEPS:
            row_by_row_seconds.append(row_by_row_forward_seconds(model, state))
        synchronize(model.device)
        started = time.perf_counter()
        model.generation_logits(
            state.tokens,
            state.attention_mask,
            state.position_ids,
            start=state.prompt_width,
            length=state.gen_length,
        )
        synchronize(model.device)
        forward_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        envs.step(action)
        synchronize(model.device)
        step_seconds.append(time.perf_counter() - started)
    envs.close()
    return {
        "step": float(np.median(step_seconds)),
        "forward": float(np.median(forward_seconds)),
        "row_by_row": float(np.median(row_by_row_seconds)),
    }


ROW_BY_ROW_STEPS = 10


def row_by_row_forward_seconds(model, state) -> float:
    """Seconds of the same forward done one row at a time, each row without its padding.

    Batched over row-by-row is the most any batching of this model can gain on this machine:
    the ceiling of the vector env's speed-up over single envs stepped in turn.
    """
    first_real = state.attention_mask.int().argmax(dim=1).tolist()
    synchronize(model.device)
    started = time.perf_counter()
    for row, pad in enumerate(first_real):
        model.generation_logits(
            state.tokens[row : row + 1, pad:],
            state.attention_mask[row : row + 1, pad:],
            state.position_ids[row : row + 1, pad:],
            start=state.prompt_width - pad,
            length=state.gen_length,
        )
    synchronize(model.device)
    return time.perf_counter() - started


def time_sync_env(env_id: str, num_envs: int, steps: int, overrides: dict) -> float:
    """Mean seconds of a step of ``num_envs`` single envs stepped in turn."""
    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync", **overrides)
    length = envs.single_action_space.n
    envs.reset(seed=0)
    actions = random_actions(np.random.default_rng(0), num_envs, length, steps + 2)
    for action in actions[:2]:
        envs.step(action)
    started = time.perf_counter()
    for action in actions[2:]:
        envs.step(action)
    envs.close()
    return (time.perf_counter() - started) / steps


def memory_growth(env_id: str, num_envs: int, steps: int, overrides: dict) -> tuple[float, float]:
    """Resident MiB after 100 steps and after ``steps`` steps of the vector env."""
    envs = gym.make_vec(env_id, num_envs=num_envs, **overrides)
    length = envs.single_action_space.n
    envs.reset(seed=0)
    rng = np.random.default_rng(1)
    after_100 = 0.0
    for step in range(1, steps + 1):
        envs.step(rng.random((num_envs, length)) < 0.1)
        if step == 100:
            gc.collect()
            after_100 = resident_mib()
    gc.collect()
    after = resident_mib()
    envs.close()
    return after_100, after


def profile_step(env_id: str, num_envs: int, steps: int, overrides: dict) -> dict[str, float]:
    """Share of step time per phase, from cProfile's cumulative times."""
    envs = gym.make_vec(env_id, num_envs=num_envs, **overrides)
    length = envs.single_action_space.n
    envs.reset(seed=0)
    actions = random_actions(np.random.default_rng(2), num_envs, length, steps + 5)
    for action in actions[:5]:
        envs.step(action)
    profiler = cProfile.Profile()
    profiler.enable()
    for action in actions[5:]:
        envs.step(action)
    profiler.disable()
    envs.close()
    cumulative: dict[str, float] = {}
    for (filename, _, name), row in pstats.Stats(profiler).stats.items():
        key = f"{Path(filename).name}:{name}"
        cumulative[key] = cumulative.get(key, 0.0) + row[3]
    total = cumulative["unmask_vector_env.py:step"]
    forward = cumulative["loading.py:generation_logits"]
    features = cumulative["features.py:logit_features"]
    transfer = cumulative["core.py:observations"]
    return {
        "forward pass": forward / total,
        "features from logits": features / total,
        "host transfer (observations)": transfer / total,
        "bookkeeping (the rest)": (total - forward - features - transfer) / total,
        "_ms_per_step": 1000 * total / steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env-id", default="DLLMUnmask-Arith-v0")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--steps", type=int, default=60, help="timed steps per N")
    parser.add_argument("--sync-steps", type=int, default=10, help="timed steps, single envs")
    parser.add_argument("--memory-envs", type=int, default=8)
    parser.add_argument("--memory-steps", type=int, default=10_000)
    parser.add_argument("--profile-envs", type=int, default=32)
    parser.add_argument("--profile-steps", type=int, default=100)
    parser.add_argument("--model", default=None, help="override the id's model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"device": args.device, "dtype": args.dtype}
    if args.model:
        overrides["model"] = args.model
    probe = gym.make(args.env_id, **overrides).unwrapped
    print(
        f"{args.env_id}: model {probe.settings.model} on {probe.model.device} "
        f"({probe.model.dtype}), L={probe.settings.gen_length}, "
        f"block {probe.settings.block_length}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads\n"
    )

    print("| N | step (ms) | forward (ms) | step / forward | vector env steps/s "
          "| single envs steps/s | vector / single | forward row by row / batched |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.num_envs:
        timed = time_vector_env(args.env_id, n, args.steps, overrides)
        sync = time_sync_env(args.env_id, n, args.sync_steps, overrides)
        vector_rate, sync_rate = n / timed["step"], n / sync
        print(
            f"| {n} | {1000 * timed['step']:.2f} | {1000 * timed['forward']:.2f} "
            f"| {timed['step'] / timed['forward']:.3f} | {vector_rate:.0f} | {sync_rate:.0f} "
            f"| {vector_rate / sync_rate:.1f} | {timed['row_by_row'] / timed['forward']:.1f} |",
            flush=True,
        )

    before, after = memory_growth(args.env_id, args.memory_envs, args.memory_steps, overrides)
    print(
        f"\nresident memory, N={args.memory_envs}: {before:.0f} MiB after 100 steps, "
        f"{after:.0f} MiB after {args.memory_steps} steps (ratio {after / before:.3f})"
    )

    shares = profile_step(args.env_id, args.profile_envs, args.profile_steps, overrides)
    print(
        f"\nwhere a step goes, N={args.profile_envs} ({shares.pop('_ms_per_step'):.2f} ms a "
        f"step under cProfile, {args.profile_steps} steps):"
    )
    for phase, share in shares.items():
        print(f"  {phase:30s} {100 * share:5.1f}%")
    if probe.model.device.type == "cuda":
        print("  (CUDA kernels run asynchronously: their time shows where the host waits)")


if __name__ == "__main__":
    main()
