"""A stand-in for LLaDA's published remote code, copied into test checkpoint folders as
``modeling_llada.py`` and loaded with ``trust_remote_code=True``.

It behaves as the published code does where that matters to batching: the module tree and
tensor names are LLaDA's (``model.transformer.blocks.N.q_proj`` ...), rotary positions count
from column 0, and ``attention_mask`` is accepted but ignored (the published attention calls
SDPA with ``attn_mask=None``). Self-contained: it imports only torch and transformers.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel


class LLaDAConfig(PretrainedConfig):
    model_type = "llada"


class RMSLayerNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        return self.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps))


class LLaDALlamaBlock(nn.Module):
    def __init__(self, config):
        super().__init__()
        d, ffn = config.d_model, config.mlp_hidden_size
        self.n_heads, self.theta = config.n_heads, config.rope_theta
        self.attn_norm = RMSLayerNorm(d, config.rms_norm_eps)
        self.ff_norm = RMSLayerNorm(d, config.rms_norm_eps)
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.ff_proj = nn.Linear(d, ffn, bias=False)
        self.up_proj = nn.Linear(d, ffn, bias=False)
        self.ff_out = nn.Linear(ffn, d, bias=False)

    def rotary(self, x):
        head_dim, length = x.shape[-1], x.shape[-2]
        inv_freq = 1.0 / self.theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
        angles = torch.outer(torch.arange(length).float(), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)
        x1, x2 = x[..., : head_dim // 2], x[..., head_dim // 2 :]
        return x * angles.cos() + torch.cat([-x2, x1], dim=-1) * angles.sin()

    def forward(self, x):
        batch, length, d = x.shape
        h = self.attn_norm(x)

        def heads(y):
            return y.view(batch, length, self.n_heads, -1).transpose(1, 2)

        q, k, v = heads(self.q_proj(h)), heads(self.k_proj(h)), heads(self.v_proj(h))
        q, k = self.rotary(q), self.rotary(k)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False)
        x = x + self.attn_out(out.transpose(1, 2).reshape(batch, length, d))
        h = self.ff_norm(x)
        return x + self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h))


class LLaDAModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(config.embedding_size, config.d_model),
                "blocks": nn.ModuleList(LLaDALlamaBlock(config) for _ in range(config.n_layers)),
                "ln_f": RMSLayerNorm(config.d_model, config.rms_norm_eps),
                "ff_out": nn.Linear(config.d_model, config.embedding_size, bias=False),
            }
        )

    def forward(self, input_ids, attention_mask=None):  # attention_mask is ignored
        x = self.transformer["wte"](input_ids)
        for block in self.transformer["blocks"]:
            x = block(x)
        return self.transformer["ff_out"](self.transformer["ln_f"](x))


class LLaDAModelLM(PreTrainedModel):
    config_class = LLaDAConfig
    base_model_prefix = "model"

    def __init__(self, config):
        super().__init__(config)
        self.model = LLaDAModel(config)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(0.0, 1 / math.sqrt(self.config.d_model))

    def forward(self, input_ids, attention_mask=None, **kwargs):
        logits = self.model(input_ids, attention_mask=attention_mask)
        return type("LLaDAOutput", (), {"logits": logits})()
