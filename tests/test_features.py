import mpmath
import pytest
import torch

from dllm_gym.models.features import gumbel_argmax, logit_features


def exact_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in 40-digit arithmetic: a float64 softmax is itself off by up to 1e-16 in
    absolute terms, which is a large relative error on a near-certain position."""
    mpmath.mp.dps = 40
    rows = logits.reshape(-1, logits.shape[-1]).double().tolist()
    values = []
    for row in rows:
        exps = [mpmath.exp(mpmath.mpf(x)) for x in row]
        total = mpmath.fsum(exps)
        values.append(float(mpmath.fsum(e / total * mpmath.log(total / e) for e in exps)))
    return torch.tensor(values, dtype=torch.float64).reshape(logits.shape[:-1])


def reference(logits: torch.Tensor, previous_log_probs: torch.Tensor):
    """Float64 softmax reference of every feature (the entropy in higher precision)."""
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    probs = log_probs.exp()
    top = probs.topk(2, dim=-1).values
    return {
        "confidence": top[..., 0],
        "margin": top[..., 0] - top[..., 1],
        "entropy": exact_entropy(logits),
        "kl": (probs * (log_probs - previous_log_probs.double())).sum(-1),
        "tokens": probs.argmax(-1),
    }


def relative_error(value: torch.Tensor, expected: torch.Tensor) -> float:
    return ((value.double() - expected) / expected.abs()).abs().max().item()


@pytest.mark.parametrize("scale", [0.5, 3.0, 12.0])
def test_features_match_a_float64_softmax(scale):
    generator = torch.Generator().manual_seed(int(scale * 10))
    logits = torch.randn(3, 8, 300, generator=generator) * scale
    # A few near-certain positions, where naive float32 formulas lose the entropy.
    logits[0, :4, 7] += 40.0
    previous = torch.log_softmax(torch.randn(3, 8, 300, generator=generator) * scale, dim=-1)
    out = logit_features(logits, ("margin", "entropy", "kl"), previous_log_probs=previous)
    expected = reference(logits, previous)
    assert torch.equal(out.tokens, expected["tokens"])
    for name in ("confidence", "margin", "entropy", "kl"):
        assert relative_error(getattr(out, name), expected[name]) < 1e-5, name
    assert out.log_probs is not None and out.log_probs.shape == logits.shape


def test_optional_features_are_computed_only_on_request():
    out = logit_features(torch.randn(2, 5, 11))
    assert out.margin is None and out.entropy is None and out.kl is None and out.log_probs is None
    first_step = logit_features(torch.randn(2, 5, 11), ("kl",))
    assert torch.equal(first_step.kl, torch.zeros(2, 5))  # no previous step yet
    with pytest.raises(ValueError, match="obs_features"):
        logit_features(torch.randn(2, 5, 11), ("confidance",))


def test_chunked_computation_equals_one_pass(monkeypatch):
    import dllm_gym.models.features as features

    logits = torch.randn(5, 6, 40)
    whole = logit_features(logits, ("margin", "entropy"))
    monkeypatch.setattr(features, "_CHUNK_ELEMENTS", 6 * 40 * 2)  # two rows per chunk
    chunked = logit_features(logits, ("margin", "entropy"))
    for name in ("tokens", "confidence", "margin", "entropy"):
        assert torch.equal(getattr(whole, name), getattr(chunked, name))


def test_bfloat16_logits_are_upcast():
    logits = (torch.randn(2, 3, 50) * 4).to(torch.bfloat16)
    out = logit_features(logits, ("entropy",))
    expected = reference(logits.float(), torch.zeros(2, 3, 50))
    assert out.confidence.dtype == torch.float32
    assert relative_error(out.confidence, expected["confidence"]) < 1e-5
    assert relative_error(out.entropy, expected["entropy"]) < 1e-5


def test_gumbel_sampling_follows_the_tempered_softmax():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0]).expand(40_000, 4)
    temperature = 0.7
    draws = gumbel_argmax(logits, temperature, torch.Generator().manual_seed(0))
    frequencies = torch.bincount(draws, minlength=4).double() / draws.numel()
    expected = torch.softmax(logits[0].double() / temperature, dim=0)
    # Binomial standard error is below 0.0025 here; 4 of them is a loose, reliable bound.
    assert (frequencies - expected).abs().max().item() < 0.01
    same = gumbel_argmax(logits, temperature, torch.Generator().manual_seed(0))
    assert torch.equal(draws, same)


def test_sampled_confidence_is_the_probability_of_the_drawn_token():
    logits = torch.randn(3, 8, 20)
    out = logit_features(logits, temperature=1.0, generator=torch.Generator().manual_seed(1))
    probs = torch.softmax(logits.double(), -1)
    chosen = probs.gather(-1, out.tokens.unsqueeze(-1)).squeeze(-1)
    assert relative_error(out.confidence, chosen) < 1e-5
    assert not torch.equal(out.tokens, logits.argmax(-1))  # it did sample


def test_eos_is_the_probability_of_the_stop_tokens():
    generator = torch.Generator().manual_seed(7)
    logits = torch.randn(2, 6, 40, generator=generator) * 3
    logits[0, 2, 5] += 30.0  # a position sure of end of text
    out = logit_features(logits, ("eos",), stop_token_ids=(5, 9))
    probs = torch.softmax(logits.double(), dim=-1)
    expected = probs[..., 5] + probs[..., 9]
    assert relative_error(out.eos, expected) < 1e-5
    assert out.eos[0, 2] > 0.999
    # No stop tokens given: the text never ends, eos is 0.
    assert torch.equal(logit_features(logits, ("eos",)).eos, torch.zeros(2, 6))
