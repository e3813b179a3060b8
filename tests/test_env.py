"""The registered unmasking environments: checker, determinism, equivalence with the
reference decoders, invariants, errors, wrappers and rendering."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_decoders import fast_dllm_threshold, llada_low_confidence

import dllm_gym
from dllm_gym.decoding import decode, llada_transfer_counts, threshold_rule, top_k_rule
from dllm_gym.envs import ThresholdAction, TopKAction
from dllm_gym.models.loading import EMBEDDED_MODELS
from dllm_gym.registry import read_registry
from dllm_gym.tasks import ArithTask

ARITH = "DLLMUnmask-Arith-v0"
ARITH_FULL = "DLLMUnmask-Arith-FullDiffusion-v0"
L = gym.spec(ARITH).kwargs["gen_length"]
BLOCK = gym.spec(ARITH).kwargs["block_length"]


def buildable_overrides(entry, data_files) -> dict:
    """Settings that make a registered id runnable here: the ids of LLaDA-8B on the embedded
    model, with local data for the tasks that read files."""
    if entry.settings["model"] in EMBEDDED_MODELS:
        return {}
    block = min(entry.settings["block_length"], 64)  # 32 stays semi-AR, 256 full diffusion
    overrides = {"model": "embedded", "gen_length": 64, "block_length": block}
    if entry.settings["task"] in data_files:
        overrides["data_files"] = data_files[entry.settings["task"]]
    return overrides


def test_every_registered_id_passes_check_env(task_data_files):
    entries = read_registry()
    assert {e.env_id for e in entries} >= {
        "DLLMUnmask-GSM8K-v0",
        "DLLMUnmask-GSM8K-FullDiffusion-v0",
        ARITH,
        ARITH_FULL,
        "DLLMUnmask-Arith-v1",
        "DLLMUnmask-Arith-FullDiffusion-v1",
        *(f"DLLMUnmask-{name}-{kind}"
          for name in ("MATH500", "HumanEval", "Countdown", "Sudoku")
          for kind in ("v0", "FullDiffusion-v0")),
    }  # fmt: skip
    for entry in entries:
        assert entry.env_id in gym.registry
        env = gym.make(entry.env_id, **buildable_overrides(entry, task_data_files))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_env(env.unwrapped, skip_render_check=True)
        for mode in ("ansi", "rgb_array"):
            rendered = gym.make(
                entry.env_id, render_mode=mode, **buildable_overrides(entry, task_data_files)
            )
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                check_env(rendered.unwrapped)
        env.close()


def rollout(env, seed, actions_rng, episodes=2):
    """Observations, rewards and infos of ``episodes`` episodes under seeded random actions."""
    trace = []
    obs, info = env.reset(seed=seed)
    trace.append((obs, info))
    finished = 0
    while finished < episodes:
        action = (actions_rng.random(env.action_space.n) < 0.3).astype(np.int8)
        obs, reward, terminated, truncated, info = env.step(action)
        trace.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            finished += 1
            if finished < episodes:
                trace.append(env.reset())
    return trace


def assert_same(left, right):
    assert type(left) is type(right)
    if isinstance(left, dict):
        assert left.keys() == right.keys()
        for key in left:
            assert_same(left[key], right[key])
    elif isinstance(left, (tuple, list)):
        assert len(left) == len(right)
        for a, b in zip(left, right, strict=True):
            assert_same(a, b)
    elif isinstance(left, np.ndarray):
        assert left.dtype == right.dtype and np.array_equal(left, right)
    else:
        assert left == right


@pytest.mark.parametrize("overrides", [{}, {"temperature": 1.0, "obs_features": ["kl", "token"]}])
def test_same_seed_and_actions_give_the_same_episodes(overrides):
    first = gym.make(ARITH, **overrides)
    second = gym.make(ARITH, **overrides)
    a = rollout(first, 7, np.random.default_rng(0))
    b = rollout(second, 7, np.random.default_rng(0))
    assert_same(a, b)
    # reset(seed=s) after other episodes reproduces the first episode.
    rollout(first, 123, np.random.default_rng(5))
    again = rollout(first, 7, np.random.default_rng(0))
    assert_same(a, again)


def llada_top_k_action(
    obs, block_length: int, steps_per_block: int, step_in_block: int
) -> np.ndarray:
    """Reveal the k most confident active positions, k from LLaDA's schedule."""
    k = llada_transfer_counts(block_length, steps_per_block)[step_in_block]
    active = np.flatnonzero(obs["active"])
    ranked = active[np.argsort(-obs["confidence"][active], kind="stable")]
    action = np.zeros_like(obs["active"])
    action[ranked[:k]] = 1
    return action


