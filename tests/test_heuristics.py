"""Baseline unmasking policies: exact actions on hand-made observations, LLaDA's schedule,
worked examples, validation, and token-for-token equivalence with the reference decoder on
the single and the vector environment."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from reference_decoders import fast_dllm_threshold, llada_low_confidence

import dllm_gym  # noqa: F401  (registers the ids)
from agents.heuristics import (
    DEFAULT_GRIDS,
    POLICIES,
    Heuristic,
    Policy,
    make_policy,
)
from agents.policies import policy_label
from dllm_gym.decoding import decode, threshold_rule, top_k_rule
from dllm_gym.tasks import ArithTask

ARITH = "DLLMUnmask-Arith-v0"
L = gym.spec(ARITH).kwargs["gen_length"]
BLOCK = gym.spec(ARITH).kwargs["block_length"]
FEATURES = ("confidence", "margin", "entropy", "eos", "kl")


def observation(active, **entries) -> dict[str, np.ndarray]:
    """An observation as an env gives it: int8 masks, float32 features, missing ones zero."""
    active = np.asarray(active, dtype=np.int8)
    obs = {"active": active, "mask": active.copy()}
    for key in FEATURES:
        obs[key] = np.asarray(entries.get(key, np.zeros(active.shape)), dtype=np.float32)
    obs["progress"] = np.asarray(entries.get("progress", [0.5]), dtype=np.float32)
    return obs


def configured(name: str, gen_length: int, block_length: int = 4, **hyperparameters):
    policy = make_policy(name, **hyperparameters)
    policy.configure(gen_length=gen_length, block_length=block_length)
    return policy


def revealed(action: np.ndarray) -> list[int]:
    return np.flatnonzero(action).tolist()


# ------------------------------------------------------------------------------ threshold
def test_threshold_reveals_the_best_and_everything_above_tau():
    policy = make_policy("threshold", tau=0.9)
    # Position 2 sits exactly at tau (0.9 as float32, as the env gives it): revealed.
    # Position 4 is the most confident but inactive: never revealed.
    obs = observation([1, 1, 1, 1, 0, 1], confidence=[0.95, 0.5, 0.9, 0.3, 0.99, 0.2])
    action = policy(obs)
    assert action.dtype == np.int8 and action.shape == (6,)
    assert action.tolist() == [1, 0, 1, 0, 0, 0]


def test_threshold_reveals_the_most_confident_when_none_reaches_tau_ties_to_the_left():
    policy = make_policy("threshold", tau=0.9)
    obs = observation([1, 1, 1, 1], confidence=[0.5, 0.7, 0.7, 0.1])
    assert policy(obs).tolist() == [0, 1, 0, 0]
    obs = observation([0, 0, 1, 0], confidence=[0.99, 0.99, 0.1, 0.99])
    assert policy(obs).tolist() == [0, 0, 1, 0]  # the single active position


def test_eos_last_threshold_holds_end_of_text_back_while_content_is_left():
    policy = make_policy("eos_last_threshold", tau=0.9)
    # Positions 1 and 3 predict end of text (eos >= confidence), 0 and 2 content. The most
    # confident positions are end of text, yet only content is a candidate: 0 (0.95 >= tau);
    # 2 is content below tau. Threshold alone would reveal 0, 1 and 3.
    obs = observation([1, 1, 1, 1], confidence=[0.95, 0.99, 0.6, 0.97], eos=[0.01, 0.99, 0.3, 0.98])
    assert policy(obs).tolist() == [1, 0, 0, 0]
    assert make_policy("threshold", tau=0.9)(obs).tolist() == [1, 1, 0, 1]
    # Content below tau only: the most confident content position, not an end-of-text one.
    obs = observation([1, 1, 1, 0], confidence=[0.5, 0.99, 0.6, 0.1], eos=[0.2, 0.99, 0.1, 0])
    assert policy(obs).tolist() == [0, 0, 1, 0]
    # Nothing but end of text left: the threshold rule among them.
    obs = observation([0, 1, 0, 1], confidence=[0.9, 0.99, 0.6, 0.5], eos=[0.0, 0.99, 0.0, 0.5])
    assert policy(obs).tolist() == [0, 1, 0, 0]
    with pytest.raises(ValueError, match="tau"):
        make_policy("eos_last_threshold", tau=0)


def test_margin_threshold_reads_the_margin_not_the_confidence():
    policy = make_policy("margin_threshold", tau=0.5)
    obs = observation(
        [1, 1, 1, 1, 1],
        confidence=[0.99, 0.6, 0.6, 0.99, 0.7],
        margin=[0.2, 0.55, 0.3, 0.1, 0.5],
    )
    assert policy(obs).tolist() == [0, 1, 0, 0, 1]
    obs = observation([1, 1, 1], confidence=[0.99, 0.1, 0.1], margin=[0.1, 0.3, 0.3])
    assert policy(obs).tolist() == [0, 1, 0]  # best margin always, ties to the left
    assert policy.required_features == ("margin",)
    with pytest.raises(ValueError, match=r"margin_threshold: the observation has no 'margin'"):
        policy({"active": np.ones(3, np.int8), "confidence": np.ones(3, np.float32)})


# ------------------------------------------------------------------------------ factor
def test_factor_worked_example():
    # Active confidences of positions 0..4: 0.99, 0.6, 0.95, 0.75, 0.9.
    # Sorted descending (1-indexed): c1 = 0.99 (pos 0), c2 = 0.95 (pos 2), c3 = 0.9 (pos 4),
    # c4 = 0.75 (pos 3), c5 = 0.6 (pos 1). (i + 1) * (1 - c_i):
    #   i=1: 2 * 0.01 = 0.02, i=2: 3 * 0.05 = 0.15, i=3: 4 * 0.1 = 0.4,
    #   i=4: 5 * 0.25 = 1.25, i=5: 6 * 0.4 = 2.4.
    # f = 1: largest n with all terms < 1 is 3 -> positions 0, 2, 4.
    # f = 2: n = 4 -> positions 0, 2, 3, 4.   f = 3: n = 5 -> all.
    # f = 0.01: even i = 1 fails (0.02), at least one -> position 0.
    # Position 5 is inactive with confidence 1.0: never revealed.
    obs = observation([1, 1, 1, 1, 1, 0], confidence=[0.99, 0.6, 0.95, 0.75, 0.9, 1.0])
    assert revealed(make_policy("factor", f=1.0)(obs)) == [0, 2, 4]
    assert revealed(make_policy("factor", f=2.0)(obs)) == [0, 2, 3, 4]
    assert revealed(make_policy("factor", f=3.0)(obs)) == [0, 1, 2, 3, 4]
    assert revealed(make_policy("factor", f=0.01)(obs)) == [0]


def test_factor_ties_go_to_the_lowest_position():
    # Four equal confidences 0.8: (i + 1) * 0.2 < 0.7 holds for i = 1, 2 only -> n = 2,
    # the two leftmost active positions.
    obs = observation([0, 1, 1, 1, 1], confidence=[0.8] * 5)
    assert revealed(make_policy("factor", f=0.7)(obs)) == [1, 2]


# ------------------------------------------------------------------------------ entropy
def test_entropy_bounded_worked_example():
    # Active entropies of positions 0..4: 0.30, 0.05, 0.50, 0.01, 0.20; position 5 inactive
    # with entropy 0. Sorted ascending: 0.01 (pos 3), 0.05 (pos 1), 0.20 (pos 4),
    # 0.30 (pos 0), 0.50 (pos 2). sum(H) - max(H) of each prefix:
    #   n=1: 0, n=2: 0.06 - 0.05 = 0.01, n=3: 0.26 - 0.20 = 0.06,
    #   n=4: 0.56 - 0.30 = 0.26, n=5: 1.06 - 0.50 = 0.56.
    # gamma = 0.3 -> n = 4 (positions 3, 1, 4, 0); gamma = 0.05 -> n = 2 (3, 1);
    # gamma = 0 -> n = 1 (3); gamma = 1 -> all five.
    obs = observation([1, 1, 1, 1, 1, 0], entropy=[0.30, 0.05, 0.50, 0.01, 0.20, 0.0])
    assert revealed(make_policy("entropy_bounded", gamma=0.3)(obs)) == [0, 1, 3, 4]
    assert revealed(make_policy("entropy_bounded", gamma=0.05)(obs)) == [1, 3]
    assert revealed(make_policy("entropy_bounded", gamma=0.0)(obs)) == [3]
    assert revealed(make_policy("entropy_bounded", gamma=1.0)(obs)) == [0, 1, 2, 3, 4]


def test_entropy_bounded_ties_and_missing_feature():
    # Three equal entropies 0.1: prefix errors 0, 0.1, 0.2; gamma = 0.15 -> the two leftmost.
    obs = observation([1, 0, 1, 1], entropy=[0.1, 0.0, 0.1, 0.1])
    assert revealed(make_policy("entropy_bounded", gamma=0.15)(obs)) == [0, 2]
    with pytest.raises(ValueError, match=r"obs_features=\['entropy'\]"):
        make_policy("entropy_bounded")({"active": np.ones(4, np.int8)})


# ------------------------------------------------------------------------------ others
def test_left_to_right_reveals_the_leftmost_active_position():
    policy = make_policy("left_to_right")
    assert policy(observation([0, 0, 1, 1, 0, 1])).tolist() == [0, 0, 1, 0, 0, 0]
    batch = np.array([[0, 1, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=np.int8)
    action = policy({"active": batch})
    assert action.tolist() == [[0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]


def test_random_reveals_k_distinct_active_positions_reproducibly():
    active = np.array([[1, 0, 1, 1, 0, 1, 1, 0]] * 3 + [[0, 0, 0, 0, 0, 1, 0, 0]], np.int8)
    policy = make_policy("random", k=2, seed=3)
    first = [policy({"active": active}) for _ in range(5)]
    for action in first:
        assert action.dtype == np.int8
        assert not (action & ~active.astype(bool)).any()
        assert action.sum(axis=1).tolist() == [2, 2, 2, 1]  # all if fewer than k
    again = make_policy("random", k=2, seed=3)
    assert all(np.array_equal(a, again({"active": active})) for a in first)
    policy.configure(gen_length=8, block_length=8)  # re-seeds: the same draws again
    assert all(np.array_equal(a, policy({"active": active})) for a in first)
    other = make_policy("random", k=2, seed=4)
    assert any(not np.array_equal(a, other({"active": active})) for a in first)


def test_random_is_uniform_over_active_positions():
    # 4000 rows, k = 2 of the 4 active positions: each chosen with probability 1/2
    # (standard deviation of a frequency 0.008); inactive ones never.
    active = np.tile(np.array([1, 0, 1, 1, 0, 1], np.int8), (4000, 1))
    frequency = make_policy("random", k=2, seed=0)({"active": active}).mean(axis=0)
    assert frequency[[1, 4]].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(frequency[[0, 2, 3, 5]], 0.5, atol=0.04)


# ------------------------------------------------------------------------------ top_k
def llada_num_transfer_tokens(block_mask_index: torch.Tensor, steps: int) -> torch.Tensor:
    """LLaDA's get_num_transfer_tokens (generate.py), transcribed."""
    mask_num = block_mask_index.sum(dim=1, keepdim=True)
    base = mask_num // steps
    remainder = mask_num % steps
    num_transfer_tokens = torch.zeros(mask_num.size(0), steps, dtype=torch.int64) + base
    for i in range(mask_num.size(0)):
        num_transfer_tokens[i, : remainder[i]] += 1
    return num_transfer_tokens


