"""The key/value cache in the environments: settings, counters, episodes equal to a fresh
env's, the vector env equal to single envs, one slab per shape, bad input."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import dllm_gym  # noqa: F401  (registers the ids)
from dllm_gym.decoding import decode, top_k_rule
from dllm_gym.registry import read_registry

ARITH = "DLLMUnmask-Arith-v0"
L = gym.spec(ARITH).kwargs["gen_length"]
BLOCK = gym.spec(ARITH).kwargs["block_length"]


def play(env, index, actions):
    """One episode of ``env`` on problem ``index`` with the given actions (in turn; the
    last one repeats): its final info."""
    env.reset(options={"index": index})
    for step in range(L):
        _, _, terminated, truncated, info = env.step(actions[min(step, len(actions) - 1)])
        if terminated or truncated:
            return info
    raise AssertionError("the episode did not end within L steps")


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_an_episode_decodes_as_the_cached_core_and_counts_its_forwards(mode):
    """One token a step: the env reveals what ``decode`` with the same cache reveals, with
    one full forward per block and partial ones otherwise."""
    env = gym.make(ARITH, cache=mode)
    info = play(env, 3, [np.zeros(L, dtype=bool)])  # force_top1: the top-1 rule
    lm = env.unwrapped.model
    prompt = env.unwrapped.workload.prompts([3])
    out = decode(lm, prompt, top_k_rule(BLOCK), gen_length=L, block_length=BLOCK, cache=mode)
    assert info["text"] == lm.decode_generation(out.generations[0])
    assert (info["nfe"], info["full_forwards"], info["window_forwards"]) == (L, L // BLOCK, L - 3)
    assert info["cache"] == mode
    uncached = play(gym.make(ARITH), 3, [np.zeros(L, dtype=bool)])
    assert (uncached["full_forwards"], uncached["window_forwards"]) == (L, 0)
    assert uncached["cache"] == "none"


def test_cache_refresh_adds_full_forwards_in_full_diffusion():
    env = gym.make(ARITH, cache="dual", block_length=L, cache_refresh=4)
    info = play(env, 0, [np.zeros(L, dtype=bool)])
    # F W W W W F W W W W ...: a full forward, then one after every 4 partial ones.
    assert info["full_forwards"] == -(-L // 5)
    assert info["full_forwards"] + info["window_forwards"] == info["nfe"] == L


def test_a_reset_never_reuses_the_last_episodes_cache():
    """Episodes run one after another in one env (which keeps its cache slab) are those of
    a brand-new env."""
    rng = np.random.default_rng(0)
    actions = list(rng.random((L, L)) < 0.15)
    reused = gym.make(ARITH, cache="prefix")
    for index in (5, 9, 5):
        fresh = play(gym.make(ARITH, cache="prefix"), index, actions)
        again = play(reused, index, actions)
        assert again["text"] == fresh["text"]
        assert again["nfe"] == fresh["nfe"]


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_vector_env_episodes_with_a_cache_are_those_of_fresh_single_envs(mode):
    """Rows in different blocks, autoreset mid-run: every finished episode of the vector
    env equals the same problem and actions replayed in a new single env."""
    num_envs, densities = 4, np.array([0.0, 0.1, 0.3, 0.8])
    envs = gym.make_vec(
        ARITH, num_envs=num_envs, autoreset_mode=AutoresetMode.SAME_STEP, cache=mode
    )
    _, infos = envs.reset(seed=1)
    problem = infos["problem_index"].copy()
    history: list[list[np.ndarray]] = [[] for _ in range(num_envs)]
    episodes = []
    rng = np.random.default_rng(1)
    for _ in range(70):
        actions = rng.random((num_envs, L)) < densities[:, None]
        _, _, terminated, truncated, infos = envs.step(actions)
        for row in range(num_envs):
            history[row].append(actions[row])
        for row in np.flatnonzero(terminated | truncated):
            final = infos["final_info"]
            counts = (final["nfe"][row], final["full_forwards"][row], final["window_forwards"][row])
            episodes.append((problem[row], history[row], final["text"][row], *counts))
            problem[row], history[row] = infos["problem_index"][row], []
    assert len(episodes) >= 8
    assert any(e[5] > 0 for e in episodes) and any(e[4] > 1 for e in episodes)
    for index, actions, text, nfe, full, window in episodes:
        replay = play(gym.make(ARITH, cache=mode), index, actions)
        assert replay["text"] == text
        assert (replay["nfe"], replay["full_forwards"], replay["window_forwards"]) == (
            nfe, full, window,
        )  # fmt: skip


def test_the_vector_env_keeps_one_cache_slab_per_shape():
    """The slab is replaced only when the buffer widens (a longer prompt arrives): not per
    step, per episode or per full reset on prompts of the same width."""
    envs = gym.make_vec(ARITH, num_envs=4, cache="dual")
    envs.reset(seed=0, options={"index": [0, 1, 2, 3]})
    state = envs.unwrapped._state
    slab, width, replaced = state._kv.slab, state.tokens.shape[1], 0
    rng = np.random.default_rng(0)
    for _ in range(150):
        envs.step(rng.random((4, L)) < 0.3)
        state = envs.unwrapped._state
        if state._kv.slab is not slab:
            assert state.tokens.shape[1] > width, "a new slab without a new width"
            replaced += 1
        slab, width = state._kv.slab, state.tokens.shape[1]
        assert slab.shape[4] == width and slab.shape[2] == 4
    assert replaced <= 3
    envs.reset(seed=0, options={"index": [0, 1, 2, 3]})
    first = envs.unwrapped._state._kv.slab
    envs.reset(seed=5, options={"index": [0, 1, 2, 3]})
    envs.step(np.zeros((4, L), dtype=bool))
    assert envs.unwrapped._state._kv.slab is first


def test_cache_settings_are_validated_by_name():
    with pytest.raises(ValueError, match=r"cache='full' is not valid; expected one of"):
        gym.make(ARITH, cache="full")
    with pytest.raises(ValueError, match="cache_refresh must be an integer >= 0"):
        gym.make_vec(ARITH, num_envs=2, cache="dual", cache_refresh=-2)
    with pytest.raises(ValueError, match="cache_refresh must be an integer >= 0"):
        gym.make(ARITH, cache="dual", cache_refresh=1.5)
    with pytest.raises(ValueError, match=r"cache='prefix' needs the native backend"):
        gym.make(ARITH, cache="prefix", backend="remote")
    registry = """
environments:
  Cached-v0: {task: arith, model: embedded, gen_length: 48, block_length: 16, cache: dual}
  Broken-v0: {task: arith, model: embedded, gen_length: 48, block_length: 16, cache: kv}
"""
    with pytest.raises(ValueError, match=r"Broken-v0: cache='kv' is not valid"):
        read_registry(registry)
    (entry,) = read_registry(registry.split("  Broken")[0])
    assert entry.settings["cache"] == "dual"


def test_a_model_that_cannot_hold_a_cache_is_refused_before_any_episode(monkeypatch):
    """The auto backend may resolve to the published code: the env checks the loaded model."""
    from dllm_gym.envs import core
    from dllm_gym.envs.settings import EnvSettings
    from dllm_gym.models.loading import DiffusionLM

    monkeypatch.setattr(DiffusionLM, "supports_cache", property(lambda self: False))
    with pytest.raises(ValueError, match=r"cache: the 'native' backend of .* cannot hold"):
        core.Workload.build(EnvSettings(cache="dual"))