def play(env, index, policy):
    obs, _ = env.reset(options={"index": index})
    steps = 0
    while True:
        obs, reward, terminated, truncated, info = env.step(policy(obs, steps))
        steps += 1
        if terminated or truncated:
            return info, reward, steps


@pytest.mark.parametrize(
    ("env_id", "steps_per_block"), [(ARITH, BLOCK), (ARITH, 2), (ARITH_FULL, 16)]
)
def test_env_with_llada_schedule_matches_decode(env_id, steps_per_block):
    env = gym.make(env_id)
    s = env.unwrapped.settings
    lm, task = env.unwrapped.model, ArithTask()
    indices = [0, 1, 2, 3]
    prompts = [task.format_prompt(task.problems("test")[i].question, lm.tokenizer) for i in indices]
    reference = decode(
        lm,
        prompts,
        top_k_rule(steps_per_block),
        gen_length=s.gen_length,
        block_length=s.block_length,
    )
    for row, index in enumerate(indices):
        info, _, steps = play(env, index, llada_policy(s.block_length, steps_per_block))
        assert info["text"] == lm.decode_generation(reference.generations[row])
        assert np.array_equal(info["unmask_step"], reference.unmask_step[row].numpy())
        assert info["nfe"] == steps == reference.nfe[row]


def llada_policy(block_length: int, steps_per_block: int):
    return lambda obs, step: llada_top_k_action(
        obs, block_length, steps_per_block, step % steps_per_block
    )


@pytest.mark.parametrize(
    ("gen_length", "block_length", "steps"), [(16, 4, 8), (16, 16, 4), (12, 4, 12)]
)
def test_env_with_llada_schedule_matches_the_reference_loop(
    tiny_model_dir, gen_length, block_length, steps
):
    """Against an independent transcription of LLaDA's generate() on a random model, whose
    varied predictions make every choice of the schedule visible."""
    env = gym.make(
        ARITH, model=str(tiny_model_dir), gen_length=gen_length, block_length=block_length
    )
    lm, task = env.unwrapped.model, ArithTask()
    steps_per_block = steps // (gen_length // block_length)
    for index in range(3):
        prompt = task.format_prompt(task.problems("test")[index].question, lm.tokenizer)
        expected, order = llada_low_confidence(lm, prompt, steps, gen_length, block_length)
        info, _, taken = play(env, index, llada_policy(block_length, steps_per_block))
        generation = env.unwrapped._state.generation[0]
        assert torch.equal(generation, expected)
        assert np.array_equal(info["unmask_step"], order.numpy())
        assert taken == info["nfe"] == steps


@pytest.mark.parametrize("threshold", [0.3, 0.5])
def test_threshold_wrapper_matches_decode_and_the_reference_loop(tiny_model_dir, threshold):
    env = ThresholdAction(gym.make(ARITH, model=str(tiny_model_dir), gen_length=16, block_length=8))
    s = env.unwrapped.settings
    lm, task = env.unwrapped.model, ArithTask()
    nfes = []
    for index in range(3):
        prompt = task.format_prompt(task.problems("test")[index].question, lm.tokenizer)
        core = decode(lm, [prompt], threshold_rule(threshold), gen_length=16, block_length=8)
        expected, order, nfe = fast_dllm_threshold(lm, prompt, threshold, 16, 8)
        info, _, _ = play(env, index, lambda obs, step: np.array([threshold], dtype=np.float32))
        assert torch.equal(env.unwrapped._state.generation[0], expected)
        assert torch.equal(core.generations[0], expected)
        assert np.array_equal(info["unmask_step"], order.numpy())
        assert info["nfe"] == nfe == core.nfe[0]
        nfes.append(nfe)
    assert min(nfes) > 2 and max(nfes) < s.gen_length  # some steps revealed several positions


