"""Published LLaDA and Dream checkpoints on the project's own architecture.

The decoding path does not run the code that ships with the weights (which ignores the
attention mask in LLaDA's case and breaks across ``transformers`` releases in both): a
:class:`CheckpointLayout` reads the published ``config.json``, builds a
:class:`~dllm_gym.models.architecture.DiffusionTransformerConfig` with the same shapes, and
maps every published tensor name onto the project's modules (fusing q/k/v and gate/up
projections). :func:`load_native_model` builds the model on the meta device and fills it one
tensor at a time from the (sharded) safetensors files, converting each to the target dtype on
its way to the device, so an 8B checkpoint never has a full float32 copy.

What the published code computes, and the native model therefore computes:

- LLaDA (``model_type: "llada"``, OLMo-derived code): token embedding ``wte`` (no scaling);
  per block RMSNorm -> q/k/v (no biases) -> rotary (half-split layout, positions from 0) ->
  bidirectional attention scaled by ``1/sqrt(head_dim)`` -> ``attn_out``; RMSNorm -> SwiGLU
  ``ff_out(silu(ff_proj(x)) * up_proj(x))``; final RMSNorm ``ln_f``; untied output ``ff_out``.
  Logits at position ``i`` predict token ``i``.
- Dream (``model_type: "Dream"``, Qwen2-derived code): Qwen2 names; grouped-query attention
  with q/k/v biases; rotary theta from the config; untied ``lm_head``. Logits at ``i``
  predict token ``i + 1``: the wrapper shifts them as Dream's ``diffusion_generate`` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from dllm_gym.models.architecture import (
    DiffusionTransformerConfig,
    DiffusionTransformerForMaskedLM,
)

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint folder that does not hold what its layout needs (names the tensor/file)."""


@dataclass(frozen=True)
class Source:
    """One published tensor: its name and the shape the published config implies."""

    name: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class CheckpointLayout:
    """How one published family's config and tensor names map onto the native model."""

    family: str
    build_config: Callable[[Mapping[str, Any]], DiffusionTransformerConfig]
    sources: Callable[[DiffusionTransformerConfig, Mapping[str, Any]], dict[str, list[Source]]]


SPECIAL_TOKEN_IDS = ("mask_token_id", "pad_token_id", "bos_token_id", "eos_token_id")


def _require(published: Mapping[str, Any], key: str, family: str) -> Any:
    if key not in published:
        raise CheckpointError(f"config.json of a {family} checkpoint has no {key!r}")
    return published[key]


def _reject(published: Mapping[str, Any], family: str, unsupported: Mapping[str, Any]) -> None:
    """Fail on config values the published code supports but the native model does not."""
    for key, supported in unsupported.items():
        value = published.get(key, supported)
        if value != supported and value is not None:
            raise CheckpointError(
                f"config.json: {key}={value!r} is not supported by the native {family} "
                f"backend (expected {supported!r}); load it with backend='remote'"
            )


# ----------------------------------------------------------------------------------- LLaDA
def _llada_config(published: Mapping[str, Any]) -> DiffusionTransformerConfig:
    _reject(
        published,
        "llada",
        {
            "block_type": "llama",
            "activation_type": "silu",
            "layer_norm_type": "rms",
            "rope": True,
            "alibi": False,
            "include_bias": False,
            "scale_logits": False,
            "input_emb_norm": False,
            "multi_query_attention": False,
            "clip_qkv": None,
            "attention_layer_norm": False,
            "layer_norm_with_affine": True,
            "bias_for_layer_norm": False,
        },
    )
    heads = _require(published, "n_heads", "llada")
    vocab = published.get("embedding_size") or _require(published, "vocab_size", "llada")
    return DiffusionTransformerConfig(
        vocab_size=vocab,
        hidden_size=_require(published, "d_model", "llada"),
        intermediate_size=_require(published, "mlp_hidden_size", "llada"),
        num_hidden_layers=_require(published, "n_layers", "llada"),
        num_attention_heads=heads,
        num_key_value_heads=published.get("n_kv_heads") or heads,
        attention_bias=bool(published.get("include_qkv_bias", False)),
        rope_full_precision=bool(published.get("rope_full_precision", True)),
        max_position_embeddings=_require(published, "max_sequence_length", "llada"),
        rope_theta=float(published.get("rope_theta", 10000.0)),
        rms_norm_eps=float(published.get("rms_norm_eps", 1e-5)),
        **_special_token_ids(published),
        tie_word_embeddings=bool(published.get("weight_tying", False)),
    )


