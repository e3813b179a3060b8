"""The project's masked diffusion transformer, as a ``transformers`` model.

A bidirectional transformer (no causal mask) with rotary position embeddings, RMSNorm and
SwiGLU feed-forward layers. One class serves three checkpoints: the embedded model, LLaDA
(multi-head attention, no biases) and Dream (Qwen2-style grouped-query attention with q/k/v
biases); :mod:`dllm_gym.models.native` maps the published checkpoints onto it. Attention is
PyTorch's SDPA with a key-padding mask and per-row position ids that start at each row's first
real token, so a row's logits do not depend on how much left padding its batch needed.
``import dllm_gym`` registers the classes with ``AutoConfig`` and ``AutoModelForMaskedLM``, so
``from_pretrained`` loads a saved folder.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForMaskedLM, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput


class DiffusionTransformerConfig(PretrainedConfig):
    """Configuration of :class:`DiffusionTransformerForMaskedLM`.

    Args:
        vocab_size: number of tokens.
        hidden_size: model width ``d``.
        intermediate_size: width of the SwiGLU feed-forward layer.
        num_hidden_layers: number of transformer blocks.
        num_attention_heads: attention heads per block (``hidden_size`` must divide evenly).
        num_key_value_heads: key/value heads (grouped-query attention); ``None`` means
            ``num_attention_heads`` (multi-head attention). Must divide the attention heads.
        attention_bias: whether the query, key and value projections have biases (Qwen2 and
            Dream do; LLaDA and the embedded model do not).
        rope_full_precision: rotate queries and keys in float32 whatever the model's dtype
            (LLaDA's code does; Qwen2 and Dream rotate in the model's dtype).
        max_position_embeddings: longest sequence (prompt plus generation) the model accepts.
        rope_theta: base of the rotary position embedding.
        rms_norm_eps: epsilon of RMSNorm.
        initializer_range: standard deviation of the normal weight initialisation.
        mask_token_id: id of the mask token that marks positions still to be generated.
        eot_token_id: id of the end-of-turn token, if the tokenizer has one.
    """

    model_type = "dllm_gym_diffusion_transformer"

    def __init__(
        self,
        vocab_size: int = 128,
        hidden_size: int = 256,
        intermediate_size: int = 688,
        num_hidden_layers: int = 4,
        num_attention_heads: int = 4,
        num_key_value_heads: int | None = None,
        attention_bias: bool = False,
        rope_full_precision: bool = False,
        max_position_embeddings: int = 512,
        rope_theta: float = 10000.0,
        rms_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        mask_token_id: int | None = None,
        eot_token_id: int | None = None,
        pad_token_id: int | None = None,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        tie_word_embeddings: bool = False,
        **kwargs,
    ) -> None:
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size={hidden_size} is not divisible by "
                f"num_attention_heads={num_attention_heads}"
            )
        if (hidden_size // num_attention_heads) % 2:
            raise ValueError(
                "hidden_size // num_attention_heads must be even for rotary embeddings"
            )
        if num_key_value_heads is None:
            num_key_value_heads = num_attention_heads
        if num_key_value_heads <= 0 or num_attention_heads % num_key_value_heads:
            raise ValueError(
                f"num_key_value_heads={num_key_value_heads} must be a positive divisor of "
                f"num_attention_heads={num_attention_heads}"
            )
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.attention_bias = attention_bias
        self.rope_full_precision = rope_full_precision
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.initializer_range = initializer_range
        self.mask_token_id = mask_token_id
        self.eot_token_id = eot_token_id
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotary_cos_sin(
    position_ids: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary embedding, shaped (batch, 1, seq, head_dim)."""
    exponents = torch.arange(0, head_dim, 2, device=position_ids.device, dtype=torch.float32)
    inv_freq = theta ** (-exponents / head_dim)
    angles = position_ids.float()[..., None] * inv_freq  # (B, T, head_dim / 2)
    angles = torch.cat([angles, angles], dim=-1)[:, None]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class BidirectionalAttention(nn.Module):
    """Multi-head or grouped-query self-attention without a causal mask (SDPA).

    One fused projection gives queries (``num_heads`` heads), then keys and values
    (``num_kv_heads`` heads each); each key/value head serves ``num_heads // num_kv_heads``
    query heads.
    """

    def __init__(self, config: DiffusionTransformerConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = getattr(config, "num_key_value_heads", None) or self.num_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.qkv_proj = nn.Linear(
            config.hidden_size,
            (self.num_heads + 2 * self.num_kv_heads) * self.head_dim,
            bias=getattr(config, "attention_bias", False),
        )
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.rope_full_precision = getattr(config, "rope_full_precision", False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        key_mask: torch.Tensor | None,
        cache: CacheSlot | None = None,
    ) -> torch.Tensor:
        """With ``cache`` (this layer's part of a :class:`KVCache`), the keys and values
        of ``x`` are written there and, in a window forward, the queries attend to every
        cached column (see :meth:`CacheSlot.update`)."""
        batch, length, width = x.shape
        heads, kv_heads = self.num_heads, self.num_kv_heads
        qkv = self.qkv_proj(x).view(batch, length, heads + 2 * kv_heads, self.head_dim)
        q, k, v = qkv.transpose(1, 2).split([heads, kv_heads, kv_heads], dim=1)
        if self.rope_full_precision and q.dtype != torch.float32:  # cos, sin are float32
            q = apply_rotary(q.float(), cos, sin).to(v.dtype)
            k = apply_rotary(k.float(), cos, sin).to(v.dtype)
        else:
            cos, sin = cos.to(q.dtype), sin.to(q.dtype)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v)
        if kv_heads != heads:  # grouped-query attention: each kv head serves a group
            group, columns = heads // kv_heads, k.shape[2]
            k = k[:, :, None].expand(-1, -1, group, -1, -1).reshape(batch, heads, columns, -1)
            v = v[:, :, None].expand(-1, -1, group, -1, -1).reshape(batch, heads, columns, -1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, is_causal=False)
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, width))