def test_threshold_wrapper_on_the_embedded_model_matches_decode():
    env = ThresholdAction(gym.make(ARITH))
    s = env.unwrapped.settings
    lm, task = env.unwrapped.model, ArithTask()
    prompt = task.format_prompt(task.problems("test")[5].question, lm.tokenizer)
    reference = decode(
        lm, [prompt], threshold_rule(0.7), gen_length=s.gen_length, block_length=s.block_length
    )
    info, _, _ = play(env, 5, lambda obs, step: np.array([0.7], dtype=np.float32))
    assert info["text"] == lm.decode_generation(reference.generations[0])
    assert np.array_equal(info["unmask_step"], reference.unmask_step[0].numpy())
    assert info["nfe"] == reference.nfe[0]


def test_top_k_wrapper_reveals_k_per_step():
    env = TopKAction(gym.make(ARITH))
    assert env.action_space == gym.spaces.Discrete(env.unwrapped.settings.block_length, start=1)
    obs, _ = env.reset(seed=0)
    before = obs["mask"].sum()
    obs, *_ = env.step(3)
    assert before - obs["mask"].sum() == 3
    with pytest.raises(ValueError, match="count"):
        env.step(0)


def test_gymnasium_wrappers_work():
    env = gym.wrappers.RecordEpisodeStatistics(
        gym.wrappers.TimeLimit(
            gym.wrappers.FlattenObservation(gym.make(ARITH)), max_episode_steps=5
        )
    )
    obs, _ = env.reset(seed=0)
    assert obs.ndim == 1 and obs.shape == env.observation_space.shape
    done, info = False, {}
    while not done:
        obs, _, terminated, truncated, info = env.step(np.zeros(L, dtype=np.int8))
        done = terminated or truncated
    assert info["episode"]["l"] == 5  # TimeLimit cut the one-token-per-step episode short


_ENVS: dict[str, gym.Env] = {}


def env_with_empty_action(empty_action: str) -> gym.Env:
    """One env per setting for the whole module: examples reset it, as a user would."""
    if empty_action not in _ENVS:
        _ENVS[empty_action] = gym.make(ARITH, empty_action=empty_action)
    return _ENVS[empty_action]


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), density=st.floats(0.0, 1.0), noop=st.booleans())
def test_invariants_under_random_actions(seed, density, noop):
    env = env_with_empty_action("noop" if noop else "force_top1")
    length = env.unwrapped.settings.gen_length
    block = env.unwrapped.settings.block_length
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    nfe, steps = info["nfe"], 0
    while True:
        mask = obs["mask"]
        active = obs["active"].astype(bool)
        assert not (active & ~mask.astype(bool)).any()  # active is a subset of mask
        blocks = np.flatnonzero(active) // block
        assert len(set(blocks.tolist())) <= 1  # and inside one block
        action = (rng.random(length) < density).astype(np.int8)
        obs, reward, terminated, truncated, info = env.step(action)
        steps += 1
        assert (obs["mask"] <= mask).all()  # mask only loses ones
        if terminated or truncated:
            assert 0.0 <= reward <= 1.0
            assert info["nfe"] == steps  # a finished episode of n steps has NFE n
            break
        assert reward == 0.0
        assert info["nfe"] == nfe + 1
        nfe = info["nfe"]
    if not noop:
        assert terminated and steps <= length
    assert info["nfe"] == env.unwrapped._state.nfe[0] == steps


