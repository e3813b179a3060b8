"""The Stable-Baselines3 adapter: SB3's VecEnv contract on the native vector env, PPO, and the
learned policy's network as an SB3 policy and features extractor."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

import dllm_gym  # noqa: F401  (registers the ids)
from agents.policy import PolicyConfig, UnmaskingPolicyNet, load_policy, log_prob, save_policy
from agents.sb3 import (
    INACTIVE_LOGIT,
    SB3VecEnv,
    UnmaskingActorCriticPolicy,
    UnmaskingFeaturesExtractor,
)

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


def test_each_row_resets_with_its_own_options():
    """SB3's set_options: one dict per sub-env; rows without an index draw their problem."""
    venv = SB3VecEnv(ARITH, num_envs=3)
    venv.seed(5)
    venv.set_options([{"index": 4}, {}, {"index": 11}])
    venv.reset()
    problems = [info["problem_index"] for info in venv.reset_infos]
    assert problems[0] == 4 and problems[2] == 11
    _, infos = gym.make_vec(ARITH, num_envs=3).reset(seed=[5, 6, 7])
    assert problems[1] == infos["problem_index"][1]  # as a reset without options draws it
    venv.set_options({"index": 2})  # one dict: the same options for every row
    venv.reset()
    assert [info["problem_index"] for info in venv.reset_infos] == [2, 2, 2]
    venv.reset()  # options apply to the next reset only, as in SB3
    assert len({info["problem_index"] for info in venv.reset_infos}) > 1
    venv.set_options([{}, {"problem": 3}, {}])
    with pytest.raises(ValueError, match=r"sub-env 1 has unknown reset option\(s\) \['problem'\]"):
        venv.reset()


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


@pytest.mark.expensive
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


# ------------------------------------------------------------------------------ the policy network
SMALL = PolicyConfig(d_model=16, num_heads=2, ff_dim=32, progress_frequencies=8)