def _special_token_ids(published: Mapping[str, Any]) -> dict[str, int | None]:
    """The special-token ids a published config declares (None where it is silent)."""
    return {name: published.get(name) for name in SPECIAL_TOKEN_IDS}


def _llada_sources(
    config: DiffusionTransformerConfig, published: Mapping[str, Any]
) -> dict[str, list[Source]]:
    d, ffn, vocab = config.hidden_size, config.intermediate_size, config.vocab_size
    head_dim = d // config.num_attention_heads
    kv = config.num_key_value_heads * head_dim
    top = "model.transformer"
    sources = {
        "embed_tokens.weight": [Source(f"{top}.wte.weight", (vocab, d))],
        "norm.weight": [Source(f"{top}.ln_f.weight", (d,))],
        "lm_head.weight": [
            Source(f"{top}.wte.weight" if config.tie_word_embeddings else f"{top}.ff_out.weight",
                   (vocab, d))
        ],
    }  # fmt: skip
    for i in range(config.num_hidden_layers):
        block, layer = f"{top}.blocks.{i}", f"layers.{i}"
        sources[f"{layer}.attn_norm.weight"] = [Source(f"{block}.attn_norm.weight", (d,))]
        sources[f"{layer}.mlp_norm.weight"] = [Source(f"{block}.ff_norm.weight", (d,))]
        sources[f"{layer}.attn.qkv_proj.weight"] = [
            Source(f"{block}.q_proj.weight", (d, d)),
            Source(f"{block}.k_proj.weight", (kv, d)),
            Source(f"{block}.v_proj.weight", (kv, d)),
        ]
        if config.attention_bias:
            sources[f"{layer}.attn.qkv_proj.bias"] = [
                Source(f"{block}.q_proj.bias", (d,)),
                Source(f"{block}.k_proj.bias", (kv,)),
                Source(f"{block}.v_proj.bias", (kv,)),
            ]
        sources[f"{layer}.attn.o_proj.weight"] = [Source(f"{block}.attn_out.weight", (d, d))]
        sources[f"{layer}.mlp.gate_up_proj.weight"] = [
            Source(f"{block}.ff_proj.weight", (ffn, d)),
            Source(f"{block}.up_proj.weight", (ffn, d)),
        ]
        sources[f"{layer}.mlp.down_proj.weight"] = [Source(f"{block}.ff_out.weight", (d, ffn))]
    return sources


# ----------------------------------------------------------------------------------- Dream
def _dream_config(published: Mapping[str, Any]) -> DiffusionTransformerConfig:
    _reject(published, "dream", {"hidden_act": "silu", "use_sliding_window": False})
    scaling = published.get("rope_scaling")
    if scaling and scaling.get("rope_type", scaling.get("type", "default")) != "default":
        raise CheckpointError(
            f"config.json: rope_scaling={scaling!r} is not supported by the native dream "
            "backend (expected none); load it with backend='remote'"
        )
    heads = _require(published, "num_attention_heads", "dream")
    return DiffusionTransformerConfig(
        vocab_size=_require(published, "vocab_size", "dream"),
        hidden_size=_require(published, "hidden_size", "dream"),
        intermediate_size=_require(published, "intermediate_size", "dream"),
        num_hidden_layers=_require(published, "num_hidden_layers", "dream"),
        num_attention_heads=heads,
        num_key_value_heads=published.get("num_key_value_heads") or heads,
        attention_bias=True,
        max_position_embeddings=_require(published, "max_position_embeddings", "dream"),
        rope_theta=float(published.get("rope_theta", 10000.0)),
        rms_norm_eps=float(published.get("rms_norm_eps", 1e-6)),
        **_special_token_ids(published),
        tie_word_embeddings=bool(published.get("tie_word_embeddings", False)),
    )


