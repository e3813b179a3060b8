"""The learned unmasking policy: network, action distribution, Policy interface, checkpoints."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import gymnasium as gym
import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

import dllm_gym  # noqa: F401  (registers the ids)
from agents.heuristics import Policy
from agents.policy import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    LearnedPolicy,
    PolicyConfig,
    UnmaskingPolicyNet,
    deterministic_action,
    evaluation_settings,
    load_policy,
    log_prob,
    sample,
    save_policy,
    shipped_checkpoint,
)

SMALL = PolicyConfig(d_model=16, num_heads=2, ff_dim=32, progress_frequencies=8)


def _inputs(batch: int = 3, length: int = 10, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    confidence = torch.rand(batch, length, generator=generator)
    mask = torch.rand(batch, length, generator=generator) < 0.6
    progress = torch.rand(batch, 1, generator=generator)
    return confidence, mask, progress


def _randomise(net: UnmaskingPolicyNet, seed: int = 0) -> UnmaskingPolicyNet:
    """Give the zero-initialised adaLN layers random weights."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for layer in (net.block.adaLN_modulation[1], net.final_modulation[1]):
            layer.weight.normal_(0, 0.3)
            layer.bias.normal_(0, 0.3)
    return net


# ------------------------------------------------------------------------------ network
def test_shapes_and_initialisation():
    torch.manual_seed(0)
    net = UnmaskingPolicyNet(SMALL)
    confidence, mask, progress = _inputs()
    logits = net(confidence, mask, progress)
    assert logits.shape == (3, 10) and logits.dtype == torch.float32
    assert net(confidence, mask, progress.reshape(3)).equal(logits)  # (B,) progress too

    x = net.embed(confidence, mask)
    c = net.condition(progress)
    assert torch.equal(net.block(x, c), x)  # adaLN-Zero: gates 0, the block is the identity
    expected = net.head(F.layer_norm(x, (SMALL.d_model,), eps=1e-6)).squeeze(-1)
    assert torch.equal(logits, expected)  # final layer unmodulated at init

    assert torch.equal(net.head.bias, torch.tensor([-2.0]))
    with torch.no_grad():
        net.head.weight.zero_()
    probability = torch.sigmoid(net(confidence, mask, progress))
    assert torch.equal(probability, torch.full_like(probability, 1 / (1 + math.exp(2.0))))


def test_default_config_and_length_limit():
    net = UnmaskingPolicyNet()
    assert (net.config.d_model, net.config.num_heads, net.config.ff_dim) == (128, 2, 512)
    assert net.block.mlp[0].out_features == 512 and net.head.bias.item() == -2.0
    small = UnmaskingPolicyNet(PolicyConfig(d_model=8, num_heads=2, ff_dim=8, max_length=4))
    with pytest.raises(ValueError, match="max_length"):
        small(*_inputs(length=5))
    with pytest.raises(ValueError, match="even"):
        PolicyConfig(d_model=6, num_heads=2)


def test_confidence_input_encodings():
    confidence, mask, _ = _inputs()
    confidence[0, :4] = torch.tensor([0.0, 1.0, 0.9, 0.999])
    torch.manual_seed(0)
    log_odds = UnmaskingPolicyNet(SMALL)
    torch.manual_seed(0)
    raw = UnmaskingPolicyNet(dataclasses.replace(SMALL, confidence_input="probability"))
    assert SMALL.confidence_input == "log_odds"
    value = torch.log(confidence.clamp(1e-6, 1 - 1e-6) / (1 - confidence.clamp(1e-6, 1 - 1e-6)))
    expected = log_odds.confidence_embed((value / 4)[..., None]) + log_odds.mask_embed(mask.long())
    torch.testing.assert_close(log_odds.embed(confidence, mask), expected)
    expected = raw.confidence_embed(confidence[..., None]) + raw.mask_embed(mask.long())
    torch.testing.assert_close(raw.embed(confidence, mask), expected)
    assert log_odds.embed(confidence, mask).isfinite().all()  # 0 and 1 are clamped
    with pytest.raises(ValueError, match="confidence_input must be one of"):
        PolicyConfig(confidence_input="logit")