def test_rewards():
    env = gym.make(ARITH, alpha=1.0)
    info, reward, steps = play(env, 0, lambda obs, step: obs["active"])  # a whole block per step
    length = env.unwrapped.settings.gen_length
    assert reward == pytest.approx(float(info["correct"]) * (length - steps + 1) / length)
    assert info["correct"]  # problem 0 is solved this way: the reward's speed term shows
    additive = gym.make(ARITH, reward="additive", alpha=0.5)
    info, reward, steps = play(additive, 0, lambda obs, step: obs["active"])
    assert reward == pytest.approx(float(info["correct"]) - 0.5 * steps / length)
    assert set(info) >= {
        "nfe",
        "correct",
        "answer",
        "reference",
        "text",
        "tokens_per_nfe",
        "unmask_step",
    }
    assert info["tokens_per_nfe"] == pytest.approx(length / steps)
    # A wrong answer earns nothing (multiplicative) or only the NFE penalty (additive): cut
    # after 2 forward passes of one position each, the answer is missing.
    for kind, expected in (("multiplicative", 0.0), ("additive", -0.5 * 2 / length)):
        cut = gym.make(ARITH, reward=kind, alpha=0.5, max_nfe=2)
        nothing = lambda obs, step: np.zeros_like(obs["active"])  # noqa: E731
        cut_info, cut_reward, cut_steps = play(cut, 0, nothing)
        assert not cut_info["correct"] and cut_info["nfe"] == 2 and cut_steps == 2
        assert cut_reward == pytest.approx(expected)


def test_noop_costs_a_forward_pass_and_truncates_at_the_cap():
    """With a cap of 3 forward passes the episode ends after 3 steps, the last one using the
    third forward's predictions; a no-op step still costs its forward pass."""
    env = gym.make(ARITH, empty_action="noop", max_nfe=3)
    obs, _ = env.reset(seed=0)
    nothing = np.zeros(L, dtype=np.int8)
    obs2, reward, terminated, truncated, info = env.step(nothing)
    assert info["nfe"] == 2 and np.array_equal(obs2["mask"], obs["mask"]) and reward == 0.0
    assert not (terminated or truncated)
    _, reward, terminated, truncated, info = env.step(nothing)
    assert info["nfe"] == 3 and not (terminated or truncated)
    _, reward, terminated, truncated, info = env.step(nothing)
    assert truncated and not terminated and info["nfe"] == 3 and reward == 0.0
    assert (info["unmask_step"] == -1).all() and info["tokens_per_nfe"] == 0.0


def test_bad_actions_and_calls_leave_the_env_unchanged():
    env = gym.make(ARITH).unwrapped
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(np.zeros(L, dtype=np.int8))
    env.reset(seed=0)
    snapshot = (env._state.tokens.clone(), env._state.nfe.clone())
    for bad, message in [
        (np.zeros(31, dtype=np.int8), "expected shape"),
        (np.array(["1"] * L), "dtype"),
        (np.full(L, 2, dtype=np.int8), "only 0 and 1"),
        (np.full(L, 0.5, dtype=np.float32), "only 0 and 1"),
        (np.full(L, np.nan), "only 0 and 1"),
    ]:
        with pytest.raises(ValueError, match=message):
            env.step(bad)
        assert torch.equal(env._state.tokens, snapshot[0]) and torch.equal(
            env._state.nfe, snapshot[1]
        )
    done = False
    while not done:
        *_, terminated, truncated, _ = env.step(np.ones(L, dtype=np.int8))
        done = terminated or truncated
    with pytest.raises(RuntimeError, match="after the episode ended"):
        env.step(np.ones(L, dtype=np.int8))
    with pytest.raises(ValueError, match=r"index must be in \[0, 1000\), got 1000000000"):
        env.reset(options={"index": 10**9})
    with pytest.raises(ValueError, match="index must be an integer"):
        env.reset(options={"index": 1.5})