def play_block(policy: Heuristic, block: int, confidence: np.ndarray) -> list[int]:
    """Reveal block 1 of a 3-block buffer with ``policy``; the number revealed per step.

    Also checks each step reveals the most confident active positions of the block.
    """
    length = 3 * block
    mask = np.zeros(length, np.int8)
    mask[block:] = 1  # block 0 done, blocks 1 and 2 masked
    active = np.zeros(length, np.int8)
    active[block : 2 * block] = 1
    counts = []
    while active.any():
        obs = {"active": active.copy(), "mask": mask.copy(), "confidence": confidence}
        action = policy(obs)
        chosen = np.flatnonzero(action)
        assert chosen.size and active[chosen].all()
        remaining = np.flatnonzero(active & ~action.astype(bool))
        if remaining.size:
            assert confidence[chosen].min() >= confidence[remaining].max()
        counts.append(int(chosen.size))
        active[chosen] = 0
        mask[chosen] = 0
    return counts


@pytest.mark.parametrize(
    ("steps", "expected"),
    [(16, [1] * 16), (8, [2] * 8), (5, [4, 3, 3, 3, 3]), (3, [6, 5, 5]), (1, [16])],
)
def test_top_k_follows_llada_schedule(steps, expected):
    policy = configured("top_k", 48, 16, steps_per_block=steps)
    confidence = np.random.default_rng(steps).random(48).astype(np.float32)
    counts = play_block(policy, 16, confidence)
    assert counts == expected
    llada = llada_num_transfer_tokens(torch.ones(1, 16, dtype=torch.bool), steps)[0]
    assert counts == llada.tolist()
    assert policy.schedule().tolist() == expected