def test_bidirectional_and_conditioned():
    net = _randomise(UnmaskingPolicyNet(SMALL))
    confidence, mask, progress = _inputs(batch=1)
    base = net(confidence, mask, progress)
    changed = confidence.clone()
    changed[0, 5] += 0.5
    delta = (net(changed, mask, progress) - base).abs()[0]
    assert delta[0] > 1e-6 and delta[9] > 1e-6  # positions before and after 5 both see it
    assert (net(confidence, mask, progress + 0.1) - base).abs().max() > 1e-6


# ------------------------------------------------------------------------------ actions
def test_log_prob_matches_bernoulli_and_ignores_inactive():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 12, generator=generator) * 3
    active = torch.rand(4, 12, generator=generator) < 0.5
    action = torch.rand(4, 12, generator=generator) < 0.5
    for temperature in (1.0, 0.5, 2.0):
        dist = torch.distributions.Bernoulli(logits=logits / temperature)
        expected = (dist.log_prob(action.float()) * active).sum(-1)
        got = log_prob(logits, active, action, temperature)
        torch.testing.assert_close(got, expected)
    flipped = action ^ ~active  # change only the inactive positions
    assert torch.equal(log_prob(logits, active, flipped), log_prob(logits, active, action))
    assert torch.equal(log_prob(logits, torch.zeros_like(active), action), torch.zeros(4))


def test_sample_only_active_and_reproducible():
    logits = torch.full((64, 16), 5.0)  # probability ~0.993
    active = torch.zeros(64, 16, dtype=torch.bool)
    active[:, 4:12] = True
    action, lp = sample(logits, active, generator=torch.Generator().manual_seed(0))
    assert action.dtype == torch.int8 and not action[~active].any()
    assert action[active].float().mean() > 0.95
    torch.testing.assert_close(lp, log_prob(logits, active, action))
    again, _ = sample(logits, active, generator=torch.Generator().manual_seed(0))
    assert torch.equal(action, again)
    cold, _ = sample(logits, active, temperature=100.0, generator=torch.Generator().manual_seed(0))
    assert 0.3 < cold[active].float().mean() < 0.7  # sigmoid(0.05): about half


def test_gradient_reaches_every_parameter():
    net = _randomise(UnmaskingPolicyNet(SMALL))
    confidence, mask, progress = _inputs()
    logits = net(confidence, mask, progress)
    action, _ = sample(logits.detach(), mask, generator=torch.Generator().manual_seed(0))
    log_prob(logits, mask, action, temperature=0.7).sum().backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_deterministic_action():
    logits = torch.tensor(
        [
            [0.5, -1.0, 2.0, 3.0],  # positive: 0 and 2 (3 is inactive)
            [-3.0, -0.5, -0.5, -0.1],  # none positive: the best active, 1 (ties: lowest)
            [1.0, 2.0, 3.0, 4.0],  # no active position: nothing
        ]
    )
    active = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    expected = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.int8)
    assert torch.equal(deterministic_action(logits, active), expected)


# ------------------------------------------------------------------------------ policy
def test_learned_policy_on_env():
    torch.manual_seed(0)
    net = UnmaskingPolicyNet(SMALL)
    with torch.no_grad():
        net.head.bias.fill_(4.0)  # every logit > 0: whole blocks per step, a short episode
    policy = LearnedPolicy(net)
    assert isinstance(policy, Policy) and policy.required_features == ()
    env = gym.make("DLLMUnmask-Arith-v0")
    policy.configure(gen_length=48, block_length=16)
    obs, _ = env.reset(seed=0)
    done, steps = False, 0
    while not done:
        action = policy(obs)
        assert action.shape == (48,) and action.dtype == np.int8
        assert np.array_equal(action, obs["active"])
        obs, _, terminated, truncated, info = env.step(action)
        done, steps = terminated or truncated, steps + 1
    assert terminated and info["nfe"] == steps == 3  # one step per block of 16
    env.close()


