"""Per-position features of a dLLM's predictive distributions, computed from logits.

Everything is computed on the logits' device in float32 (float64 noise for sampling), from
``z = logits - max`` and ``rest = sum of exp(z) over every token but the argmax``, without a
normalised softmax copy. The formulas avoid cancellation, so they match a float64 softmax
reference to a relative error well below 1e-5 even for near-certain predictions:

- ``confidence = 1 / (1 + rest)`` (the argmax) or ``exp(z_token) / (1 + rest)`` (a draw);
- ``margin = p1 - p2 = -expm1(z2) / (1 + rest)``;
- ``entropy = log1p(rest) + sum_j p_j * (-z_j)``, a sum of non-negative terms;
- ``kl = sum_j p_j (log p_j - log q_j)`` against the previous step's log-probabilities ``q``;
- ``eos = sum_s exp(z_s) / (1 + rest)`` over the stop tokens ``s`` (end of text, end of turn):
  the probability that the text ends at this position.

Logits are processed in chunks of rows, so vocabulary-sized float32 temporaries stay bounded
(1 GiB per temporary).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch

OPTIONAL_FEATURES: tuple[str, ...] = ("margin", "entropy", "token", "kl", "eos")
# Temporaries of at most this many float32 elements per chunk (1 GiB).
_CHUNK_ELEMENTS = 1 << 28


@dataclass
class LogitFeatures:
    """Features at each position: every tensor is (batch, length) unless noted."""

    tokens: torch.Tensor  # int64: the token a reveal writes (argmax, or a Gumbel-max draw)
    confidence: torch.Tensor  # float32: probability of ``tokens`` under softmax(logits)
    margin: torch.Tensor | None = None  # float32: top-1 minus top-2 probability
    entropy: torch.Tensor | None = None  # float32: entropy in nats
    kl: torch.Tensor | None = None  # float32: KL(this step || previous step), nats
    eos: torch.Tensor | None = None  # float32: probability of a stop token (end of text/turn)
    log_probs: torch.Tensor | None = None  # (batch, length, vocab) float32, kept for ``kl``


def check_feature_names(names: Collection[str]) -> None:
    unknown = sorted(set(names) - set(OPTIONAL_FEATURES))
    if unknown:
        raise ValueError(
            f"obs_features: unknown feature(s) {unknown}; expected a subset of "
            f"{list(OPTIONAL_FEATURES)}"
        )


def gumbel_argmax(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw from softmax(logits / temperature) with the Gumbel-max trick in float64.

    Same draw as LLaDA's ``add_gumbel_noise`` (``argmax(exp(l) / (-log u) ** T)``), written
    in log space, ``argmax(l - T * log(-log u))``, so large logits cannot overflow.
    """
    uniform = torch.rand(
        logits.shape, dtype=torch.float64, device=logits.device, generator=generator
    )
    noise = torch.log(-torch.log(uniform))
    return torch.argmax(logits.to(torch.float64) - temperature * noise, dim=-1)


def logit_features(
    logits: torch.Tensor,
    features: Collection[str] = (),
    *,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    previous_log_probs: torch.Tensor | None = None,
    stop_token_ids: Sequence[int] = (),
) -> LogitFeatures:
    """Tokens to reveal, their confidence and the requested ``features`` from ``logits``.

    Args:
        logits: (batch, length, vocab) logits aligned with the positions they predict.
        features: optional features among ``margin``, ``entropy``, ``token``, ``kl``
            (``token`` is always returned as ``tokens``).
        temperature: 0 reveals the argmax; above 0 draws with Gumbel noise in float64 and
            ``confidence`` is the probability of the drawn token (as LLaDA's low-confidence
            remasking uses it).
        generator: random generator for the Gumbel noise.
        previous_log_probs: log-probabilities of the previous step, for ``kl``; when None the
            KL is 0 (first step).
        stop_token_ids: the ids whose probabilities ``eos`` sums (none: ``eos`` is 0).
    """
    check_feature_names(features)
    want_kl = "kl" in features
    batch, length, vocab = logits.shape
    rows = max(1, _CHUNK_ELEMENTS // max(1, length * vocab))
    parts: list[LogitFeatures] = []
    for start in range(0, batch, rows):
        chunk = logits[start : start + rows]
        previous = None if previous_log_probs is None else previous_log_probs[start : start + rows]
        parts.append(
            _chunk_features(
                chunk, features, temperature, generator, previous, want_kl, stop_token_ids
            )
        )
    if len(parts) == 1:
        return parts[0]
    merged = {}
    for field in LogitFeatures.__dataclass_fields__:
        values = [getattr(part, field) for part in parts]
        merged[field] = None if values[0] is None else torch.cat(values)
    return LogitFeatures(**merged)


def _chunk_features(
    logits: torch.Tensor,
    features: Collection[str],
    temperature: float,
    generator: torch.Generator | None,
    previous_log_probs: torch.Tensor | None,
    want_kl: bool,
    stop_token_ids: Sequence[int] = (),
) -> LogitFeatures:
    logits = logits.float()
    top1, argmax = logits.max(dim=-1)
    shifted = logits - top1.unsqueeze(-1)  # z <= 0, exactly 0 at the argmax
    others = shifted.exp().scatter_(-1, argmax.unsqueeze(-1), 0.0)  # exp(z), argmax zeroed
    rest = others.sum(-1)  # sum of exp(z) over every token but the argmax
    log_norm = torch.log1p(rest)  # logsumexp(z), exact even when rest << 1
    if temperature > 0:
        tokens = gumbel_argmax(logits, temperature, generator)
        chosen = shifted.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        confidence = torch.exp(chosen - log_norm)
    else:
        tokens, confidence = argmax, torch.exp(-log_norm)
    out = LogitFeatures(tokens=tokens, confidence=confidence)
    if "margin" in features:
        second = shifted.topk(2, dim=-1).values[..., 1]
        out.margin = torch.exp(-log_norm) * -torch.expm1(second)
    if "entropy" in features:
        # H = log_norm + sum_j p_j * (-z_j): non-negative terms, no cancellation.
        out.entropy = log_norm + (others * -shifted).sum(-1) * torch.exp(-log_norm)
    if want_kl:
        log_probs = shifted - log_norm.unsqueeze(-1)
        if previous_log_probs is None:
            out.kl = torch.zeros_like(confidence)
        else:
            out.kl = (log_probs.exp() * (log_probs - previous_log_probs.float())).sum(-1)
        out.log_probs = log_probs
    if "eos" in features:
        stops = torch.as_tensor(list(stop_token_ids), dtype=torch.long, device=logits.device)
        out.eos = (shifted.index_select(-1, stops) - log_norm.unsqueeze(-1)).exp().sum(-1)
    return out