def test_top_k_ties_empty_block_batch_and_off_schedule():
    policy = configured("top_k", 8, 4, steps_per_block=2)  # 2 per step
    obs = observation([0, 0, 0, 0, 1, 1, 1, 1], confidence=[1, 1, 1, 1, 0.5, 0.7, 0.7, 0.7])
    assert revealed(policy(obs)) == [5, 6]  # ties to the left
    assert policy(observation([0] * 8)).tolist() == [0] * 8  # no active position
    # 3 of a 4-block revealed (off the schedule 2, 2): catch up to the step boundary, 1 more.
    assert revealed(policy(observation([0, 0, 0, 0, 0, 1, 0, 0]))) == [5]
    # Batched: rows at step 0, step 1, done.
    active = np.array([[1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 0, 1], [0] * 8], np.int8)
    confidence = np.tile(np.linspace(0.1, 0.8, 8, dtype=np.float32), (3, 1))
    action = policy({"active": active, "confidence": confidence})
    assert action.tolist() == [[0, 0, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 0, 1], [0] * 8]


def test_top_k_needs_configure_and_a_valid_step_count():
    policy = make_policy("top_k", steps_per_block=4)
    with pytest.raises(RuntimeError, match=r"top_k: call configure\(gen_length=\.\.\."):
        policy(observation([1, 1, 1, 1], confidence=[0.1, 0.2, 0.3, 0.4]))
    with pytest.raises(
        ValueError, match=r"top_k: steps_per_block must be in \[1, block_length=2\], got 4"
    ):
        policy.configure(gen_length=4, block_length=2)
    policy.configure(gen_length=8, block_length=4)
    with pytest.raises(ValueError, match=r"top_k: a row has 8 active positions, more than block"):
        policy(observation([1] * 8))