def test_learned_policy_on_vector_env():
    torch.manual_seed(0)
    net = _randomise(UnmaskingPolicyNet(SMALL))
    envs = gym.make_vec("DLLMUnmask-Arith-v0", num_envs=4)
    obs, _ = envs.reset(seed=0)
    obs, *_ = envs.step(obs["confidence"] >= 0.9)  # rows at different states
    for deterministic in (True, False):
        policy = LearnedPolicy(net, deterministic=deterministic, temperature=0.8, seed=3)
        policy.configure(gen_length=48, block_length=16)
        action = policy(obs)
        assert action.shape == (4, 48) and action.dtype == np.int8
        assert not (action & (1 - obs["active"])).any()
        if deterministic:
            rows = [policy({k: v[i] for k, v in obs.items()}) for i in range(4)]
            assert np.array_equal(action, np.stack(rows))
        else:
            policy.configure(gen_length=48, block_length=16)  # re-seeds: the same draw
            assert np.array_equal(policy(obs), action)
    envs.close()


def test_learned_policy_rejects_bad_settings():
    net = UnmaskingPolicyNet(SMALL)
    with pytest.raises(ValueError, match="temperature"):
        LearnedPolicy(net, temperature=0.0)
    policy = LearnedPolicy(net)
    policy.configure(gen_length=8, block_length=4)
    obs = {"confidence": np.zeros(6), "mask": np.ones(6), "active": np.ones(6), "progress": [0]}
    with pytest.raises(ValueError, match="gen_length=8"):
        policy(obs)


# ------------------------------------------------------------------------------ checkpoints
def test_checkpoint_round_trip(tmp_path):
    net = _randomise(UnmaskingPolicyNet(SMALL))
    folder = save_policy(net, tmp_path / "ckpt", extra={"step": 7})
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["observation_layout"]["inputs"] == ["confidence", "mask", "progress"]
    assert config["extra"] == {"step": 7} and config["d_model"] == 16
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]  # no tmp
    loaded = load_policy(folder)
    inputs = _inputs()
    assert torch.equal(loaded(*inputs), net(*inputs))
    policy = LearnedPolicy.load(folder, temperature=0.5)
    assert policy.checkpoint == str(folder) and policy.temperature == 0.5


def test_checkpoint_evaluation_settings_are_load_defaults(tmp_path):
    """A checkpoint's ``extra.evaluation`` sets the fields load() is not given: the policy
    then samples at its temperature; an explicit argument still wins."""
    net = _randomise(UnmaskingPolicyNet(SMALL))
    plain = save_policy(net, tmp_path / "plain")
    assert evaluation_settings(plain) == {}
    assert LearnedPolicy.load(plain).deterministic is True
    mode = {"deterministic": False, "temperature": 2.0, "seed": 3}
    folder = save_policy(net, tmp_path / "sampled", extra={"step": 1, "evaluation": mode})
    assert evaluation_settings(folder) == mode
    policy = LearnedPolicy.load(folder)
    assert (policy.deterministic, policy.temperature, policy.seed) == (False, 2.0, 3)
    obs = {
        "confidence": np.full((64, 16), 0.5, np.float32),
        "mask": np.ones((64, 16), np.int8),
        "active": np.ones((64, 16), np.int8),
        "progress": np.zeros((64, 1), np.float32),
    }
    twin = LearnedPolicy(net, deterministic=False, temperature=2.0, seed=3)
    assert np.array_equal(policy(obs), twin(obs))  # the same draws as the settings given
    assert LearnedPolicy.load(folder, deterministic=True).deterministic is True


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        ([False], r"extra.evaluation must be a JSON object, got list"),
        ({"temp": 2.0}, r"extra.evaluation: unknown field\(s\) \['temp'\]"),
        ({"deterministic": "no"}, "extra.evaluation: deterministic must be a bool"),
        ({"temperature": 0}, "extra.evaluation: temperature must be"),
        ({"seed": -1}, "extra.evaluation: seed must be an integer"),
    ],
)
def test_checkpoint_evaluation_settings_errors(tmp_path, evaluation, message):
    folder = save_policy(UnmaskingPolicyNet(SMALL), tmp_path / "ckpt")
    _edit_config(folder, extra={"evaluation": evaluation})
    with pytest.raises(ValueError, match=f"config.json.*{message}"):
        LearnedPolicy.load(folder)


