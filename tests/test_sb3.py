"""The Stable-Baselines3 adapter: SB3's VecEnv contract on the native vector env, and PPO."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

import dllm_gym  # noqa: F401  (registers the ids)
from agents.sb3 import SB3VecEnv

ARITH = "DLLMUnmask-Arith-v0"
L = gym.spec(ARITH).kwargs["gen_length"]


def test_adapter_follows_sb3_conventions():
    venv = SB3VecEnv(ARITH, num_envs=3)
    reference = gym.make_vec(ARITH, num_envs=3, autoreset_mode=AutoresetMode.SAME_STEP)
    venv.seed(7)
    obs = venv.reset()
    expected, _ = reference.reset(seed=[7, 8, 9])
    np.testing.assert_array_equal(obs["confidence"], expected["confidence"])
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(60):
        actions = (rng.random((3, L)) < 0.3).astype(np.float32)  # SB3 hands over floats
        obs, rewards, dones, infos = venv.step(actions)
        ref_obs, ref_rewards, terminated, truncated, ref_infos = reference.step(actions)
        np.testing.assert_array_equal(dones, terminated | truncated)
        np.testing.assert_allclose(rewards, ref_rewards.astype(np.float32))
        np.testing.assert_array_equal(obs["mask"], ref_obs["mask"])
        assert isinstance(infos, list) and len(infos) == 3
        for row in np.flatnonzero(dones):
            info = infos[row]
            final = ref_infos["final_obs"][row]
            np.testing.assert_array_equal(info["terminal_observation"]["mask"], final["mask"])
            assert info["TimeLimit.truncated"] == bool(truncated[row] and not terminated[row])
            assert info["correct"] == ref_infos["final_info"]["correct"][row]
            ended += 1
        for row in np.flatnonzero(~dones):
            assert "terminal_observation" not in infos[row]
    assert ended >= 3
    assert venv.get_attr("render_mode") == [None, None, None]


def test_adapter_rejects_other_autoreset_modes():
    with pytest.raises(ValueError, match=r"autoreset_mode=AutoresetMode\.SAME_STEP"):
        SB3VecEnv(gym.make_vec(ARITH, num_envs=2))


class EpisodeEnds(BaseCallback):
    """Keeps the infos of every finished episode seen during training."""

    def __init__(self):
        super().__init__()
        self.ends: list[dict] = []

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
            if done:
                self.ends.append(info)
        return True


def test_ppo_trains_on_the_vector_env_and_vec_monitor_reports_the_envs_rewards():
    venv = VecMonitor(SB3VecEnv(ARITH, num_envs=8))
    model = PPO(
        "MultiInputPolicy", venv, n_steps=32, batch_size=128, n_epochs=2, seed=0, device="cpu"
    )
    ends = EpisodeEnds()
    model.learn(total_timesteps=2048, callback=ends)
    assert model.num_timesteps >= 2048
    assert len(ends.ends) >= 20
    for info in ends.ends:
        episode = info["episode"]  # written by VecMonitor
        # The whole return is the last step's reward: correct * ((L - NFE + 1) / L).
        nfe = int(info["nfe"])
        expected = float(info["correct"]) * (L - min(nfe, L) + 1) / L
        assert episode["r"] == pytest.approx(expected, abs=1e-5)
        assert episode["l"] == nfe  # force_top1: one forward pass per step
    assert len(model.ep_info_buffer) > 0