# ------------------------------------------------------------------------------ all policies
ALL = [
    ("random", {"k": 2}),
    ("top_k", {"steps_per_block": 4}),
    ("threshold", {"tau": 0.6}),
    ("factor", {"f": 1.0}),
    ("margin_threshold", {"tau": 0.4}),
    ("entropy_bounded", {"gamma": 0.5}),
    ("eos_last_threshold", {"tau": 0.6}),
    ("left_to_right", {}),
    ("klass", {"kl_bound": 0.5, "tau": 0.3}),
    ("dilated", {"a": 2}),
    ("eos_reject_ascending", {"gamma_min": 0.2}),
    ("pc_sampler", {"lam": 0.1, "k": 2}),
]


def random_batch(rows: int, length: int, block: int, seed: int) -> dict[str, np.ndarray]:
    """Rows at random blocks with random masks, one row with nothing active."""
    rng = np.random.default_rng(seed)
    current = rng.integers(0, length // block, rows)
    in_block = np.arange(length)[None, :] // block == current[:, None]
    after = np.arange(length)[None, :] // block > current[:, None]
    active = in_block & (rng.random((rows, length)) < 0.6)
    active[0] = False
    active[1] = in_block[1]  # a full block
    obs = {"active": active.astype(np.int8), "mask": (active | after).astype(np.int8)}
    for key in FEATURES:
        obs[key] = rng.random((rows, length)).astype(np.float32)
    obs["progress"] = np.full((rows, 1), 0.25, np.float32)
    return obs


@pytest.mark.parametrize(("name", "hyperparameters"), ALL)
def test_batched_equals_rows_and_only_active_positions_are_set(name, hyperparameters):
    policy = configured(name, 48, 16, **hyperparameters)
    obs = random_batch(12, 48, 16, seed=1)
    action = policy(obs)
    assert action.dtype == np.int8 and action.shape == (12, 48)
    assert not (action.astype(bool) & ~obs["active"].astype(bool)).any()
    assert action[0].sum() == 0  # nothing active
    assert (action.sum(axis=1)[1:] >= 1).all()  # every policy reveals at least one
    if name == "random":  # draws depend on the batch shape; check the row count only
        return
    for row in range(12):
        single = {key: value[row] for key, value in obs.items()}
        if name == "klass":  # keeps a history per row: a fresh policy sees what the batch saw
            policy = configured(name, 48, 16, **hyperparameters)
        assert np.array_equal(policy(single), action[row])


@pytest.mark.parametrize(("name", "hyperparameters"), ALL)
def test_every_policy_reveals_a_single_active_position_and_nothing_on_an_empty_block(
    name, hyperparameters
):
    policy = configured(name, 8, 4, **hyperparameters)
    obs = observation(
        [0, 0, 0, 0, 0, 1, 0, 0], confidence=[1, 1, 1, 1, 1, 0.1, 0, 0], entropy=[3] * 8
    )
    assert policy(obs).tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    assert policy(observation([0] * 8)).tolist() == [0] * 8
    assert isinstance(policy, Policy)


def test_registry_grids_and_labels():
    assert list(POLICIES) == [name for name, _ in ALL]
    assert all(POLICIES[name].name == name for name in POLICIES)
    assert set(DEFAULT_GRIDS) == set(POLICIES)
    for name, grid in DEFAULT_GRIDS.items():
        assert grid
        for point in grid:
            configured(name, L, BLOCK, **point)
    assert policy_label(make_policy("threshold", tau=0.9)) == "threshold(tau=0.9)"
    assert policy_label(make_policy("random")) == "random(k=1, seed=0)"
    assert policy_label(make_policy("top_k", steps_per_block=4)) == "top_k(steps_per_block=4)"
    assert policy_label(make_policy("left_to_right")) == "left_to_right()"
    assert make_policy("entropy_bounded").required_features == ("entropy",)
    assert make_policy("threshold").required_features == ()


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("name", "hyperparameters", "message"),
    [
        ("threshold", {"tau": 1.5}, r"threshold: tau must be in \(0, 1\], got 1\.5"),
        ("threshold", {"tau": 0}, r"threshold: tau must be in \(0, 1\], got 0"),
        ("threshold", {"tau": "high"}, r"threshold: tau must be a number in \(0, 1\]"),
        ("margin_threshold", {"tau": -0.1}, r"margin_threshold: tau must be in \(0, 1\]"),
        ("factor", {"f": 0.0}, r"factor: f must be in \(0, inf\), got 0\.0"),
        ("factor", {"f": float("nan")}, r"factor: f must be in \(0, inf\), got nan"),
        ("entropy_bounded", {"gamma": -1}, r"entropy_bounded: gamma must be in \[0, inf\)"),
        ("random", {"k": 0}, r"random: k must be an integer in \[1, inf\), got 0"),
        ("random", {"k": 1.5}, r"random: k must be an integer in \[1, inf\), got 1\.5"),
        ("random", {"k": True}, r"random: k must be an integer"),
        ("random", {"seed": -1}, r"random: seed must be an integer in \[0, inf\), got -1"),
        ("top_k", {"steps_per_block": 0}, r"top_k: steps_per_block must be an integer in \[1"),
        ("top_k", {}, r"top_k: missing hyperparameter 'steps_per_block'"),
        ("threshold", {"k": 2}, r"threshold: unknown hyperparameter 'k'; .*\['tau'\]"),
        ("nope", {}, r"unknown policy 'nope'; choose one of \['random', 'top_k', "),
        ("klass", {"kl_bound": 0}, r"klass: kl_bound must be in \(0, inf\), got 0"),
        ("klass", {"history": 0}, r"klass: history must be an integer in \[1, inf\), got 0"),
        ("klass", {"tau": 1.2}, r"klass: tau must be in \[0, 1\], got 1\.2"),
        ("dilated", {"a": 1}, r"dilated: a must be an integer in \[2, inf\), got 1"),
        ("eos_reject_ascending", {"growth": 1.0}, r"eos_reject_ascending: growth must be in \(1,"),
        (
            "eos_reject_ascending",
            {"gamma_min": 0.8, "gamma_max": 0.5},
            r"eos_reject_ascending: gamma_min must be in \[0, 0\.5\], got 0\.8",
        ),
        ("pc_sampler", {"lam": -1}, r"pc_sampler: lam must be in \[0, inf\), got -1"),
        ("pc_sampler", {"k": 0}, r"pc_sampler: k must be an integer in \[1, inf\), got 0"),
    ],
)
def test_invalid_hyperparameters_are_rejected(name, hyperparameters, message):
    with pytest.raises(ValueError, match=message):
        make_policy(name, **hyperparameters)