def _edit_config(folder, **changes):
    config = json.loads((folder / CONFIG_FILE).read_text())
    for key, value in changes.items():
        if value is None:
            del config[key]
        else:
            config[key] = value
    (folder / CONFIG_FILE).write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: None, None),
        (lambda f: (f / WEIGHTS_FILE).unlink(), r"missing \['model.safetensors'\]"),
        (lambda f: (f / CONFIG_FILE).unlink(), r"missing \['config.json'\]"),
        (lambda f: (f / CONFIG_FILE).write_text("{not json"), "config.json.*not valid JSON"),
        (lambda f: _edit_config(f, ff_dim=None), r"config.json.*missing field\(s\) \['ff_dim'\]"),
        (
            lambda f: _edit_config(f, observation_layout={"inputs": ["confidence"], "version": 2}),
            "config.json.*observation layout.*differs.*'mask', 'progress'",
        ),
        (lambda f: _edit_config(f, num_heads=3), "config.json.*num_heads"),
        (
            lambda f: (f / WEIGHTS_FILE).write_bytes((f / WEIGHTS_FILE).read_bytes()[:-100]),
            "model.safetensors.*not a readable safetensors file",
        ),
        (lambda f: _edit_config(f, ff_dim=64), "model.safetensors.*shapes.*block.mlp.0.weight"),
    ],
)
def test_checkpoint_errors(tmp_path, damage, message):
    folder = save_policy(UnmaskingPolicyNet(SMALL), tmp_path / "ckpt")
    damage(folder)
    if message is None:
        load_policy(folder)
        return
    with pytest.raises(ValueError, match=message):
        load_policy(folder)


def test_checkpoint_missing_folder_and_wrong_names(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_policy(tmp_path / "nowhere")
    folder = save_policy(UnmaskingPolicyNet(SMALL), tmp_path / "ckpt")
    state = UnmaskingPolicyNet(SMALL).state_dict()
    state["renamed.bias"] = state.pop("head.bias")
    safetensors.torch.save_file(state, folder / WEIGHTS_FILE)
    message = r"names do not match.*missing \['head.bias'\].*unexpected \['renamed.bias'\]"
    with pytest.raises(ValueError, match=message):
        load_policy(folder)


def test_checkpoint_files_are_readable_like_plain_files(tmp_path):
    folder = save_policy(UnmaskingPolicyNet(SMALL), tmp_path / "policy")
    mask = os.umask(0)
    os.umask(mask)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        assert (folder / name).stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0o600


@pytest.mark.parametrize(
    ("env_id", "min_accuracy", "max_nfe"),
    [
        ("DLLMUnmask-Arith-v0", 0.8, 10.0),
        ("DLLMUnmask-Arith-FullDiffusion-v0", 0.8, 9.0),
        ("DLLMUnmask-Arith-v1", 0.95, 15.0),
        ("DLLMUnmask-Arith-FullDiffusion-v1", 0.66, 32.0),
    ],
)
@pytest.mark.expensive
def test_shipped_policies_decode_fast_and_well(env_id, min_accuracy, max_nfe):
    """The shipped checkpoints keep their card's level on the first 50 test problems, each in
    the mode its checkpoint names (FullDiffusion-v1: sampled at temperature 2, seed 0; the
    others deterministic; an untrained policy, whose logits start below 0, reveals one
    position a step: L NFE). Measured on the card's problems: v0 92.0% at 7.3 NFE (400) and
    88.0% at 5.6 (300); v1 95.1% at 13.7 and 78.9% at 26.5 (1,000; on the first 50: 100% at
    13.7 and 76% at 25.2)."""
    from agents.cli import build_policy
    from agents.evaluate import evaluate

    policy = build_policy("learned", {"checkpoint": "shipped"}, env_id)
    assert policy.checkpoint == str(shipped_checkpoint(env_id))
    assert policy.deterministic is (env_id != "DLLMUnmask-Arith-FullDiffusion-v1")
    summary = evaluate(policy, env_id, episodes=50, num_envs=50, progress=False)
    assert summary["accuracy"] >= min_accuracy and 1 <= summary["mean_nfe"] <= max_nfe
    with pytest.raises(ValueError, match=r"no shipped learned policy for 'Nope-v0'.*Arith-v0"):
        shipped_checkpoint("Nope-v0")
