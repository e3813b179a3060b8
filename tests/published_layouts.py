"""Tiny checkpoints in the *published* LLaDA and Dream layouts, and plain reference forwards.

The config keys and tensor names are those of the published checkpoints (LLaDA-8B-Instruct's
``config.json`` / ``model.safetensors.index.json``: ``model.transformer.blocks.N.q_proj``...;
Dream-v0-Instruct-7B's: Qwen2 names ``model.layers.N.self_attn.q_proj``...), at tiny sizes
with random weights. The reference forwards are written here from the published code's math
(explicit softmax attention, no fusing), independently of ``dllm_gym.models``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file


def llada_config(vocab_size: int, *, mask_token_id: int, eos_token_id: int, **overrides) -> dict:
    """LLaDA-8B-Instruct's config.json layout at a tiny size."""
    config = {
        "activation_type": "silu",
        "alibi": False,
        "alibi_bias_max": 8.0,
        "architectures": ["LLaDAModelLM"],
        "attention_dropout": 0.0,
        "attention_layer_norm": False,
        "attention_layer_norm_with_affine": True,
        "auto_map": {
            "AutoConfig": "configuration_llada.LLaDAConfig",
            "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
            "AutoModel": "modeling_llada.LLaDAModelLM",
        },
        "bias_for_layer_norm": False,
        "block_group_size": 1,
        "block_type": "llama",
        "d_model": 32,
        "embedding_dropout": 0.0,
        "embedding_size": vocab_size,
        "eos_token_id": eos_token_id,
        "flash_attention": False,
        "include_bias": False,
        "include_qkv_bias": False,
        "init_device": "meta",
        "init_fn": "mitchell",
        "init_std": 0.02,
        "input_emb_norm": False,
        "layer_norm_type": "rms",
        "layer_norm_with_affine": True,
        "mask_token_id": mask_token_id,
        "max_sequence_length": 256,
        "mlp_hidden_size": 48,
        "mlp_ratio": 4,
        "model_type": "llada",
        "multi_query_attention": None,
        "n_heads": 4,
        "n_kv_heads": 4,
        "n_layers": 2,
        "pad_token_id": eos_token_id,
        "precision": "amp_bf16",
        "residual_dropout": 0.0,
        "rms_norm_eps": 1e-05,
        "rope": True,
        "rope_full_precision": True,
        "rope_theta": 500000.0,
        "scale_logits": False,
        "use_cache": False,
        "vocab_size": vocab_size,
        "weight_tying": False,
    }
    config.update(overrides)
    return config


def dream_config(vocab_size: int, *, mask_token_id: int, eos_token_id: int, **overrides) -> dict:
    """Dream-v0-Instruct-7B's config.json layout at a tiny size (model_type "Dream")."""
    config = {
        "architectures": ["DreamModel"],
        "attention_dropout": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_dream.DreamConfig",
            "AutoModel": "modeling_dream.DreamModel",
        },
        "bos_token_id": eos_token_id,
        "eos_token_id": eos_token_id,
        "hidden_act": "silu",
        "hidden_size": 32,
        "initializer_range": 0.02,
        "intermediate_size": 48,
        "mask_token_id": mask_token_id,
        "max_position_embeddings": 256,
        "max_window_layers": 2,
        "model_type": "Dream",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "pad_token_id": eos_token_id,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000.0,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab_size,
    }
    config.update(overrides)
    return config


def _normal(generator: torch.Generator, *shape: int, std: float) -> torch.Tensor:
    return torch.randn(*shape, generator=generator) * std