def test_invalid_observations_and_settings_are_rejected():
    policy = make_policy("threshold")
    with pytest.raises(ValueError, match=r"shape \(L,\) or \(N, L\)"):
        policy({"active": np.ones((2, 2, 2), np.int8)})
    with pytest.raises(ValueError, match=r"obs\['confidence'\] has shape \(3,\)"):
        policy({"active": np.ones(4, np.int8), "confidence": np.ones(3, np.float32)})
    policy.configure(gen_length=8, block_length=4)
    with pytest.raises(ValueError, match=r"length 4, but configure\(\) .* gen_length=8"):
        policy(observation([1, 1, 1, 1]))
    with pytest.raises(ValueError, match=r"threshold: block_length must be an integer in \[1, 8\]"):
        policy.configure(gen_length=8, block_length=16)


# ------------------------------------------------------------------------------ equivalence
INDICES = [0, 1, 2, 3]
RULES = {
    "top_k(steps_per_block=16)": top_k_rule(16),
    "top_k(steps_per_block=4)": top_k_rule(4),
    "threshold(tau=0.9)": threshold_rule(0.9),
}


@pytest.fixture(scope="module")
def arith_env():
    env = gym.make(ARITH)
    yield env
    env.close()


@pytest.fixture(scope="module")
def reference(arith_env):
    """decode() of test problems 0-3 under each rule, keyed by policy_label() of the policy."""
    lm, task = arith_env.unwrapped.model, ArithTask()
    prompts = [task.format_prompt(task.problems("test")[i].question, lm.tokenizer) for i in INDICES]
    out = {}
    for key, rule in RULES.items():
        result = decode(lm, prompts, rule, gen_length=L, block_length=BLOCK)
        texts = [lm.decode_generation(generation) for generation in result.generations]
        out[key] = (texts, result.unmask_step.numpy(), result.nfe.numpy())
    return out


