"""agents.rollout: the one episode driver, against single environments played by hand."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import dllm_gym  # noqa: F401  (registers the ids)
from agents.heuristics import make_policy
from agents.rollout import run_episodes

ARITH = "DLLMUnmask-Arith-v0"
SETTINGS = {"gen_length": 16, "block_length": 8}


def play_alone(index: int, policy) -> tuple[float, bool, int]:
    """Problem ``index`` played on a single env: final reward, correct, NFE."""
    env = gym.make(ARITH, **SETTINGS)
    obs, _ = env.reset(options={"index": index})
    while True:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        if terminated or truncated:
            return float(reward), bool(info["correct"]), int(info["nfe"])


def disabled(rows: int) -> gym.vector.VectorEnv:
    return gym.make_vec(ARITH, num_envs=rows, autoreset_mode=AutoresetMode.DISABLED, **SETTINGS)


def test_refilled_rows_play_every_problem_once_as_alone():
    policy = make_policy("threshold", tau=0.7)
    policy.configure(**SETTINGS)
    envs = disabled(3)
    indices = [5, 0, 9, 2, 7, 11, 3]
    episodes = list(run_episodes(envs, lambda obs, _: policy(obs), indices, seed=0))
    envs.close()
    assert sorted(e.index for e in episodes) == sorted(indices)
    # Rows are refilled: 7 episodes on 3 rows, each row used more than once.
    assert {e.row for e in episodes} == {0, 1, 2}
    for episode in episodes:
        reward, correct, nfe = play_alone(episode.index, policy)
        assert (episode.reward, bool(episode.info["correct"]), int(episode.info["nfe"])) == (
            pytest.approx(reward), correct, nfe,
        )  # fmt: skip
        assert episode.seconds >= 0 and not episode.truncated


def test_one_episode_per_row_and_the_steps_seen():
    policy = make_policy("top_k", steps_per_block=4)
    policy.configure(**SETTINGS)
    envs = disabled(2)
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    def record(before, actions, after, running):
        seen.append((running, before["mask"].sum(1) - after["mask"].sum(1)))

    episodes = list(
        run_episodes(envs, lambda obs, _: policy(obs), [4, 6], refill=False, on_step=record)
    )
    envs.close()
    assert sorted((e.row, e.index) for e in episodes) == [(0, 4), (1, 6)]
    # top_k with 4 steps per block of 8: 2 positions a step, 8 steps for 16 positions.
    assert len(seen) == 8
    assert all(running.all() and (revealed == 2).all() for running, revealed in seen)
    assert all(int(e.info["nfe"]) == 8 for e in episodes)


def test_problems_drawn_by_the_env_and_bad_index_lists():
    policy = make_policy("threshold", tau=0.9)
    policy.configure(**SETTINGS)
    envs = disabled(2)
    episodes = list(run_episodes(envs, lambda obs, _: policy(obs), None, refill=False, seed=3))
    assert len(episodes) == 2 and all(e.index >= 0 for e in episodes)
    with pytest.raises(ValueError, match="indices: at least 2 problems for 2 rows, got 1"):
        next(run_episodes(envs, lambda obs, _: policy(obs), [1]))
    with pytest.raises(ValueError, match="indices: exactly 2 problems for 2 rows, got 3"):
        next(run_episodes(envs, lambda obs, _: policy(obs), [1, 2, 3], refill=False))
    envs.close()