class SwiGLU(nn.Module):
    def __init__(self, config: DiffusionTransformerConfig) -> None:
        super().__init__()
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class TransformerBlock(nn.Module):
    def __init__(self, config: DiffusionTransformerConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.attn = BidirectionalAttention(config)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x, cos, sin, key_mask, cache=None):
        x = x + self.attn(self.attn_norm(x), cos, sin, key_mask, cache)
        return x + self.mlp(self.mlp_norm(x))


class KVCache:
    """Keys and values of every layer for ``batch`` sequences of ``length`` columns: one
    slab, allocated once, filled row by row by full forwards and updated in place by window
    forwards (see :meth:`DiffusionTransformerForMaskedLM.forward`). An inference cache: no
    gradient flows through what it holds.

    Keys are stored after the rotary embedding, per key/value head (before grouped-query
    expansion). ``attention`` (B, T) is each row's padding mask from its last fill;
    ``filled`` (B,) says which rows have been filled.
    """

    def __init__(
        self,
        config: DiffusionTransformerConfig,
        batch: int,
        length: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = config.hidden_size // config.num_attention_heads
        shape = (config.num_hidden_layers, 2, batch, kv_heads, length, head_dim)
        self.slab = torch.zeros(shape, device=device, dtype=dtype)
        self.attention = torch.ones((batch, length), dtype=torch.bool, device=device)
        self.filled = torch.zeros(batch, dtype=torch.bool, device=device)

    def add_left_padding(self, columns: int) -> None:
        """Put ``columns`` padding columns in front of every row, as the sequences got: the
        cached keys and values move with their tokens (their rotary positions are the
        tokens' own, unchanged) and the new columns are masked out. A new slab, of the new
        shape."""
        shape = list(self.slab.shape)
        shape[4] = columns
        self.slab = torch.cat([self.slab.new_zeros(shape), self.slab], dim=4)
        padding = self.attention.new_zeros((self.batch, columns))
        self.attention = torch.cat([padding, self.attention], dim=1)

    @property
    def batch(self) -> int:
        return self.slab.shape[2]

    @property
    def length(self) -> int:
        return self.slab.shape[4]


@dataclass
class CacheSlot:
    """One layer's view of a :class:`KVCache` for one forward: the cache rows ``rows`` ((R,)
    indices; None: all rows) and, in a window forward, the (R, W) columns of the tokens."""

    cache: KVCache
    layer: int
    rows: torch.Tensor | None
    positions: torch.Tensor | None

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the forward's (R, kv_heads, W, head_dim) keys and values into the cache and
        return the keys and values the queries attend to: in a fill, ``k`` and ``v``
        themselves; in a window forward, all T cached columns of the rows."""
        keys, values = self.cache.slab[self.layer, 0], self.cache.slab[self.layer, 1]
        k_new, v_new = k.detach(), v.detach()
        if self.positions is None:  # a fill: the whole sequence
            if self.rows is None:
                keys.copy_(k_new)
                values.copy_(v_new)
            else:
                keys.index_copy_(0, self.rows, k_new)
                values.index_copy_(0, self.rows, v_new)
            return k, v
        if self.rows is not None:  # copies of the rows, written back below
            keys, values = keys.index_select(0, self.rows), values.index_select(0, self.rows)
        index = self.positions[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
        keys.scatter_(2, index, k_new)
        values.scatter_(2, index, v_new)
        if self.rows is not None:
            self.cache.slab[self.layer, 0].index_copy_(0, self.rows, keys)
            self.cache.slab[self.layer, 1].index_copy_(0, self.rows, values)
        return keys, values


class DiffusionTransformerForMaskedLM(PreTrainedModel):
    """LLaDA-style mask predictor: token ids in, logits for every position out.

    ``forward(input_ids, attention_mask=None, position_ids=None)`` returns a
    :class:`~transformers.modeling_outputs.MaskedLMOutput` whose ``logits[:, i]`` predict the
    token at position ``i`` (not shifted). ``attention_mask`` (1 = real token) hides padding
    from every query; when ``position_ids`` is not given it is derived from the mask so each
    row's positions start at 0 at its first real token.
    """

    config_class = DiffusionTransformerConfig
    base_model_prefix = "model"
    _no_split_modules = ("TransformerBlock",)
    _supports_sdpa = True

    def __init__(self, config: DiffusionTransformerConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            TransformerBlock(config) for _ in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.normal_(mean=0.0, std=std)
        elif isinstance(module, RMSNorm):
            module.weight.fill_(1.0)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        cache_positions: torch.Tensor | None = None,
        cache_rows: torch.Tensor | None = None,
        **_: object,
    ) -> MaskedLMOutput:
        """With ``kv_cache`` and no ``cache_positions``, a full forward that also fills the
        cache rows ``cache_rows`` ((R,) indices, one per input row; None: all rows). With
        ``cache_positions`` (R, W) column indices into the cached sequences, a window forward
        of filled rows: ``input_ids`` (R, W) are the tokens at those columns,
        ``position_ids`` (R, W) their rotary positions (required), the padding mask is the
        rows' last fill's; the logits are the window's (R, W, vocab). A column may repeat
        within a row (same token, same values written): callers pad ragged windows that
        way."""
        rows = None
        if kv_cache is not None:
            rows = self._check_cache_rows(kv_cache, cache_rows, input_ids.shape[0])
        if cache_positions is not None:
            if kv_cache is None:
                raise ValueError("cache_positions: a window forward needs a filled kv_cache")
            return self._window_forward(input_ids, position_ids, kv_cache, cache_positions, rows)
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(
                f"input_ids: sequence length {input_ids.shape[1]} exceeds the model's "
                f"max_position_embeddings={self.config.max_position_embeddings}"
            )
        key_mask = None
        if attention_mask is not None:
            attention_mask = attention_mask.bool()
            if position_ids is None:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            if not bool(attention_mask.all()):
                key_mask = attention_mask[:, None, None, :]
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        if kv_cache is not None:
            if kv_cache.length != input_ids.shape[1]:
                raise ValueError(
                    f"kv_cache: holds {kv_cache.length} columns, the input has {input_ids.shape[1]}"
                )
            every = torch.arange(kv_cache.batch, device=kv_cache.filled.device)
            written = every if rows is None else rows
            mask = torch.ones_like(input_ids, dtype=torch.bool)
            kv_cache.attention[written] = mask if attention_mask is None else attention_mask
            kv_cache.filled[written] = True
        logits = self._layers(input_ids, position_ids, key_mask, kv_cache, rows, None)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100
            )
        return MaskedLMOutput(loss=loss, logits=logits)

    def _layers(self, input_ids, position_ids, key_mask, kv_cache, rows, positions):
        x = self.embed_tokens(input_ids)
        head_dim = self.config.hidden_size // self.config.num_attention_heads
        cos, sin = rotary_cos_sin(position_ids, head_dim, self.config.rope_theta, torch.float32)
        for index, layer in enumerate(self.layers):
            slot = None if kv_cache is None else CacheSlot(kv_cache, index, rows, positions)
            x = layer(x, cos, sin, key_mask, slot)
        return self.lm_head(self.norm(x))

    @staticmethod
    def _check_cache_rows(kv_cache: KVCache, rows: torch.Tensor | None, count: int):
        if rows is None:
            if count != kv_cache.batch:
                raise ValueError(
                    f"kv_cache: holds {kv_cache.batch} rows, the input has {count}; pass "
                    "cache_rows to use some of them"
                )
            return None
        rows = rows.to(kv_cache.filled.device).long()
        if rows.shape != (count,) or not bool(((rows >= 0) & (rows < kv_cache.batch)).all()):
            raise ValueError(
                f"cache_rows: expected {count} row indices in 0..{kv_cache.batch - 1}, got "
                f"{rows.tolist()}"
            )
        return rows

    def _window_forward(self, input_ids, position_ids, kv_cache, cache_positions, rows):
        filled = kv_cache.filled if rows is None else kv_cache.filled[rows]
        if not bool(filled.all()):
            raise ValueError("cache_positions: needs cache rows filled by a full forward first")
        if position_ids is None or position_ids.shape != input_ids.shape:
            raise ValueError(
                "position_ids: a window forward needs the rotary positions of its tokens, "
                f"shaped like input_ids {tuple(input_ids.shape)}"
            )
        if cache_positions.shape != input_ids.shape:
            raise ValueError(
                f"cache_positions: expected shape {tuple(input_ids.shape)} (one column per "
                f"token), got {tuple(cache_positions.shape)}"
            )
        attention = kv_cache.attention if rows is None else kv_cache.attention[rows]
        key_mask = None if bool(attention.all()) else attention[:, None, None, :]
        logits = self._layers(
            input_ids, position_ids, key_mask, kv_cache, rows, cache_positions.long()
        )
        return MaskedLMOutput(logits=logits)


def register() -> None:
    """Register the architecture with the ``transformers`` Auto classes (idempotent)."""
    model_type = DiffusionTransformerConfig.model_type
    with contextlib.suppress(ValueError):  # already registered
        AutoConfig.register(model_type, DiffusionTransformerConfig)
    with contextlib.suppress(ValueError):
        AutoModelForMaskedLM.register(DiffusionTransformerConfig, DiffusionTransformerForMaskedLM)