def test_overrides_are_validated_at_construction():
    with pytest.raises(TypeError, match=r"unknown setting\(s\) \['gen_lenght'\].*'gen_length'"):
        gym.make(ARITH, gen_lenght=64)
    with pytest.raises(ValueError, match=r"reward='sparse' is not valid; expected one of"):
        gym.make(ARITH, reward="sparse")
    with pytest.raises(ValueError, match=f"block_length=5 does not divide gen_length={L}"):
        gym.make(ARITH, block_length=5)
    with pytest.raises(ValueError, match="obs_features"):
        gym.make(ARITH, obs_features=["confidance"])
    with pytest.raises(ValueError, match="empty_action"):
        gym.make(ARITH, empty_action="skip")
    with pytest.raises(ValueError, match="alpha"):
        gym.make(ARITH, alpha=-1)
    with pytest.raises(ValueError, match="model='embeded'"):
        gym.make(ARITH, model="embeded")
    with (
        pytest.raises(ValueError, match="render_mode='video' is not valid"),
        pytest.warns(UserWarning),
    ):
        gym.make(ARITH, render_mode="video")  # Gymnasium warns, the env refuses


def test_rendering():
    env = gym.make(ARITH, render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert "Prompt:" in text and text.count("░") == L and "[ ░" in text and "NFE 1" in text
    env.step(env.unwrapped.observation_space["active"].sample() * 0)
    text = env.render()
    assert text.count("░") == L - 1 and "NFE 2" in text
    image_env = gym.make(ARITH, render_mode="rgb_array")
    obs, _ = image_env.reset(seed=0)
    image_env.step(obs["active"])
    image = image_env.render()
    assert image.dtype == np.uint8 and image.shape == (L * 6, L * 6, 3)
    # The first block was revealed in step 1: its cells of row 1 are dark, the others light.
    assert (image[:6, : BLOCK * 6] < 180).all() and (image[:6, BLOCK * 6 :] > 180).all()


def test_import_registers_every_id_of_the_registry_with_both_entry_points():
    for entry in read_registry():
        spec = gym.spec(entry.env_id)
        assert spec.entry_point == "dllm_gym.envs.unmask_env:UnmaskEnv"
        assert spec.vector_entry_point == "dllm_gym.envs.vector_entry:make_vector_env"
        assert spec.kwargs == entry.settings and spec.nondeterministic == entry.nondeterministic
    env = gym.make(ARITH)
    assert type(env.unwrapped) is dllm_gym.UnmaskEnv
    env.close()


@pytest.mark.expensive
def test_the_wheel_ships_the_registry_of_the_repository(tmp_path):
    """The registry at the top of the repository is the one a built wheel carries."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("dllm_gym-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("dllm_gym/envs_registry.yaml")
        names = set(archive.namelist())
    assert shipped == (root / "envs_registry.yaml").read_bytes()
    for model in ("embedded", "embedded_v1"):
        assert f"dllm_gym/models/{model}/model.safetensors" in names
        assert f"dllm_gym/models/{model}/tokenizer.json" in names


@pytest.mark.parametrize(
    ("env_id", "scorer"),
    [
        ("DLLMUnmask-MATH500-v0", {"math-verify", "normalized-string"}),
        ("DLLMUnmask-HumanEval-v0", {"unit-tests"}),
        ("DLLMUnmask-Countdown-v0", {"exact-expression"}),
        ("DLLMUnmask-Sudoku-v0", {"sudoku-rules"}),
        (ARITH, {"number"}),
    ],
)
def test_an_episode_of_each_task_ends_with_its_scorer(task_data_files, env_id, scorer):
    entry = next(e for e in read_registry() if e.env_id == env_id)
    env = gym.make(env_id, **buildable_overrides(entry, task_data_files))
    obs, _ = env.reset(seed=0)
    terminated = truncated = False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(obs["active"])  # a block a step
    assert info["scorer"] in scorer
    assert isinstance(info["correct"], bool) and (reward > 0) == info["correct"]
    env.close()