POLICY_CASES = [
    ("top_k", {"steps_per_block": 16}),
    ("top_k", {"steps_per_block": 4}),
    ("threshold", {"tau": 0.9}),
]


@pytest.mark.parametrize(("name", "hyperparameters"), POLICY_CASES)
def test_policy_on_the_env_matches_decode(arith_env, reference, name, hyperparameters):
    policy = configured(name, L, BLOCK, **hyperparameters)
    texts, unmask_steps, nfes = reference[policy_label(policy)]
    for row, index in enumerate(INDICES):
        obs, _ = arith_env.reset(options={"index": index})
        steps = 0
        while True:
            obs, _, terminated, truncated, info = arith_env.step(policy(obs))
            steps += 1
            if terminated or truncated:
                break
        assert terminated
        assert info["text"] == texts[row]
        assert np.array_equal(info["unmask_step"], unmask_steps[row])
        assert info["nfe"] == steps == nfes[row]


@pytest.mark.parametrize(("name", "hyperparameters"), POLICY_CASES[1:])
def test_batched_policy_on_the_vector_env_matches_decode(reference, name, hyperparameters):
    policy = configured(name, L, BLOCK, **hyperparameters)
    texts, unmask_steps, nfes = reference[policy_label(policy)]
    envs = gym.make_vec(ARITH, num_envs=4, autoreset_mode=AutoresetMode.DISABLED)
    obs, _ = envs.reset(options={"index": INDICES})
    ended = np.zeros(4, dtype=bool)
    final_texts: list[str | None] = [None] * 4
    final_steps = np.zeros((4, L), dtype=np.int64)
    final_nfe = np.zeros(4, dtype=np.int64)
    for _ in range(L):
        obs, _, terminated, truncated, infos = envs.step(policy(obs))
        assert not (terminated & ended).any()  # a finished row stays finished
        if "_text" in infos:
            for row in np.flatnonzero(infos["_text"]):
                final_texts[row] = infos["text"][row]
                final_steps[row] = infos["unmask_step"][row]
                final_nfe[row] = infos["nfe"][row]
        ended |= terminated | truncated
        if ended.all():
            break
    envs.close()
    assert ended.all()
    assert final_texts == texts
    assert np.array_equal(final_steps, unmask_steps)
    assert np.array_equal(final_nfe, nfes)


