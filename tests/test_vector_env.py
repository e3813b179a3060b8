"""The native vector environment: equivalence with single envs, autoreset modes, prompts,
episode statistics and bad input."""

import doctest

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from gymnasium.wrappers.vector import RecordEpisodeStatistics

import dllm_gym
from dllm_gym.envs import UnmaskVectorEnv, unmask_env, unmask_vector_env

ARITH = "DLLMUnmask-Arith-v0"
L = gym.spec(ARITH).kwargs["gen_length"]
ALL_FEATURES = ["margin", "entropy", "token", "kl"]


def random_actions(rng, num_envs, densities):
    """Reveal decisions with a different density per row, so rows drift into different blocks
    and steps; empty rows exercise ``force_top1``."""
    return rng.random((num_envs, L)) < np.asarray(densities)[:, None]


def assert_obs_match(a, b, rows=slice(None)):
    """Tokens and masks equal; real features within 1e-5 (relative above 1: the KL is
    unbounded, and batched matmuls of other shapes round differently)."""
    assert set(a) == set(b)
    for key in a:
        x, y = np.asarray(a[key])[rows], np.asarray(b[key])[rows]
        if np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5, err_msg=key)
        else:
            np.testing.assert_array_equal(x, y, err_msg=key)


def assert_infos_match(a, b, where="infos"):
    assert set(a) == set(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
    for key in a:
        if key.startswith("_"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{where}[{key}]")
            continue
        if isinstance(a[key], dict):
            assert_infos_match(a[key], b[key], f"{where}[{key}]")
            continue
        for row in np.flatnonzero(a[f"_{key}"]):
            x, y = a[key][row], b[key][row]
            if isinstance(x, dict):
                assert_obs_match(x, y)
            elif isinstance(x, (float, np.floating)):
                assert x == pytest.approx(y, abs=1e-9), f"{where}[{key}][{row}]"
            else:
                np.testing.assert_array_equal(x, y, err_msg=f"{where}[{key}][{row}]")


def assert_vector_envs_match(native, reference, seed, steps, densities, reset_disabled=False):
    """Step both with the same seed and actions; compare every output."""
    rng = np.random.default_rng(seed)
    obs_a, info_a = native.reset(seed=seed)
    obs_b, info_b = reference.reset(seed=seed)
    assert_obs_match(obs_a, obs_b)
    assert_infos_match(info_a, info_b)
    episodes = 0
    for _ in range(steps):
        actions = random_actions(rng, native.num_envs, densities)
        obs_a, rew_a, term_a, trunc_a, info_a = native.step(actions)
        obs_b, rew_b, term_b, trunc_b, info_b = reference.step(actions)
        np.testing.assert_array_equal(term_a, term_b)
        np.testing.assert_array_equal(trunc_a, trunc_b)
        np.testing.assert_allclose(rew_a, rew_b, rtol=0, atol=1e-9)
        assert_obs_match(obs_a, obs_b)
        assert_infos_match(info_a, info_b)
        ended = term_a | trunc_a
        episodes += int(ended.sum())
        if reset_disabled and ended.any():
            obs_a, info_a = native.reset(options={"reset_mask": ended})
            obs_b, info_b = reference.reset(options={"reset_mask": ended})
            assert_obs_match(obs_a, obs_b)
            assert_infos_match(info_a, info_b)
    return episodes


@pytest.mark.parametrize("mode", list(AutoresetMode))
def test_native_vector_env_reproduces_single_envs_in_every_autoreset_mode(mode):
    kwargs = {"obs_features": ALL_FEATURES}
    native = gym.make_vec(ARITH, num_envs=4, autoreset_mode=mode, **kwargs)
    reference = gym.make_vec(
        ARITH,
        num_envs=4,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": mode},
        **kwargs,
    )
    assert isinstance(native, UnmaskVectorEnv)
    assert native.metadata["autoreset_mode"] is mode
    episodes = assert_vector_envs_match(
        native,
        reference,
        seed=3,
        steps=60,
        densities=[0.0, 0.1, 0.4, 1.0],
        reset_disabled=mode is AutoresetMode.DISABLED,
    )
    assert episodes >= 6  # several autoresets happened, in rows at different points


def test_rows_with_different_prompt_lengths_decode_as_they_would_alone():
    """Prompts of several lengths share one left-padded buffer, and autoreset brings in longer
    prompts than the buffer was built for (it grows); every row still decodes as a single env,
    in its own block."""
    features = ["kl", "token"]
    single_envs = [gym.make(ARITH, obs_features=features) for _ in range(4)]
    workload = single_envs[0].unwrapped.workload
    lengths = np.array([len(p) for p in workload.prompts(range(100))])
    shortest, middle = int(lengths.argmin()), int(np.argsort(lengths)[50])
    assert lengths[middle] > lengths[shortest]
    indices = [shortest, middle, shortest, shortest]
    native = gym.make_vec(ARITH, num_envs=4, obs_features=features)
    native.reset(seed=5, options={"index": indices})
    for row, (env, index) in enumerate(zip(single_envs, indices, strict=True)):
        env.reset(seed=5 + row, options={"index": index})
    state = native.unwrapped._state
    widths = {state.prompt_width}
    rng = np.random.default_rng(0)
    ended = np.zeros(4, dtype=bool)
    blocks_seen = set()
    for _ in range(80):
        actions = random_actions(rng, 4, [0.05, 0.5, 0.2, 0.0])
        obs, rewards, terminated, truncated, _ = native.step(actions)
        widths.add(native.unwrapped._state.prompt_width)
        blocks_seen.add(tuple(native.unwrapped._state.current_block.tolist()))
        for row, env in enumerate(single_envs):
            if ended[row]:  # NEXT_STEP: this step reset the row
                expected, reward, term, trunc = *env.reset()[:1], 0.0, False, False
            else:
                expected, reward, term, trunc, _ = env.step(actions[row])
            assert (terminated[row], truncated[row]) == (term, trunc)
            assert rewards[row] == pytest.approx(reward, abs=1e-9)
            assert_obs_match(
                {k: v[row : row + 1] for k, v in obs.items()},
                {k: v[None] for k, v in expected.items()},
            )
        ended = terminated | truncated
    assert len(widths) > 1  # a longer prompt arrived and the buffer grew
    assert any(len(set(blocks)) > 1 for blocks in blocks_seen)  # rows in different blocks


def test_one_sub_env_is_the_single_env():
    native = gym.make_vec(ARITH, num_envs=1, obs_features=ALL_FEATURES)
    single = gym.make(ARITH, obs_features=ALL_FEATURES)
    rng = np.random.default_rng(1)
    obs_v, _ = native.reset(seed=11)
    obs_s, _ = single.reset(seed=11)
    assert_obs_match(obs_v, {k: v[None] for k, v in obs_s.items()})
    ends, just_ended = 0, False
    for _ in range(60):
        action = rng.random(L) < 0.4
        obs_v, rew_v, term_v, trunc_v, info_v = native.step(action[None])
        if just_ended:
            obs_s, info_s = single.reset()
            rew_s, term_s, trunc_s = 0.0, False, False
        else:
            obs_s, rew_s, term_s, trunc_s, info_s = single.step(action)
        just_ended = term_s or trunc_s
        ends += just_ended
        assert (rew_v[0], term_v[0], trunc_v[0]) == (rew_s, term_s, trunc_s)
        assert_obs_match(obs_v, {k: v[None] for k, v in obs_s.items()})
        assert info_v["nfe"][0] == info_s["nfe"]
    assert ends >= 2


def test_spaces_are_the_single_envs_batched():
    single = gym.make(ARITH, obs_features=["entropy"])
    envs = gym.make_vec(ARITH, num_envs=3, obs_features=["entropy"])
    assert envs.single_observation_space == single.observation_space
    assert envs.single_action_space == single.action_space
    assert envs.observation_space == batch_space(single.observation_space, 3)
    assert envs.action_space == batch_space(single.action_space, 3)
    obs, _ = envs.reset(seed=0)
    assert obs in envs.observation_space
    assert envs.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    assert len(envs.unwrapped.problems) == len(single.unwrapped.problems) == 1000
    assert envs.unwrapped.problems[7] == single.unwrapped.problems[7]


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_episode_statistics_are_the_envs_rewards_and_steps(mode):
    envs = RecordEpisodeStatistics(gym.make_vec(ARITH, num_envs=3, autoreset_mode=mode))
    envs.reset(seed=2)
    rng = np.random.default_rng(2)
    returns, lengths = np.zeros(3), np.zeros(3, dtype=int)
    fresh = np.zeros(3, dtype=bool)
    checked = 0
    for _ in range(80):
        _, rewards, terminated, truncated, infos = envs.step(random_actions(rng, 3, [0.1] * 3))
        counted = ~fresh  # NEXT_STEP: the reset step belongs to no episode
        returns[counted] += rewards[counted]
        lengths[counted] += 1
        done = terminated | truncated
        if done.any():
            stats = infos["episode"]
            np.testing.assert_array_equal(infos["_episode"], done)
            np.testing.assert_allclose(stats["r"][done], returns[done])
            np.testing.assert_array_equal(stats["l"][done], lengths[done])
            ends = infos["final_info"] if mode is AutoresetMode.SAME_STEP else infos
            # Under force_top1 an episode of n steps made n forward passes.
            np.testing.assert_array_equal(ends["nfe"][done], lengths[done])
            assert (returns[done] > 0).sum() == ends["correct"][done].sum()
            checked += int(done.sum())
        returns[done], lengths[done] = 0.0, 0
        fresh = done if mode is AutoresetMode.NEXT_STEP else np.zeros(3, dtype=bool)
    assert checked >= 5


def test_reset_index_picks_the_problems_and_groups_share_a_prompt():
    envs = gym.make_vec(ARITH, num_envs=4)
    obs, infos = envs.reset(seed=0, options={"index": [5, 5, 9, 9]})
    np.testing.assert_array_equal(infos["problem_index"], [5, 5, 9, 9])
    # Same prompt, temperature 0: identical first observations within a group.
    assert_obs_match({k: v[0] for k, v in obs.items()}, {k: v[1] for k, v in obs.items()})
    obs, infos = envs.reset(options={"index": 3})
    np.testing.assert_array_equal(infos["problem_index"], [3, 3, 3, 3])


def test_disabled_autoreset_resets_only_the_masked_rows_and_idles_finished_ones():
    envs = gym.make_vec(ARITH, num_envs=3, autoreset_mode=AutoresetMode.DISABLED)
    envs.reset(seed=0, options={"index": [1, 2, 3]})
    everything = np.ones((3, L), dtype=bool)
    # Row 0 reveals its whole block each step and finishes first; the others reveal one.
    actions = np.zeros((3, L), dtype=bool)
    actions[0] = everything[0]
    done = np.zeros(3, dtype=bool)
    while not done[0]:
        obs, rewards, terminated, truncated, infos = envs.step(actions)
        done |= terminated | truncated
    nfe_row0 = infos["nfe"][0]
    before = {k: v.copy() for k, v in obs.items()}
    obs, rewards, terminated, truncated, infos = envs.step(actions)
    assert infos["nfe"][0] == nfe_row0  # no forward pass for the waiting row
    assert rewards[0] == 0 and not terminated[0] and not truncated[0]
    assert_obs_match(before, obs, rows=[0])
    # Reset row 0 alone: rows 1 and 2 keep their episodes.
    kept = {k: v.copy() for k, v in obs.items()}
    nfe_kept = infos["nfe"].copy()
    obs, infos = envs.reset(options={"reset_mask": np.array([True, False, False])})
    np.testing.assert_array_equal(infos["_nfe"], [True, False, False])
    np.testing.assert_array_equal(infos["_problem_index"], [True, False, False])
    assert infos["nfe"][0] == 1
    assert_obs_match(kept, obs, rows=[1, 2])
    assert obs["mask"][0].all()
    _, _, _, _, infos = envs.step(actions)
    np.testing.assert_array_equal(infos["nfe"], [2, *(nfe_kept[1:] + 1)])


def test_max_episode_steps_truncates_and_scores():
    envs = gym.make_vec(ARITH, num_envs=2, max_episode_steps=3)
    envs.reset(seed=0)
    for _ in range(2):
        _, _, terminated, truncated, _ = envs.step(np.zeros((2, L), dtype=bool))
        assert not (terminated | truncated).any()
    _, rewards, terminated, truncated, infos = envs.step(np.zeros((2, L), dtype=bool))
    assert truncated.all() and not terminated.any()
    assert infos["_correct"].all() and (infos["nfe"] == 3).all()
    # Scored as any ended episode: 3 of 48 positions revealed, so no answer and no reward.
    assert not infos["correct"].any() and infos["answer"].tolist() == [None, None]
    np.testing.assert_array_equal(rewards, np.zeros(2))


def test_temperature_runs_are_reproducible_by_seed():
    def run(seed):
        envs = gym.make_vec(ARITH, num_envs=3, temperature=1.0, obs_features=["token"])
        obs, _ = envs.reset(seed=seed, options={"index": [0, 0, 0]})
        tokens = [obs["token"].copy()]
        for _ in range(5):
            obs, *_ = envs.step(np.zeros((3, L), dtype=bool))
            tokens.append(obs["token"].copy())
        return np.stack(tokens)

    first, again, other = run(0), run(0), run(1)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first[:, 0], first[:, 1])  # rows draw their own noise


def test_bad_input_fails_clearly_and_changes_nothing():
    for bad in (0, -2, 1.5, "4", True):
        with pytest.raises(ValueError, match="num_envs must be an integer >= 1"):
            gym.make_vec(ARITH, num_envs=bad)
    with pytest.raises(ValueError, match="autoreset_mode='sometimes' is not valid"):
        gym.make_vec(ARITH, num_envs=2, autoreset_mode="sometimes")
    with pytest.raises(TypeError, match=r"unknown setting\(s\) \['colour'\]"):
        gym.make_vec(ARITH, num_envs=2, colour="red")

    envs = gym.make_vec(ARITH, num_envs=3, autoreset_mode=AutoresetMode.DISABLED)
    twin = gym.make_vec(ARITH, num_envs=3, autoreset_mode=AutoresetMode.DISABLED)
    with pytest.raises(RuntimeError, match="before reset"):
        envs.step(np.zeros((3, L), dtype=bool))
    envs.reset(seed=4)
    twin.reset(seed=4)
    bad_calls = [
        (lambda: envs.step(np.zeros((2, L), dtype=bool)), r"expected shape \(3, 48\)"),
        (lambda: envs.step(np.full((3, L), 2)), "expected only 0 and 1"),
        (lambda: envs.reset(options={"index": [1, 2]}), "list of 3 problem indices"),
        (lambda: envs.reset(options={"index": [1, 2, 10**9]}), r"index\[2\] must be in"),
        (lambda: envs.reset(options={"reset_mask": [True, False]}), "reset_mask must be"),
        (lambda: envs.reset(options={"reset_mask": np.ones(3)}), "reset_mask must be a bool"),
        (lambda: envs.reset(options={"indices": [1, 2, 3]}), r"unknown key\(s\) \['indices'\]"),
        (lambda: envs.reset(seed=[1, 2]), "seed: expected None, an int or a list of 3"),
    ]
    for call, message in bad_calls:
        with pytest.raises(ValueError, match=message):
            call()
    rng = np.random.default_rng(0)
    for _ in range(5):  # the rejected calls changed nothing: both continue identically
        actions = random_actions(rng, 3, [0.3] * 3)
        a, b = envs.step(actions), twin.step(actions)
        assert_obs_match(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("module", [unmask_env, unmask_vector_env])
def test_docstring_examples_run(module):
    assert dllm_gym.ENV_IDS  # the registry is loaded for the examples
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