def llada_state(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under LLaDA's published tensor names (sharp enough to decode with)."""
    g = torch.Generator().manual_seed(seed)
    d, ffn, vocab = config["d_model"], config["mlp_hidden_size"], config["embedding_size"]
    kv = config["n_kv_heads"] * d // config["n_heads"]
    top = "model.transformer"
    state = {
        f"{top}.wte.weight": _normal(g, vocab, d, std=1.0),
        f"{top}.ln_f.weight": 1 + _normal(g, d, std=0.1),
        f"{top}.ff_out.weight": _normal(g, vocab, d, std=3 / math.sqrt(d)),
    }
    for i in range(config["n_layers"]):
        b = f"{top}.blocks.{i}"
        state |= {
            f"{b}.attn_norm.weight": 1 + _normal(g, d, std=0.1),
            f"{b}.ff_norm.weight": 1 + _normal(g, d, std=0.1),
            f"{b}.q_proj.weight": _normal(g, d, d, std=1.5 / math.sqrt(d)),
            f"{b}.k_proj.weight": _normal(g, kv, d, std=1.5 / math.sqrt(d)),
            f"{b}.v_proj.weight": _normal(g, kv, d, std=1 / math.sqrt(d)),
            f"{b}.attn_out.weight": _normal(g, d, d, std=1 / math.sqrt(d)),
            f"{b}.ff_proj.weight": _normal(g, ffn, d, std=1 / math.sqrt(d)),
            f"{b}.up_proj.weight": _normal(g, ffn, d, std=1 / math.sqrt(d)),
            f"{b}.ff_out.weight": _normal(g, d, ffn, std=1 / math.sqrt(ffn)),
        }
    return state


def dream_state(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under Dream's published (Qwen2) tensor names."""
    g = torch.Generator().manual_seed(seed)
    d, ffn, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    kv = config["num_key_value_heads"] * d // config["num_attention_heads"]
    state = {
        "model.embed_tokens.weight": _normal(g, vocab, d, std=1.0),
        "model.norm.weight": 1 + _normal(g, d, std=0.1),
        "lm_head.weight": _normal(g, vocab, d, std=3 / math.sqrt(d)),
    }
    for i in range(config["num_hidden_layers"]):
        b, a = f"model.layers.{i}", f"model.layers.{i}.self_attn"
        state |= {
            f"{b}.input_layernorm.weight": 1 + _normal(g, d, std=0.1),
            f"{b}.post_attention_layernorm.weight": 1 + _normal(g, d, std=0.1),
            f"{a}.q_proj.weight": _normal(g, d, d, std=1.5 / math.sqrt(d)),
            f"{a}.q_proj.bias": _normal(g, d, std=0.3),
            f"{a}.k_proj.weight": _normal(g, kv, d, std=1.5 / math.sqrt(d)),
            f"{a}.k_proj.bias": _normal(g, kv, std=0.3),
            f"{a}.v_proj.weight": _normal(g, kv, d, std=1 / math.sqrt(d)),
            f"{a}.v_proj.bias": _normal(g, kv, std=0.3),
            f"{a}.o_proj.weight": _normal(g, d, d, std=1 / math.sqrt(d)),
            f"{b}.mlp.gate_proj.weight": _normal(g, ffn, d, std=1 / math.sqrt(d)),
            f"{b}.mlp.up_proj.weight": _normal(g, ffn, d, std=1 / math.sqrt(d)),
            f"{b}.mlp.down_proj.weight": _normal(g, d, ffn, std=1 / math.sqrt(ffn)),
        }
    return state


def write_checkpoint(folder: Path, config: dict, state: dict[str, torch.Tensor], shards: int = 2):
    """config.json plus ``shards`` safetensors files and their index, as published."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    names = sorted(state)
    weight_map = {}
    for shard in range(shards):
        file = f"model-{shard + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: state[n].contiguous() for n in names[shard::shards]}
        save_file(part, str(folder / file), metadata={"format": "pt"})
        weight_map |= dict.fromkeys(part, file)
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


# ----------------------------------------------------------------------- reference forwards
def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary embedding, half-split layout, positions 0..T-1 (x: B, H, T, hd)."""
    head_dim, length = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.outer(torch.arange(length).float(), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    x1, x2 = x[..., : head_dim // 2], x[..., head_dim // 2 :]
    return x * angles.cos() + torch.cat([-x2, x1], dim=-1) * angles.sin()


def _attention(x, q_w, k_w, v_w, o_w, heads, kv_heads, theta, biases=(None, None, None)):
    batch, length, d = x.shape
    head_dim = d // heads

    def project(w, b, n):
        y = x @ w.T + (0 if b is None else b)
        return y.view(batch, length, n, head_dim).transpose(1, 2)

    q = _rope(project(q_w, biases[0], heads), theta)
    k = _rope(project(k_w, biases[1], kv_heads), theta)
    v = project(v_w, biases[2], kv_heads)
    k = k.repeat_interleave(heads // kv_heads, dim=1)
    v = v.repeat_interleave(heads // kv_heads, dim=1)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim), dim=-1)
    return (weights @ v).transpose(1, 2).reshape(batch, length, d) @ o_w.T


def reference_llada_logits(state: dict, config: dict, ids: torch.Tensor) -> torch.Tensor:
    """LLaDA's forward: logits[:, i] predict token i."""
    top, eps = "model.transformer", config["rms_norm_eps"]
    x = state[f"{top}.wte.weight"][ids]
    for i in range(config["n_layers"]):
        b = f"{top}.blocks.{i}"
        h = _rms(x, state[f"{b}.attn_norm.weight"], eps)
        x = x + _attention(
            h,
            state[f"{b}.q_proj.weight"],
            state[f"{b}.k_proj.weight"],
            state[f"{b}.v_proj.weight"],
            state[f"{b}.attn_out.weight"],
            config["n_heads"],
            config["n_kv_heads"],
            config["rope_theta"],
        )
        h = _rms(x, state[f"{b}.ff_norm.weight"], eps)
        gate, up = h @ state[f"{b}.ff_proj.weight"].T, h @ state[f"{b}.up_proj.weight"].T
        x = x + (F.silu(gate) * up) @ state[f"{b}.ff_out.weight"].T
    return _rms(x, state[f"{top}.ln_f.weight"], eps) @ state[f"{top}.ff_out.weight"].T


def reference_dream_logits(state: dict, config: dict, ids: torch.Tensor) -> torch.Tensor:
    """Dream's network output: logits[:, i] predict token i + 1 (before the generation
    code's shift)."""
    eps = config["rms_norm_eps"]
    x = state["model.embed_tokens.weight"][ids]
    for i in range(config["num_hidden_layers"]):
        b, a = f"model.layers.{i}", f"model.layers.{i}.self_attn"
        h = _rms(x, state[f"{b}.input_layernorm.weight"], eps)
        x = x + _attention(
            h,
            state[f"{a}.q_proj.weight"],
            state[f"{a}.k_proj.weight"],
            state[f"{a}.v_proj.weight"],
            state[f"{a}.o_proj.weight"],
            config["num_attention_heads"],
            config["num_key_value_heads"],
            config["rope_theta"],
            biases=tuple(state[f"{a}.{x}_proj.bias"] for x in "qkv"),
        )
        h = _rms(x, state[f"{b}.post_attention_layernorm.weight"], eps)
        gate, up = h @ state[f"{b}.mlp.gate_proj.weight"].T, h @ state[f"{b}.mlp.up_proj.weight"].T
        x = x + (F.silu(gate) * up) @ state[f"{b}.mlp.down_proj.weight"].T
    return _rms(x, state["model.norm.weight"], eps) @ state["lm_head.weight"].T