def _dream_sources(
    config: DiffusionTransformerConfig, published: Mapping[str, Any]
) -> dict[str, list[Source]]:
    d, ffn, vocab = config.hidden_size, config.intermediate_size, config.vocab_size
    head_dim = d // config.num_attention_heads
    kv = config.num_key_value_heads * head_dim
    embed = "model.embed_tokens.weight"
    sources = {
        "embed_tokens.weight": [Source(embed, (vocab, d))],
        "norm.weight": [Source("model.norm.weight", (d,))],
        "lm_head.weight": [
            Source(embed if config.tie_word_embeddings else "lm_head.weight", (vocab, d))
        ],
    }
    for i in range(config.num_hidden_layers):
        block, layer = f"model.layers.{i}", f"layers.{i}"
        attn = f"{block}.self_attn"
        sources[f"{layer}.attn_norm.weight"] = [Source(f"{block}.input_layernorm.weight", (d,))]
        sources[f"{layer}.mlp_norm.weight"] = [
            Source(f"{block}.post_attention_layernorm.weight", (d,))
        ]
        for kind in ("weight", "bias"):
            tail = (d,) if kind == "weight" else ()
            sources[f"{layer}.attn.qkv_proj.{kind}"] = [
                Source(f"{attn}.q_proj.{kind}", (d, *tail)),
                Source(f"{attn}.k_proj.{kind}", (kv, *tail)),
                Source(f"{attn}.v_proj.{kind}", (kv, *tail)),
            ]
        sources[f"{layer}.attn.o_proj.weight"] = [Source(f"{attn}.o_proj.weight", (d, d))]
        sources[f"{layer}.mlp.gate_up_proj.weight"] = [
            Source(f"{block}.mlp.gate_proj.weight", (ffn, d)),
            Source(f"{block}.mlp.up_proj.weight", (ffn, d)),
        ]
        sources[f"{layer}.mlp.down_proj.weight"] = [
            Source(f"{block}.mlp.down_proj.weight", (d, ffn))
        ]
    return sources


LAYOUTS: dict[str, CheckpointLayout] = {
    "llada": CheckpointLayout("llada", _llada_config, _llada_sources),
    "dream": CheckpointLayout("dream", _dream_config, _dream_sources),
}

# Tensors a published checkpoint may hold that the native model recomputes.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def weight_files(path: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """(tensors present, tensors announced): name -> safetensors file. A sharded checkpoint's
    index announces names; a tensor it names but its shard lacks is announced, not present."""
    index = path / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index}: no 'weight_map' in the index file")
        announced = {name: path / file for name, file in weight_map.items()}
    elif (path / SINGLE_FILE).is_file():
        announced = {}
    else:
        raise CheckpointError(
            f"model={str(path)!r}: no {INDEX_FILE} or {SINGLE_FILE} in the folder; the native "
            "backend reads safetensors checkpoints"
        )
    present: dict[str, Path] = {}
    for file in sorted(set(announced.values())) or [path / SINGLE_FILE]:
        if not file.is_file():
            raise CheckpointError(f"{index} names the shard {file.name}, which is missing")
        with safe_open(file, framework="pt") as handle:
            present |= dict.fromkeys(handle.keys(), file)
    return present, announced


def load_native_model(
    path: Path,
    family: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> DiffusionTransformerForMaskedLM:
    """Build the native model of a published ``family`` checkpoint in ``path``.

    Raises:
        CheckpointError: the config asks for something the native model does not do, or a
            tensor is missing, unexpected or of the wrong shape (the message names the tensor
            and its file).
    """
    layout = LAYOUTS[family]
    published = json.loads((path / "config.json").read_text())
    config = layout.build_config(published)
    config.architectures = [DiffusionTransformerForMaskedLM.__name__]
    plan = layout.sources(config, published)
    files, announced = weight_files(path)

    needed = {source.name for parts in plan.values() for source in parts}
    missing = sorted(needed - set(files))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        where = (
            f"{announced[missing[0]].name}, where {INDEX_FILE} places it, does not hold it"
            if missing[0] in announced
            else f"neither {INDEX_FILE} nor any shard names it"
            if announced
            else f"{SINGLE_FILE} does not hold it"
        )
        raise CheckpointError(
            f"model={str(path)!r}: the {family} checkpoint lacks the tensor {missing[0]!r}"
            f"{more}: {where}"
        )
    unexpected = sorted(n for n in set(files) - needed if not n.endswith(_IGNORED_SUFFIXES))
    if unexpected:
        raise CheckpointError(
            f"model={str(path)!r}: the tensor {unexpected[0]!r} in {files[unexpected[0]].name} "
            f"has no place in a {family} model of this config ({len(unexpected)} such tensor(s))"
        )

    with torch.device("meta"):
        model = DiffusionTransformerForMaskedLM(config)
    handles: dict[Path, Any] = {}
    state: dict[str, torch.Tensor] = {}
    try:
        for target, parts in plan.items():
            tensors = []
            for source in parts:
                file = files[source.name]
                if file not in handles:
                    handles[file] = safe_open(file, framework="pt", device="cpu")
                tensor = handles[file].get_tensor(source.name)
                if tuple(tensor.shape) != source.shape:
                    raise CheckpointError(
                        f"model={str(path)!r}: the tensor {source.name!r} in {file.name} has "
                        f"shape {tuple(tensor.shape)}; the config implies {source.shape}"
                    )
                tensors.append(tensor.to(device=device, dtype=dtype))
            state[target] = tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=0)
    finally:
        handles.clear()
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
