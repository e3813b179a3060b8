"""The native backend at LLaDA-8B and Dream-7B shape: load, memory, forward, env step.

Writes a random-weight checkpoint in the published layout of the family (config keys, tensor
names and shapes of LLaDA-8B-Instruct or Dream-v0-Instruct-7B, sharded safetensors with their
index), then measures in this one run:

(a) load time of ``load_model`` (native backend, bfloat16) and peak GPU memory against the
    weights' size (no float32 copy: the ratio stays near 1);
(b) forward time at N = 1, 8, 32 rows, prompt 200 tokens, L = 256, and peak memory;
(c) the vector env's step time against the raw batched forward on the same buffers at N = 32
    (target: at most 1.03);
(d) env steps per second of the vector env against 32 single envs stepped in turn (target: at
    least 5).

    python benchmarks/native_backend_gpu.py --family llada          # needs a CUDA GPU, ~40 GB
    python benchmarks/native_backend_gpu.py --family dream
    python benchmarks/native_backend_gpu.py --family llada --size tiny --device cpu  # smoke run

Prompts are GSM8K-shaped JSON lines written here (about 200 tokens each with the embedded
model's word tokenizer, which stands in for the real one: token ids are all the model sees).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from safetensors.torch import save_file

import dllm_gym  # noqa: F401  (registers the ids)
from dllm_gym.models.loading import load_model
from dllm_gym.models.native import LAYOUTS
from dllm_gym.models.tokenizer import build_word_tokenizer, save_portable_tokenizer
from dllm_gym.tasks.arith import vocabulary

SHAPES = {
    ("llada", "full"): {
        "model_type": "llada", "d_model": 4096, "n_heads": 32, "n_kv_heads": 32,
        "n_layers": 32, "mlp_hidden_size": 12288, "vocab_size": 126464,
        "embedding_size": 126464, "max_sequence_length": 4096, "rope_theta": 500000.0,
        "rms_norm_eps": 1e-5, "rope_full_precision": True, "mask_token_id": 126336,
        "eos_token_id": 126081, "pad_token_id": 126081, "weight_tying": False,
        "block_type": "llama", "include_bias": False,
    },
    ("dream", "full"): {
        "model_type": "Dream", "hidden_size": 3584, "num_attention_heads": 28,
        "num_key_value_heads": 4, "num_hidden_layers": 28, "intermediate_size": 18944,
        "vocab_size": 152064, "max_position_embeddings": 131072, "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6, "mask_token_id": 151666, "eos_token_id": 151643,
        "pad_token_id": 151643, "tie_word_embeddings": False, "hidden_act": "silu",
    },
}  # fmt: skip
TINY = {
    "llada": {"d_model": 64, "n_heads": 4, "n_kv_heads": 4, "n_layers": 2,
              "mlp_hidden_size": 128, "max_sequence_length": 1024},
    "dream": {"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
              "num_hidden_layers": 2, "intermediate_size": 128, "max_position_embeddings": 1024},
}  # fmt: skip


def published_config(family: str, size: str, tokenizer) -> dict:
    if size == "full":
        return dict(SHAPES[(family, "full")])
    config = {**SHAPES[(family, "full")], **TINY[family]}
    vocab = len(tokenizer)
    ids = {"mask_token_id": tokenizer.mask_token_id, "eos_token_id": tokenizer.eos_token_id}
    config |= ids | {"pad_token_id": tokenizer.eos_token_id, "vocab_size": vocab}
    if family == "llada":
        config["embedding_size"] = vocab
    return config


def write_random_checkpoint(folder: Path, family: str, config: dict, device: torch.device):
    """Random bfloat16 weights under the published names, in shards of about 4 GB."""
    layout = LAYOUTS[family]
    native_config = layout.build_config(config)
    sources = [s for parts in layout.sources(native_config, config).values() for s in parts]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    generator = torch.Generator(device=device).manual_seed(0)
    shard: dict[str, torch.Tensor] = {}
    shards: list[dict[str, torch.Tensor]] = []
    size = 0
    for source in {s.name: s for s in sources}.values():
        tensor = torch.randn(source.shape, generator=generator, device=device, dtype=torch.float32)
        scale = 1.0 if len(source.shape) == 1 else source.shape[-1] ** -0.5
        shard[source.name] = (
            (1 + 0.1 * tensor if len(source.shape) == 1 else tensor * scale)
            .to(torch.bfloat16)
            .cpu()
        )
        size += shard[source.name].numel() * 2
        if size > 4e9:
            shards.append(shard)
            shard, size = {}, 0
    shards.append(shard)
    weight_map = {}
    for i, part in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(part, str(folder / file), metadata={"format": "pt"})
        weight_map |= dict.fromkeys(part, file)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def write_prompts(path: Path, count: int, words: int = 190) -> None:
    rng = np.random.default_rng(0)
    vocab = [w for w in vocabulary() if w.isalpha()]
    with path.open("w") as f:
        for _ in range(count):
            question = " ".join(rng.choice(vocab, size=words)) + "?"
            f.write(json.dumps({"question": question, "answer": "So 1 + 1 = 2.\n#### 2"}) + "\n")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int = 5) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["llada", "dream"], default="llada")
    parser.add_argument("--size", choices=["full", "tiny"], default="full")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--prompt-length", type=int, default=200)
    parser.add_argument("--gen-length", type=int, default=256)
    parser.add_argument("--block-length", type=int, default=32)
    parser.add_argument("--env-steps", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the checkpoint")
    args = parser.parse_args()
    device = torch.device(args.device)
    tokenizer = build_word_tokenizer(vocabulary())
    config = published_config(args.family, args.size, tokenizer)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="native_backend_"))
    folder = work / f"{args.family}-{args.size}"
    print(f"{args.family} ({args.size} shape) on {device}, {args.dtype}; checkpoint in {folder}")

    start = time.perf_counter()
    write_random_checkpoint(folder, args.family, config, device)
    save_portable_tokenizer(tokenizer, folder)
    print(f"wrote the random checkpoint in {time.perf_counter() - start:.1f} s")

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    lm = load_model(folder, device=args.device, dtype=args.dtype)
    sync(device)
    load_s = time.perf_counter() - start
    weights = sum(p.numel() * p.element_size() for p in lm.model.parameters())
    line = f"(a) load {load_s:.1f} s; weights {weights / 2**30:.2f} GiB"
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        line += f"; peak GPU memory while loading {peak / 2**30:.2f} GiB ({peak / weights:.2f}x)"
    print(line)

    length = args.prompt_length + args.gen_length
    for rows in (1, 8, 32):
        tokens = torch.randint(0, len(tokenizer), (rows, length), device=device)
        tokens[:, args.prompt_length :] = lm.mask_token_id
        mask = torch.ones_like(tokens, dtype=torch.bool)
        positions = torch.arange(length, device=device).expand(rows, length)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = timed(
            lambda t=tokens, m=mask, p=positions: lm.generation_logits(
                t, m, p, start=args.prompt_length, length=args.gen_length
            ),
            device,
        )
        peak = (
            f", peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
            if device.type == "cuda"
            else ""
        )
        print(f"(b) forward N={rows:>2}: {seconds * 1e3:8.1f} ms{peak}")

    data = work / "prompts.jsonl"
    write_prompts(data, 64)
    kwargs = {
        "model": str(folder), "device": args.device, "dtype": args.dtype,
        "data_files": {"test": str(data)}, "gen_length": args.gen_length,
        "block_length": args.block_length,
    }  # fmt: skip
    env_id, rows = "DLLMUnmask-GSM8K-v0", 32
    vector = gym.make_vec(env_id, num_envs=rows, **kwargs)
    obs, _ = vector.reset(seed=0)

    def vector_step():
        nonlocal obs
        obs, *_ = vector.step(obs["active"] * (obs["confidence"] >= 0.9))

    def raw_forward():  # the model call of a step, on the env's current buffers
        state = vector.unwrapped._state
        lm.generation_logits(
            state.tokens, state.attention_mask, state.position_ids,
            start=state.tokens.shape[1] - args.gen_length, length=args.gen_length,
        )  # fmt: skip

    step_s = timed(vector_step, device, repeats=args.env_steps)
    forward_s = timed(raw_forward, device, repeats=args.env_steps)
    print(
        f"(c) N={rows}: env step {step_s * 1e3:.1f} ms, raw forward {forward_s * 1e3:.1f} ms, "
        f"ratio {step_s / forward_s:.3f} (target <= 1.03)"
    )
    single = gym.vector.SyncVectorEnv([lambda: gym.make(env_id, **kwargs)] * rows)
    single_obs, _ = single.reset(seed=0)

    def single_step():
        nonlocal single_obs
        single_obs, *_ = single.step(single_obs["active"] * (single_obs["confidence"] >= 0.9))

    single_s = timed(single_step, device, repeats=max(2, args.env_steps // 3))
    print(
        f"(d) env steps/s: vector {rows / step_s:.1f}, {rows} single envs in turn "
        f"{rows / single_s:.1f}, ratio {single_s / step_s:.1f} (target >= 5)"
    )
    width = vector.unwrapped._state.tokens.shape[1] - args.gen_length
    print(f"prompt width of the env's buffer: {width} tokens")


if __name__ == "__main__":
    main()
