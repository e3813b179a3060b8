"""Stable-Baselines3 on a native Gymnasium vector environment, one batched forward per step.

SB3's ``DummyVecEnv`` would step ``N`` single environments in turn (``N`` forward passes of
the model per step); :class:`SB3VecEnv` hands SB3 the registered vector environment instead,
in Gymnasium's ``SAME_STEP`` autoreset mode, and translates its outputs into SB3's: ``dones =
terminated | truncated``, a list of per-env info dicts with ``terminal_observation`` and
``TimeLimit.truncated`` where an episode ended.

    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor

    import dllm_gym  # registers the ids
    from agents.sb3 import SB3VecEnv

    venv = VecMonitor(SB3VecEnv("DLLMUnmask-Arith-v0", num_envs=16))
    PPO("MultiInputPolicy", venv, n_steps=64).learn(4096)

The learned policy's network as an SB3 policy: :class:`UnmaskingActorCriticPolicy`, whose
Bernoulli logits are :class:`agents.policy.UnmaskingPolicyNet`'s (one per position), and
:class:`UnmaskingFeaturesExtractor`, that network as a features extractor for any SB3 policy:

    from agents.sb3 import UnmaskingActorCriticPolicy

    model = PPO(UnmaskingActorCriticPolicy, venv, n_steps=64)
    # Bernoulli on the active positions only, starting from a GRPO checkpoint:
    extractor = {"mask_inactive": True, "checkpoint": "runs/grpo/policy"}
    kwargs = {"features_extractor_kwargs": extractor}
    model = PPO(UnmaskingActorCriticPolicy, venv, policy_kwargs=kwargs)
    save_policy(model.policy.unmasking_net, "runs/ppo/policy")  # LearnedPolicy, `dllm-gym eval`

Uses only the public Gymnasium API and the registered ids; needs ``stable-baselines3``
(``pip install "dllm-gym[sb3]"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from torch import nn

from agents.policy import PolicyConfig, UnmaskingPolicyNet, load_policy

try:
    from stable_baselines3.common.policies import MultiInputActorCriticPolicy
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from stable_baselines3.common.type_aliases import Schedule
    from stable_baselines3.common.vec_env import VecEnv
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError("agents.sb3 needs stable-baselines3: pip install 'dllm-gym[sb3]'") from error


class SB3VecEnv(VecEnv):
    """A Gymnasium vector environment seen as an SB3 ``VecEnv``.

    Args:
        env: a registered id (built with ``gym.make_vec(env, num_envs, **overrides)`` in
            ``SAME_STEP`` autoreset mode) or an already built vector env in that mode.
        num_envs: number of sub-environments when ``env`` is an id.
        **overrides: settings passed to ``gym.make_vec`` when ``env`` is an id.
    """

    def __init__(self, env: str | gym.vector.VectorEnv, num_envs: int = 1, **overrides: Any):
        if isinstance(env, str):
            env = gym.make_vec(
                env, num_envs=num_envs, autoreset_mode=AutoresetMode.SAME_STEP, **overrides
            )
        elif overrides:
            raise ValueError(
                f"overrides {sorted(overrides)} apply only when env is an id, not a built env"
            )
        mode = env.metadata.get("autoreset_mode")
        if mode is not AutoresetMode.SAME_STEP:
            raise ValueError(
                f"env: SB3 resets sub-environments in the step that ends them; expected a "
                f"vector env with autoreset_mode=AutoresetMode.SAME_STEP, got {mode!r}"
            )
        self.vector_env = env
        self.render_mode = env.render_mode
        self._actions: np.ndarray | None = None
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)

    def reset(self) -> dict[str, np.ndarray]:
        seeds = self._seeds
        seed: Sequence[int | None] | None = None if all(s is None for s in seeds) else seeds
        obs, infos = self.vector_env.reset(seed=seed, options=self._vector_options())
        self.reset_infos = _per_env(infos, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return obs

    def _vector_options(self) -> dict[str, Any] | None:
        """SB3's per-row reset options (``set_options``: one dict per sub-env, each a single
        env's options, ``{"index": i}`` or empty) as the vector env's one dict."""
        rows = self._options or [{}] * self.num_envs
        for row, options in enumerate(rows):
            unknown = sorted(set(options or {}) - {"index"})
            if unknown:
                raise ValueError(
                    f"set_options: sub-env {row} has unknown reset option(s) {unknown}; "
                    f"expected 'index'"
                )
        indices = [(options or {}).get("index") for options in rows]
        return None if all(i is None for i in indices) else {"index": indices}

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[dict]]:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async(actions)")
        actions, self._actions = self._actions, None
        obs, rewards, terminated, truncated, infos = self.vector_env.step(actions)
        dones = terminated | truncated
        per_env = _per_env(infos, self.num_envs)
        if dones.any():
            final_info = _per_env(infos.get("final_info", {}), self.num_envs)
            for row in np.flatnonzero(dones):  # only the rows whose episode ended
                per_env[row].update(final_info[row])
                per_env[row]["terminal_observation"] = infos["final_obs"][row]
                per_env[row]["TimeLimit.truncated"] = bool(truncated[row] and not terminated[row])
        return obs, rewards.astype(np.float32), dones, per_env

    def close(self) -> None:
        self.vector_env.close()

    # SB3 asks these of the sub-environments; the vector env holds them all.
    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        value = getattr(self.vector_env, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.vector_env, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any):
        result = getattr(self.vector_env, method_name)(*args, **kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


def _per_env(infos: dict[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """Gymnasium's batched infos (arrays with ``_key`` masks) as one dict per sub-env."""
    per_env: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    for key, values in infos.items():
        if key.startswith("_") or key in ("final_obs", "final_info"):
            continue
        present = infos.get(f"_{key}", np.ones(num_envs, dtype=bool))
        nested = _per_env(values, num_envs) if isinstance(values, dict) else None
        for row in np.flatnonzero(present):
            per_env[row][key] = values[row] if nested is None else nested[row]
    return per_env