@pytest.mark.parametrize(
    ("name", "hyperparameters", "gen_length", "block_length"),
    [
        ("top_k", {"steps_per_block": 4}, 16, 4),  # one token a step
        ("top_k", {"steps_per_block": 2}, 16, 16),  # full diffusion, 8 tokens a step
        ("top_k", {"steps_per_block": 3}, 12, 4),  # uneven schedule: 2, 1, 1
        ("threshold", {"tau": 0.3}, 16, 8),
    ],
)
def test_policy_matches_the_reference_loops_on_a_random_model(
    tiny_model_dir, name, hyperparameters, gen_length, block_length
):
    """The heuristics reproduce the independent transcriptions of LLaDA's and Fast-dLLM's
    loops in ``reference_decoders``, on a random model whose varied predictions make every
    choice visible."""
    env = gym.make(
        ARITH, model=str(tiny_model_dir), gen_length=gen_length, block_length=block_length
    )
    lm, task = env.unwrapped.model, ArithTask()
    policy = make_policy(name, **hyperparameters)
    policy.configure(gen_length=gen_length, block_length=block_length)
    for index in range(3):
        prompt = task.format_prompt(task.problems("test")[index].question, lm.tokenizer)
        if name == "top_k":
            steps = hyperparameters["steps_per_block"] * (gen_length // block_length)
            expected, order = llada_low_confidence(lm, prompt, steps, gen_length, block_length)
            expected_nfe = steps
        else:
            expected, order, expected_nfe = fast_dllm_threshold(
                lm, prompt, hyperparameters["tau"], gen_length, block_length
            )
        obs, _ = env.reset(options={"index": index})
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(policy(obs))
            done = terminated or truncated
        assert torch.equal(env.unwrapped._state.generation[0], expected)
        assert np.array_equal(info["unmask_step"], order.numpy())
        assert info["nfe"] == expected_nfe


# ------------------------------------------------------------------------------ newer samplers
def test_klass_reveals_stable_confident_positions_and_falls_back_to_top_k():
    policy = configured("klass", 8, 8, kl_bound=0.01, history=2, tau=0.8)
    active = [1] * 8
    confidence = [0.5, 0.95, 0.9, 0.6, 0.85, 0.2, 0.99, 0.7]
    steady = [0.001, 0.001, 0.5, 0.001, 0.001, 0.001, 0.02, 0.001]

    def step(progress, kl):
        return revealed(policy(observation(active, confidence=confidence, kl=kl,
                                           progress=[progress])))  # fmt: skip

    assert step(1 / 8, [0] * 8) == [6]  # first forward: no history, the most confident
    assert step(2 / 8, steady) == [6]  # one steady step of two: still the fallback
    # Two steady steps: stable and >= 0.8 -> 1 and 4 (2 moved, 6 above the bound, 0 and 3
    # below tau).
    assert step(3 / 8, steady) == [1, 4]
    assert step(1 / 8, steady) == [6]  # a new episode forgets the history
    batch = configured("klass", 8, 8, kl_bound=0.01, history=1, tau=0.0)
    obs = observation([active, active], confidence=[confidence] * 2, kl=[steady] * 2,
                      progress=[[2 / 8], [1 / 8]])  # fmt: skip
    assert [revealed(row) for row in batch(obs)] == [[0, 1, 3, 4, 5, 7], [6]]


def test_dilated_reveals_far_apart_groups_in_log_a_steps():
    policy = configured("dilated", 16, 16, a=2)
    active = np.ones(16, dtype=np.int8)
    steps = []
    while active.any():
        chosen = policy(observation(active))
        steps.append(revealed(chosen))
        active = active & ~chosen.astype(bool)
    assert steps == [[0, 8], [4, 12], [2, 6, 10, 14], [1, 3, 5, 7, 9, 11, 13, 15]]
    # Off the schedule (8 already revealed): the lowest group still active goes first.
    partly = observation([1] * 8 + [0] + [1] * 7)
    assert revealed(policy(partly)) == [0]
    # A second block of a longer generation uses the same pattern, shifted.
    second = configured("dilated", 32, 16, a=4)
    assert revealed(second(observation([0] * 16 + [1] * 16))) == [16, 20, 24, 28]


def test_eos_reject_ascending_doubles_the_step_and_holds_end_of_text_back_early():
    policy = configured("eos_reject_ascending", 8, 8, gamma_min=0.4, gamma_max=1.0)
    assert policy.boundaries().tolist() == [0, 1, 3, 7, 8]
    confidence = [0.6, 0.95, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    eos = [0.0, 0.95, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # position 1 predicts end of text
    # Step 1 reveals 1; end of text scaled by 0.4 + 0.6 * 1/8 = 0.475: 0.451 < 0.6.
    assert revealed(policy(observation([1] * 8, confidence=confidence, eos=eos))) == [0]
    # Step 2 (1 revealed) reveals 2; scale 0.4 + 0.6 * 3/8 = 0.625: 0.594 > 0.5 and 0.4.
    second = observation([0] + [1] * 7, confidence=confidence, eos=eos)
    assert revealed(policy(second)) == [1, 2]
    # Step 3 (3 revealed) reveals 4, the last step the one left.
    assert revealed(policy(observation([0] * 3 + [1] * 5, confidence=confidence))) == [3, 4, 5, 6]
    assert revealed(policy(observation([0] * 7 + [1], confidence=confidence))) == [7]


def test_pc_sampler_weights_confidence_by_position():
    confidence = [0.5, 0.0, 0.0, 0.0, 0.9, 0.0, 0.0, 0.0]
    obs = observation([1] * 8, confidence=confidence)
    # exp(-0.25 * 4) * 0.9 = 0.33 < 0.5: the earlier position wins; without decay the later.
    assert revealed(configured("pc_sampler", 8, 8, lam=0.25)(obs)) == [0]
    assert revealed(configured("pc_sampler", 8, 8, lam=0.0)(obs)) == [4]
    assert revealed(configured("pc_sampler", 8, 8, lam=0.1, k=2)(obs)) == [0, 4]