def _randomise(net: UnmaskingPolicyNet, seed: int = 0) -> UnmaskingPolicyNet:
    """Random weights everywhere (the zero-initialised adaLN layers included), so the block
    and the conditioning matter."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
    return net


@pytest.fixture(scope="module")
def observations() -> dict[str, np.ndarray]:
    """Vector-env observations at varied points of decoding (masks, blocks, progress)."""
    venv = SB3VecEnv(ARITH, num_envs=4)
    venv.seed(3)
    rows = [venv.reset()]
    rng = np.random.default_rng(0)
    for _ in range(5):
        rows.append(venv.step((rng.random((4, L)) < 0.3).astype(np.float32))[0])
    venv.close()
    return {key: np.concatenate([row[key] for row in rows]) for key in rows[0]}


def _ppo(venv, **policy_kwargs) -> PPO:
    policy_kwargs.setdefault("features_extractor_kwargs", {"config": SMALL})
    return PPO(
        UnmaskingActorCriticPolicy,
        venv,
        n_steps=8,
        batch_size=16,
        n_epochs=2,
        seed=0,
        device="cpu",
        policy_kwargs=policy_kwargs,
    )


def _net_logits(net: UnmaskingPolicyNet, obs: dict[str, np.ndarray]) -> torch.Tensor:
    with torch.no_grad():
        return net(
            torch.as_tensor(obs["confidence"]),
            torch.as_tensor(obs["mask"]).bool(),
            torch.as_tensor(obs["progress"]),
        )


def _distribution(model: PPO, obs: dict[str, np.ndarray]):
    tensors, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        return model.policy.get_distribution(tensors).distribution


def test_features_extractor_shape_and_layout(observations):
    space = SB3VecEnv(ARITH, num_envs=1).observation_space
    extractor = UnmaskingFeaturesExtractor(space, config=SMALL)
    _randomise(extractor.net)
    assert extractor.features_dim == L + SMALL.d_model
    tensors = {
        key: torch.as_tensor(value, dtype=torch.float32) for key, value in observations.items()
    }
    with torch.no_grad():
        features = extractor(tensors)
    rows = len(observations["mask"])
    assert features.shape == (rows, L + SMALL.d_model)
    torch.testing.assert_close(features[:, :L], _net_logits(extractor.net, observations))
    with torch.no_grad():
        _, per_position = extractor.logits_and_features(tensors)
        assert per_position.shape == (rows, L, SMALL.d_model)
        # The first L features are what the head makes of the per-position features.
        torch.testing.assert_close(features[:, :L], extractor.net.head(per_position).squeeze(-1))
    torch.testing.assert_close(features[:, L:], per_position.mean(dim=1))
    with pytest.raises(ValueError, match="Dict observation space"):
        UnmaskingFeaturesExtractor(gym.spaces.Box(0, 1, (L,)), config=SMALL)


def test_policy_logits_are_the_networks_logits(observations):
    model = _ppo(SB3VecEnv(ARITH, num_envs=2))
    net = _randomise(model.policy.unmasking_net)
    assert model.policy.action_net(torch.ones(1, L)).equal(torch.ones(1, L))  # no Linear
    distribution = _distribution(model, observations)
    expected = _net_logits(net, observations)
    assert not torch.allclose(expected, expected[:, :1])  # the positions differ
    torch.testing.assert_close(distribution.logits, expected)
    # mask_inactive: the same logits on the active positions, and the joint log-likelihood of
    # agents.policy.log_prob (inactive positions ignored) for actions on active positions.
    masked = _ppo(
        SB3VecEnv(ARITH, num_envs=2),
        features_extractor_kwargs={"config": SMALL, "mask_inactive": True},
    )
    masked.policy.unmasking_net.load_state_dict(net.state_dict())
    masked_distribution = _distribution(masked, observations)
    active = torch.as_tensor(observations["active"]).bool()
    torch.testing.assert_close(
        masked_distribution.logits, torch.where(active, expected, torch.tensor(INACTIVE_LOGIT))
    )
    actions = (torch.rand(active.shape, generator=torch.Generator().manual_seed(0)) < 0.5) & active
    torch.testing.assert_close(
        masked_distribution.log_prob(actions.float()).sum(-1), log_prob(expected, active, actions)
    )


def test_policy_keeps_the_networks_initialisation_and_checks_its_arguments():
    venv = SB3VecEnv(ARITH, num_envs=2)
    model = _ppo(venv)  # ortho_init=True, SB3's default
    net = model.policy.unmasking_net
    assert net.head.bias.item() == SMALL.output_bias
    assert not net.final_modulation[1].weight.any() and not net.block.adaLN_modulation[1].bias.any()
    assert model.policy.mlp_extractor.latent_dim_vf == 64
    assert isinstance(model.policy.action_net, torch.nn.Identity) and model.policy.ortho_init
    optimized = {id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in model.policy.parameters()}
    with pytest.raises(ValueError, match=r"net_arch\['pi'\] must be empty"):
        _ppo(venv, net_arch={"pi": [64], "vf": [64]})
    with pytest.raises(ValueError, match="features_extractor_class"):
        _ppo(venv, features_extractor_class=torch.nn.Identity)
    # The extractor in an ordinary SB3 policy (a Linear over its features maps to the action).
    generic = PPO(
        "MultiInputPolicy",
        venv,
        n_steps=8,
        batch_size=16,
        device="cpu",
        policy_kwargs={
            "features_extractor_class": UnmaskingFeaturesExtractor,
            "features_extractor_kwargs": {"config": SMALL},
            "ortho_init": False,
        },
    )
    assert generic.policy.features_extractor.features_dim == L + SMALL.d_model
    assert generic.policy.features_extractor.net.head.bias.item() == SMALL.output_bias


def test_ppo_with_the_unmasking_policy_learns():
    venv = VecMonitor(SB3VecEnv(ARITH, num_envs=4))
    model = _ppo(venv, share_features_extractor=False)  # the critic gets its own network
    policy = model.policy
    assert policy.unmasking_net is policy.pi_features_extractor.net
    assert policy.vf_features_extractor.net is not policy.unmasking_net
    watched = {
        "actor's output bias": policy.pi_features_extractor.net.head.bias,
        "actor's block": policy.pi_features_extractor.net.block.mlp[0].weight,
        "critic's block": policy.vf_features_extractor.net.block.mlp[0].weight,
        "value head": policy.value_net.weight,
    }
    before = {name: p.detach().clone() for name, p in watched.items()}
    model.learn(total_timesteps=64)
    assert model.num_timesteps >= 64
    assert all(p.isfinite().all() for p in policy.parameters())
    unchanged = [name for name, p in watched.items() if p.detach().equal(before[name])]
    assert not unchanged


def test_policy_starts_from_a_saved_network_and_saves_back(tmp_path, observations):
    torch.manual_seed(1)
    net = _randomise(UnmaskingPolicyNet(SMALL), seed=1)
    save_policy(net, tmp_path / "grpo")
    model = _ppo(
        SB3VecEnv(ARITH, num_envs=2), features_extractor_kwargs={"checkpoint": tmp_path / "grpo"}
    )
    expected = _net_logits(net, observations)
    torch.testing.assert_close(_distribution(model, observations).logits, expected)
    model.learn(total_timesteps=16)  # fine-tune, then back to an UnmaskingPolicyNet checkpoint
    save_policy(model.policy.unmasking_net, tmp_path / "ppo")
    reloaded = load_policy(tmp_path / "ppo")
    torch.testing.assert_close(
        _net_logits(reloaded, observations), _distribution(model, observations).logits
    )
    with pytest.raises(ValueError, match="differs from the config of checkpoint"):
        _ppo(
            SB3VecEnv(ARITH, num_envs=2),
            features_extractor_kwargs={"checkpoint": tmp_path / "grpo", "config": PolicyConfig()},
        )