# ------------------------------------------------------------------------------ the policy network
INACTIVE_LOGIT = -30.0  # UnmaskingFeaturesExtractor(mask_inactive=True): sigmoid(-30) = 9e-14


class UnmaskingFeaturesExtractor(BaseFeaturesExtractor):
    """:class:`agents.policy.UnmaskingPolicyNet` as an SB3 features extractor.

    Reads ``confidence`` ``(B, L)``, ``mask`` ``(B, L)`` (a float, > 0.5 = masked) and
    ``progress`` ``(B, 1)`` of SB3's preprocessed Dict observation (other keys are ignored)
    and returns ``(B, L + d)`` features: the network's ``L`` reveal logits, then the mean over
    positions of the ``d``-wide per-position features its output ``Linear`` reads
    (``net.features``; the logits are ``net.head`` of them, exactly
    ``net(confidence, mask, progress)``). :class:`UnmaskingActorCriticPolicy` turns the first
    part into the action logits and the second into the value.

    With another SB3 policy (``"MultiInputPolicy"``), pass ``ortho_init=False`` in
    ``policy_kwargs``: SB3's orthogonal initialisation would overwrite the network's own
    (adaLN-Zero, output bias -2).

    Args:
        observation_space: the environment's Dict observation space.
        config: the network's hyperparameters (``PolicyConfig()`` by default).
        checkpoint: a folder written by :func:`agents.policy.save_policy` to start from (its
            config is used; ``config`` must then be None or the same). It is read whenever the
            policy is built, ``PPO.load`` included.
        mask_inactive: False (default): the logits as the network gives them. True: the
            logits of positions that are not ``active`` are replaced by ``INACTIVE_LOGIT``
            (probability 1e-13, no gradient), so a Bernoulli distribution over them lives on
            the active positions only (its log-likelihood and entropy are those of
            :func:`agents.policy.log_prob`): positions the env ignores add no noise to the
            policy gradient.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        config: PolicyConfig | None = None,
        checkpoint: str | Path | None = None,
        mask_inactive: bool = False,
    ) -> None:
        length = _generation_length(observation_space, with_active=mask_inactive)
        if checkpoint is not None:
            net = load_policy(checkpoint)
            if config is not None and config != net.config:
                raise ValueError(
                    f"UnmaskingFeaturesExtractor: config {config} differs from the config of "
                    f"checkpoint {str(checkpoint)!r}, {net.config}; pass one of them"
                )
        else:
            net = UnmaskingPolicyNet(config)
        if length > net.config.max_length:
            raise ValueError(
                f"UnmaskingFeaturesExtractor: observations of length {length} exceed the "
                f"network's max_length={net.config.max_length}"
            )
        super().__init__(observation_space, features_dim=length + net.config.d_model)
        self.length = length
        self.net = net
        self.mask_inactive = mask_inactive

    def logits_and_features(
        self, observations: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, L)`` reveal logits (see ``mask_inactive``) and the ``(B, L, d)`` per-position
        features they are read from."""
        features = self.net.features(
            observations["confidence"], observations["mask"] > 0.5, observations["progress"]
        )
        logits = self.net.head(features).squeeze(-1)  # exactly what self.net(...) returns
        if self.mask_inactive:
            inactive = torch.full_like(logits, INACTIVE_LOGIT)
            logits = torch.where(observations["active"] > 0.5, logits, inactive)
        return logits, features

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, L + d)``: the logits, then the per-position features averaged over positions."""
        logits, features = self.logits_and_features(observations)
        return torch.cat([logits, features.mean(dim=1)], dim=-1)


class UnmaskingLatents(nn.Module):
    """SB3's ``mlp_extractor`` for :class:`UnmaskingActorCriticPolicy`: splits the features
    of :class:`UnmaskingFeaturesExtractor`. The actor's latent is the ``L`` logits, unchanged;
    the critic's is an MLP (``value_arch`` widths, ``activation_fn``) of the pooled
    features."""

    def __init__(
        self,
        length: int,
        features_dim: int,
        value_arch: Sequence[int],
        activation_fn: type[nn.Module],
    ) -> None:
        super().__init__()
        self.length = length
        layers: list[nn.Module] = []
        width = features_dim - length
        for hidden in value_arch:
            layers += [nn.Linear(width, hidden), activation_fn()]
            width = hidden
        self.value_net = nn.Sequential(*layers)
        self.latent_dim_pi = length
        self.latent_dim_vf = width

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, : self.length]

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.value_net(features[:, self.length :])


class UnmaskingActorCriticPolicy(MultiInputActorCriticPolicy):
    """An SB3 actor-critic policy (PPO, A2C) whose actor is
    :class:`agents.policy.UnmaskingPolicyNet`.

    The ``MultiBinary(L)`` action is ``Bernoulli(sigmoid(logit))`` per position, with the
    network's per-position logits as they are (``action_net`` is the identity, not a
    ``Linear`` over the sequence). It is drawn on every position (the env ignores the
    inactive ones), or on the active positions only, the reference paper's distribution, with
    ``features_extractor_kwargs={"mask_inactive": True}`` (which learns faster: see
    ``examples/sb3_ppo.py``). The critic is an MLP (``net_arch["vf"]``, default ``[64, 64]``,
    with ``activation_fn``) of the network's per-position features averaged over positions,
    then ``Linear(., 1)``. The features extractor, :class:`UnmaskingFeaturesExtractor`
    (``features_extractor_kwargs``: ``config``, ``checkpoint``, ``mask_inactive``), is shared
    by actor and critic by default; ``share_features_extractor=False`` gives the critic its
    own copy of the network. ``ortho_init`` (SB3's default) initialises only the critic: the
    network keeps its own initialisation. ``predict(obs, deterministic=True)`` reveals the
    positions with logit > 0 (the env's ``empty_action`` applies when there is none).

        model = PPO(UnmaskingActorCriticPolicy, venv, policy_kwargs={"net_arch": {"vf": [64]}})

    ``net_arch`` is ``{"vf": [...]}`` or a list (the critic's widths); the actor has no MLP of
    its own (``net_arch["pi"]`` must be empty).
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.Tanh,
        ortho_init: bool = True,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        length = _generation_length(observation_space)
        if not (isinstance(action_space, spaces.MultiBinary) and action_space.shape == (length,)):
            raise ValueError(
                f"UnmaskingActorCriticPolicy: expected the action space MultiBinary({length}), "
                f"got {action_space}"
            )
        if net_arch is None:
            net_arch = {"pi": [], "vf": [64, 64]}
        elif isinstance(net_arch, dict):
            if net_arch.get("pi"):
                raise ValueError(
                    f"UnmaskingActorCriticPolicy: net_arch['pi'] must be empty (the actor is "
                    f"the UnmaskingPolicyNet), got {net_arch['pi']}"
                )
            net_arch = {"pi": [], "vf": list(net_arch.get("vf", []))}
        else:
            net_arch = {"pi": [], "vf": list(net_arch)}
        extractor = kwargs.setdefault("features_extractor_class", UnmaskingFeaturesExtractor)
        if not (isinstance(extractor, type) and issubclass(extractor, UnmaskingFeaturesExtractor)):
            raise ValueError(
                f"UnmaskingActorCriticPolicy: features_extractor_class must be "
                f"UnmaskingFeaturesExtractor or a subclass, got {extractor}"
            )
        self.length = length
        # SB3 builds its own modules and initialisation; the actor's head and the critic's
        # initialisation are then replaced below (SB3's orthogonal gains would overwrite the
        # network's own initialisation, so SB3 is asked for none).
        super().__init__(
            observation_space, action_space, lr_schedule, net_arch, activation_fn, False,
            *args, **kwargs,
        )  # fmt: skip
        self.ortho_init = ortho_init  # what PPO.save records and PPO.load passes back
        self.action_net = nn.Identity()  # the network's logits are the Bernoulli logits
        if ortho_init:  # SB3's gains, on the critic only
            self.mlp_extractor.apply(partial(self.init_weights, gain=np.sqrt(2)))
            self.value_net.apply(partial(self.init_weights, gain=1))
        # The optimizer SB3 built holds the discarded Linear action head: build it again.
        self.optimizer = self.optimizer_class(
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )

    @property
    def unmasking_net(self) -> UnmaskingPolicyNet:
        """The actor's network (shared, not copied), e.g. for :func:`agents.policy.save_policy`
        and :class:`agents.policy.LearnedPolicy`."""
        return self.pi_features_extractor.net

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = UnmaskingLatents(
            self.length, self.features_dim, self.net_arch["vf"], self.activation_fn
        )


def _generation_length(observation_space: spaces.Space, with_active: bool = False) -> int:
    """``L`` of an unmasking env's Dict observation space, checked."""
    keys = ("confidence", "mask", "progress", *(("active",) if with_active else ()))
    if not isinstance(observation_space, spaces.Dict) or any(
        key not in observation_space.spaces for key in keys
    ):
        raise ValueError(
            f"expected an unmasking env's Dict observation space with keys {keys}, got "
            f"{observation_space}"
        )
    shape = observation_space["confidence"].shape
    if shape is None or len(shape) != 1 or observation_space["mask"].shape != shape:
        raise ValueError(
            f"expected confidence and mask of one shape (L,), got {shape} and "
            f"{observation_space['mask'].shape}"
        )
    return int(shape[0])
