"""Baseline unmasking policies: which masked positions to reveal at each step.

A policy maps an observation of a dllm-gym environment to an action. Single environments
(``gym.make``) give arrays of shape ``(L,)``, vector environments (``gym.make_vec``) arrays of
shape ``(N, L)``; every policy here takes either and returns an ``int8`` action of the same
shape, 1 = reveal, set only on *active* positions (masked and in the current block). A row with
no active position (a finished row of a vector env) gets an all-zero action. Everything is
vectorised with numpy over the batch; ties are broken towards the lowest position (stable
sorts), so every policy but ``random`` is deterministic.

    import gymnasium as gym
    import dllm_gym  # registers the ids
    from agents.heuristics import make_policy

    policy = make_policy("entropy_bounded", gamma=0.1)
    env = gym.make("DLLMUnmask-Arith-v0", obs_features=list(policy.required_features))
    policy.configure(gen_length=48, block_length=16)
    obs, info = env.reset(seed=0)
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        done = terminated or truncated

Uses only the public Gymnasium observation and action format; never imports ``dllm_gym``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from agents.policies import Policy
from agents.validation import check_int, check_real

__all__ = [
    "DEFAULT_GRIDS",
    "POLICIES",
    "DilatedSchedule",
    "EntropyBounded",
    "EosLastThreshold",
    "EosRejectionAscending",
    "Factor",
    "Heuristic",
    "KLAdaptiveStability",
    "LeftToRight",
    "MarginThreshold",
    "Policy",
    "PositionCalibrated",
    "RandomReveal",
    "Threshold",
    "TopK",
    "make_policy",
]


# ------------------------------------------------------------------------------ helpers
def _sort_active(scores: np.ndarray, active: np.ndarray, descending: bool) -> np.ndarray:
    """(N, L) positions of each row ordered by score, active positions first.

    Stable: equal scores keep position order (lowest position first).
    """
    key = np.where(active, -scores if descending else scores, np.inf)
    return np.argsort(key, axis=1, kind="stable")


def _first_in_order(order: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(N, L) bool: the first ``counts[n]`` positions of ``order[n]``."""
    select = np.zeros(order.shape, dtype=bool)
    taken = np.arange(order.shape[1])[None, :] < counts[:, None]
    np.put_along_axis(select, order, taken, axis=1)
    return select


def _leading_true(condition: np.ndarray) -> np.ndarray:
    """(N,) length of the run of True at the start of each row."""
    return np.logical_and.accumulate(condition, axis=1).sum(axis=1)


def _best_plus_threshold(scores: np.ndarray, active: np.ndarray, tau: float) -> np.ndarray:
    """The highest-scoring active position of each row plus every active one >= tau."""
    order = _sort_active(scores, active, descending=True)
    best = _first_in_order(order, active.any(axis=1).astype(np.int64))
    return best | (active & (scores >= np.asarray(tau, dtype=scores.dtype)))


# ------------------------------------------------------------------------------ base
@dataclass
class Heuristic:
    """Base of the heuristics: settings from :meth:`configure`, shape handling, validation.

    Subclasses are dataclasses whose init fields are their hyperparameters; they implement
    :meth:`_select` on ``(N, L)`` arrays.
    """

    name: ClassVar[str] = "heuristic"
    required_features: ClassVar[tuple[str, ...]] = ()  # optional obs features needed
    observation_keys: ClassVar[tuple[str, ...]] = ()  # (L,) entries read besides "active"
    row_keys: ClassVar[tuple[str, ...]] = ()  # (1,) entries read (``progress``), given as (N, 1)

    gen_length: int | None = field(default=None, init=False, repr=False, compare=False)
    block_length: int | None = field(default=None, init=False, repr=False, compare=False)

    def configure(self, *, gen_length: int, block_length: int) -> None:
        """Store the environment's generation and block lengths (validated)."""
        gen_length = check_int(self.name, "gen_length", gen_length, 1)
        block_length = check_int(self.name, "block_length", block_length, 1, gen_length)
        self.gen_length, self.block_length = gen_length, block_length

    def __call__(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Action for an (L,) or (N, L) observation: int8 of the shape of ``obs["active"]``."""
        active, entries, single = self._batched(obs)
        select = self._select(entries, active) & active
        action = select.astype(np.int8)
        return action[0] if single else action

    def _select(self, obs: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
        """(N, L) bool positions to reveal, from (N, L) entries and the (N, L) active mask."""
        raise NotImplementedError

    def _batched(
        self, obs: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, np.ndarray], bool]:
        """Validated (N, L) views of ``active`` and the entries the policy reads."""
        if not isinstance(obs, Mapping) or "active" not in obs:
            raise ValueError(f"{self.name}: expected an observation dict with 'active'")
        active = np.asarray(obs["active"])
        if active.ndim not in (1, 2):
            raise ValueError(
                f"{self.name}: obs['active'] must have shape (L,) or (N, L), "
                f"got shape {active.shape}"
            )
        if self.gen_length is not None and active.shape[-1] != self.gen_length:
            raise ValueError(
                f"{self.name}: observation of length {active.shape[-1]}, but configure() "
                f"was called with gen_length={self.gen_length}"
            )
        single = active.ndim == 1
        entries = {}
        for key in self.observation_keys:
            if key not in obs:
                raise ValueError(
                    f"{self.name}: the observation has no {key!r}; make the env with "
                    f"obs_features={list(self.required_features)}"
                )
            value = np.asarray(obs[key])
            if value.shape != active.shape:
                raise ValueError(
                    f"{self.name}: obs[{key!r}] has shape {value.shape}, expected the shape "
                    f"of obs['active'], {active.shape}"
                )
            entries[key] = value[None] if single else value
        for key in self.row_keys:
            if key not in obs:
                raise ValueError(f"{self.name}: the observation has no {key!r}")
            value = np.asarray(obs[key])
            if value.shape != (*active.shape[:-1], 1):
                raise ValueError(
                    f"{self.name}: obs[{key!r}] has shape {value.shape}, expected "
                    f"{(*active.shape[:-1], 1)}"
                )
            entries[key] = value[None] if single else value
        active = (active[None] if single else active).astype(bool)
        return active, entries, single


# ------------------------------------------------------------------------------ heuristics
@dataclass
class RandomReveal(Heuristic):
    """``random``: ``k`` active positions drawn uniformly without replacement (all if fewer).

    A baseline without any model signal. Draws come from a numpy ``Generator`` seeded with
    ``seed`` at construction and re-seeded by :meth:`configure`, so a run is reproducible.
    """

    name: ClassVar[str] = "random"
    k: int = 1  # positions revealed per step, >= 1
    seed: int = 0  # seed of the numpy Generator, >= 0
    _rng: np.random.Generator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.k = check_int(self.name, "k", self.k, 1)
        self.seed = check_int(self.name, "seed", self.seed, 0)
        self._rng = np.random.default_rng(self.seed)

    def configure(self, *, gen_length: int, block_length: int) -> None:
        super().configure(gen_length=gen_length, block_length=block_length)
        self._rng = np.random.default_rng(self.seed)

    def _select(self, obs: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
        keys = self._rng.random(active.shape)
        order = _sort_active(keys, active, descending=False)
        return _first_in_order(order, np.full(active.shape[0], self.k))


@dataclass
class TopK(Heuristic):
    """``top_k``: LLaDA's low-confidence remasking (Nie et al. 2025, "Large Language
    Diffusion Models", arXiv:2502.09992).

    Each block of ``B = block_length`` positions is decoded in ``steps_per_block`` steps of
    ``k`` tokens, ``B // s`` per step with the remainder ``B % s`` spread one each over the
    first steps (LLaDA's ``get_num_transfer_tokens``); each step reveals the ``k`` most
    confident active positions. The policy is stateless: it infers the step from the number
    of positions of the current block already revealed (``B`` minus the active count),
    assuming earlier steps followed the schedule; off the schedule it reveals up to the next
    step boundary. Needs :meth:`configure` (for ``block_length``).
    """

    name: ClassVar[str] = "top_k"
    observation_keys: ClassVar[tuple[str, ...]] = ("confidence",)
    steps_per_block: int  # steps s per block, in [1, block_length]

    def __post_init__(self) -> None:
        self.steps_per_block = check_int(self.name, "steps_per_block", self.steps_per_block, 1)

    def configure(self, *, gen_length: int, block_length: int) -> None:
        block_length = check_int(self.name, "block_length", block_length, 1)
        if self.steps_per_block > block_length:
            raise ValueError(
                f"{self.name}: steps_per_block must be in [1, block_length={block_length}], "
                f"got {self.steps_per_block}"
            )
        super().configure(gen_length=gen_length, block_length=block_length)

    def schedule(self) -> np.ndarray:
        """(s,) tokens revealed at each step of a block."""
        if self.block_length is None:
            raise RuntimeError(
                f"{self.name}: call configure(gen_length=..., block_length=...) with the env's "
                "settings before using the policy"
            )
        base, remainder = divmod(self.block_length, self.steps_per_block)
        return base + (np.arange(self.steps_per_block) < remainder)

    def _select(self, obs: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
        boundaries = np.concatenate([[0], np.cumsum(self.schedule())])  # revealed after j steps
        n_active = active.sum(axis=1)
        if (n_active > self.block_length).any():
            raise ValueError(
                f"{self.name}: a row has {int(n_active.max())} active positions, more than "
                f"block_length={self.block_length}; configure() with the env's block_length"
            )
        revealed = self.block_length - n_active
        step = np.searchsorted(boundaries, revealed, side="right") - 1
        step = np.minimum(step, self.steps_per_block - 1)
        counts = boundaries[step + 1] - revealed  # 0 when the block is done
        order = _sort_active(obs["confidence"], active, descending=True)
        return _first_in_order(order, counts)


@dataclass
class Threshold(Heuristic):
    """``threshold``: Fast-dLLM's confidence-aware parallel decoding (Wu et al. 2025,
    arXiv:2505.22618): the most confident active position always, plus every active position
    whose confidence is at least ``tau``."""

    name: ClassVar[str] = "threshold"
    observation_keys: ClassVar[tuple[str, ...]] = ("confidence",)
    tau: float = 0.9  # confidence threshold, in (0, 1] (0.9 in the paper)

    def __post_init__(self) -> None:
        self.tau = check_real(self.name, "tau", self.tau, 0, 1, low_open=True, high_open=False)

    def _select(self, obs: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
        return _best_plus_threshold(obs["confidence"], active, self.tau)


@dataclass
class Factor(Heuristic):
    """``factor``: Fast-dLLM's factor-based parallel decoding (Wu et al. 2025,
    arXiv:2505.22618).

    Sort the active confidences descending, ``c_1 >= c_2 >= ...`` (1-indexed: ``c_1`` is the
    most confident), and reveal the ``n`` most confident, ``n`` the largest with
    ``(i + 1) * (1 - c_i) < f`` for every ``i <= n``; at least one. Fast-dLLM's code accepts
    equality (``<=``) and always reveals the first; both differ only on exact ties.
    """

    name: ClassVar[str] = "factor"
    observation_keys: ClassVar[tuple[str, ...]] = ("confidence",)
    f: float = 1.0  # error factor, > 0; larger reveals more per step

    def __post_init__(self) -> None:
        self.f = check_real(self.name, "f", self.f, 0, low_open=True)

    def _select(self, obs: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
        confidence = obs["confidence"].astype(np.float64)
        order = _sort_active(confidence, active, descending=True)
        ranked = np.take_along_axis(confidence, order, axis=1)  # c_1, c_2, ... then inactive
        i = np.arange(1, active.shape[1] + 1)[None, :]
        n_active = active.sum(axis=1)
        accepted = ((i + 1) * (1 - ranked) < self.f) & (i <= n_active[:, None])
        counts = np.maximum(_leading_true(accepted), np.minimum(n_active, 1))
        return _first_in_order(order, counts)


@dataclass
class MarginThreshold(Heuristic):
    """``margin_threshold``: Fast-dLLM's threshold rule (Wu et al. 2025, arXiv:2505.22618)
    applied to the margin, top-1 minus top-2 probability: the active position of largest
    margin always, plus every active position whose margin is at least ``tau``."""

    name: ClassVar[str] = "margin_threshold"
    required_features: ClassVar[tuple[str, ...]] = ("margin",)
    observation_keys: ClassVar[tuple[str, ...]] = ("margin",)
    tau: float = 0.9  # margin threshold, in (0, 1]

    def __post_init__(self) -> None:
        self.tau = check_real(self.name, "tau", self.tau, 0, 1, low_open=True, high_open=False)

    def _select(self, obs: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
        return _best_plus_threshold(obs["margin"], active, self.tau)


@dataclass
class EntropyBounded(Heuristic):
    """``entropy_bounded``: EB-Sampler (Ben-Hamu et al. 2025, "Accelerated Sampling from
    Masked Diffusion Models via Entropy Bounded Unmasking", arXiv:2505.24857).

    Sort the active positions by entropy ascending, ``H_1 <= H_2 <= ...``, and reveal the
    largest prefix whose error proxy ``sum(H) - max(H)`` is at most ``gamma``; at least one.
    """

    name: ClassVar[str] = "entropy_bounded"
    required_features: ClassVar[tuple[str, ...]] = ("entropy",)
    observation_keys: ClassVar[tuple[str, ...]] = ("entropy",)
    gamma: float = 0.1  # entropy budget per step (nats), >= 0; 0 reveals one at a time

    def __post_init__(self) -> None:
        self.gamma = check_real(self.name, "gamma", self.gamma, 0)

    def _select(self, obs: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
        entropy = np.where(active, obs["entropy"].astype(np.float64), 0.0)
        order = _sort_active(entropy, active, descending=False)
        ranked = np.take_along_axis(entropy, order, axis=1)  # H_1, H_2, ... then inactive
        error = np.cumsum(ranked, axis=1) - np.maximum.accumulate(ranked, axis=1)
        n_active = active.sum(axis=1)
        within = np.arange(1, active.shape[1] + 1)[None, :] <= n_active[:, None]
        accepted = (error <= self.gamma) & within
        counts = np.maximum(_leading_true(accepted), np.minimum(n_active, 1))
        return _first_in_order(order, counts)


@dataclass
class EosLastThreshold(Heuristic):
    """``eos_last_threshold``: the confidence threshold with end of text held back.

    A position *predicts end of text* when its stop tokens (end of text, end of turn) are
    together at least as likely as its top-1 token (``eos >= confidence``). While any active
    position predicts content, only those are candidates; end-of-text positions are revealed
    once nothing else is left in the block. Among the candidates, ``threshold``'s rule: the
    most confident always, plus every one with confidence at least ``tau``.

    The failure it targets is LLaDA's documented one at long generation lengths (its
    guidelines: low-confidence remasking yields "an unusually high proportion of EOS"):
    confidence rules fill the end-of-text tail first, then end of text turns confident inside
    the answer and truncates it. Holding end of text back is the simplest form of the EOS
    early rejection of Yang et al. 2025 ("Taming Masked Diffusion Language Models via
    Consistency Trajectory Reinforcement Learning with Fewer Decoding Step",
    arXiv:2509.23924), which down-weights end-of-text confidence early in decoding.
    """

    name: ClassVar[str] = "eos_last_threshold"
    required_features: ClassVar[tuple[str, ...]] = ("eos",)
    observation_keys: ClassVar[tuple[str, ...]] = ("confidence", "eos")
    tau: float = 0.9  # confidence threshold among the candidates, in (0, 1]

    def __post_init__(self) -> None:
        self.tau = check_real(self.name, "tau", self.tau, 0, 1, low_open=True, high_open=False)

    def _select(self, obs: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
        content = active & (obs["eos"] < obs["confidence"])
        candidates = np.where(content.any(axis=1, keepdims=True), content, active)
        return _best_plus_threshold(obs["confidence"], candidates, self.tau)


@dataclass
class KLAdaptiveStability(Heuristic):
    """``klass``: KL-Adaptive Stability Sampling (Kim et al. 2025, "KLASS: KL-Adaptive
    Stability Sampling for Fast Inference in Masked Diffusion Models", arXiv:2511.05664).

    A position is *stable* when the KL divergence between its prediction at this step and at
    the step before (the ``kl`` feature) has stayed below ``kl_bound`` for the last
    ``history`` steps. Every active position that is stable and at least ``tau`` confident is
    revealed at once; when there is none, the ``k`` most confident active positions (the
    fallback of the reference code, top-k confidence). The policy keeps, per row, the last
    ``history`` KL values; a row whose observation shows its first forward pass (``progress
    * gen_length == 1``: a new episode) starts an empty history, as the reference's first
    step compares with no earlier prediction. Needs :meth:`configure` and one call per step.
    """

    name: ClassVar[str] = "klass"
    required_features: ClassVar[tuple[str, ...]] = ("kl",)
    observation_keys: ClassVar[tuple[str, ...]] = ("confidence", "kl")
    row_keys: ClassVar[tuple[str, ...]] = ("progress",)
    kl_bound: float = 0.01  # KL (nats) under which a prediction counts as unchanged, > 0
    history: int = 2  # consecutive steps a prediction must stay under kl_bound, >= 1
    tau: float = 0.9  # confidence a stable position needs, in [0, 1]
    k: int = 1  # fallback: most confident positions revealed when none is stable, >= 1
    _kl: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.kl_bound = check_real(self.name, "kl_bound", self.kl_bound, 0, low_open=True)
        self.history = check_int(self.name, "history", self.history, 1)
        self.tau = check_real(self.name, "tau", self.tau, 0, 1, high_open=False)
        self.k = check_int(self.name, "k", self.k, 1)

    def configure(self, *, gen_length: int, block_length: int) -> None:
        super().configure(gen_length=gen_length, block_length=block_length)
        self._kl = None

    def _select(self, obs: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
        if self.gen_length is None:
            raise RuntimeError(
                f"{self.name}: call configure(gen_length=..., block_length=...) with the env's "
                "settings before using the policy"
            )
        rows, length = active.shape
        if self._kl is None or self._kl.shape != (rows, length, self.history):
            self._kl = np.full((rows, length, self.history), np.inf)
        first = np.rint(obs["progress"][:, 0] * self.gen_length) <= 1  # a new episode
        self._kl[first] = np.inf
        self._kl = np.roll(self._kl, -1, axis=2)
        self._kl[:, :, -1] = np.where(first[:, None], np.inf, obs["kl"])
        stable = active & (self._kl < self.kl_bound).all(axis=2)
        chosen = stable & (obs["confidence"] >= self.tau)
        order = _sort_active(obs["confidence"], active, descending=True)
        fallback = _first_in_order(order, np.full(rows, self.k))
        return np.where(chosen.any(axis=1, keepdims=True), chosen, fallback)


@dataclass
class DilatedSchedule(Heuristic):
    """``dilated``: the Dilated Unmasking Scheduler, DUS (Luxembourg, Permuter and Nachmani
    2025, "Plan for Speed: Dilated Scheduling for Masked Diffusion Language Models",
    arXiv:2506.19037).

    A block of ``B`` positions is revealed in ``R = ceil(log_a B)`` steps of fixed,
    non-adjacent groups: step ``t`` (1..R) takes every position ``j`` not yet taken with
    ``j mod s_t == 0``, ``s_t = max(1, B // a**t)`` (B = 16, a = 2: {0, 8}, {4, 12},
    {2, 6, 10, 14}, the 8 odd positions); a last group smaller than the one before joins it.
    Tokens revealed together are far apart, so they depend on each other little. Needs no
    model signal; stateless: each step reveals the active positions of the lowest group
    that still has one. Needs :meth:`configure` (for ``block_length``).
    """

    name: ClassVar[str] = "dilated"
    a: int = 2  # dilation base, >= 2: about log_a(block_length) steps per block
    _group: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.a = check_int(self.name, "a", self.a, 2)

    def configure(self, *, gen_length: int, block_length: int) -> None:
        super().configure(gen_length=gen_length, block_length=block_length)
        self._group = dilated_groups(block_length, self.a)

    def _select(self, obs: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
        if self._group is None:
            raise RuntimeError(
                f"{self.name}: call configure(gen_length=..., block_length=...) with the env's "
                "settings before using the policy"
            )
        group = self._group[np.arange(active.shape[1]) % self.block_length][None, :]
        current = np.where(active, group, np.iinfo(np.int64).max).min(axis=1, keepdims=True)
        return active & (group == current)


def dilated_groups(block_length: int, a: int) -> np.ndarray:
    """(B,) the DUS step (0-based) at which each position of a block is revealed."""
    steps = max(1, math.ceil(math.log(block_length) / math.log(a) - 1e-12))
    group = np.full(block_length, -1, dtype=np.int64)
    sizes: list[int] = []
    for t in range(1, steps + 1):
        stride = max(1, block_length // a**t)
        taken = (np.arange(block_length) % stride == 0) & (group < 0)
        if t == steps and sizes and taken.sum() < sizes[-1]:
            group[taken] = len(sizes) - 1  # a small last group joins the one before
            continue
        group[taken] = len(sizes)
        sizes.append(int(taken.sum()))
    group[group < 0] = len(sizes) - 1  # (only when log_a B rounds down; never in practice)
    return group


@dataclass
class EosRejectionAscending(Heuristic):
    """``eos_reject_ascending``: EOS early rejection with the ascending step-size schedule
    (Yang et al. 2025, "Taming Masked Diffusion Language Models via Consistency Trajectory
    Reinforcement Learning with Fewer Decoding Step", arXiv:2509.23924; EOSER and ASS).

    Step ``i`` (0-based) of a block reveals ``ceil(growth**i)`` tokens (1, 2, 4, 8, ... for
    ``growth = 2``: about log2(B) steps; the last step takes what is left). The candidates are
    ranked by confidence, except that a position predicting end of text (its stop tokens at
    least as likely as its top-1 token, ``eos >= confidence``) has its confidence scaled by
    ``gamma_min + (gamma_max - gamma_min) * r``, ``r`` the fraction of the block revealed
    once this step is done: end of text is held back early and treated normally at the end.
    Stateless: the step is inferred from the block's revealed count. Needs :meth:`configure`.
    """

    name: ClassVar[str] = "eos_reject_ascending"
    required_features: ClassVar[tuple[str, ...]] = ("eos",)
    observation_keys: ClassVar[tuple[str, ...]] = ("confidence", "eos")
    gamma_min: float = 0.4  # end-of-text scale at the start of a block, in [0, gamma_max]
    gamma_max: float = 1.0  # end-of-text scale at its end, in [gamma_min, 1]
    growth: float = 2.0  # tokens per step grow by this factor, > 1

    def __post_init__(self) -> None:
        self.gamma_max = check_real(self.name, "gamma_max", self.gamma_max, 0, 1, high_open=False)
        self.gamma_min = check_real(
            self.name, "gamma_min", self.gamma_min, 0, self.gamma_max, high_open=False
        )
        self.growth = check_real(self.name, "growth", self.growth, 1, low_open=True)

    def boundaries(self) -> np.ndarray:
        """(steps + 1,) positions of a block revealed after 0, 1, ... steps."""
        if self.block_length is None:
            raise RuntimeError(
                f"{self.name}: call configure(gen_length=..., block_length=...) with the env's "
                "settings before using the policy"
            )
        bounds, i = [0], 0
        while bounds[-1] < self.block_length:
            bounds.append(min(self.block_length, bounds[-1] + math.ceil(self.growth**i)))
            i += 1
        return np.array(bounds)

    def _select(self, obs: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
        bounds = self.boundaries()
        revealed = self.block_length - active.sum(axis=1)
        step = np.clip(np.searchsorted(bounds, revealed, side="right") - 1, 0, len(bounds) - 2)
        after = bounds[step + 1]
        scale = self.gamma_min + (self.gamma_max - self.gamma_min) * after / self.block_length
        confidence = obs["confidence"].astype(np.float64)
        ends = obs["eos"] >= obs["confidence"]
        score = np.where(ends, confidence * scale[:, None], confidence)
        order = _sort_active(score, active, descending=True)
        return _first_in_order(order, np.maximum(after - revealed, 0))


@dataclass
class PositionCalibrated(Heuristic):
    """``pc_sampler``: PC-Sampler's position-aware weighting (Huang et al. 2025, "PC-Sampler:
    Position-Aware Calibration of Decoding Bias in Masked Diffusion Models",
    arXiv:2508.13021).

    Reveals the ``k`` active positions of highest ``exp(-lam * i) * confidence``, ``i`` the
    position in the generation (0 = first generated token): ``lam = 0`` is top-k confidence,
    a large ``lam`` left to right (the paper: 0.25 for most tasks, 0.5 for Countdown, 0 for
    Sudoku). The paper also calibrates the confidence with the predicted token's frequency in
    a reference corpus (``-p * log p_corpus(token)``, clipped at ``alpha``); that corpus is not
    part of an environment, so this policy uses the confidence as it is.
    """

    name: ClassVar[str] = "pc_sampler"
    observation_keys: ClassVar[tuple[str, ...]] = ("confidence",)
    lam: float = 0.25  # positional decay per token, >= 0
    k: int = 1  # positions revealed per step, >= 1

    def __post_init__(self) -> None:
        self.lam = check_real(self.name, "lam", self.lam, 0)
        self.k = check_int(self.name, "k", self.k, 1)

    def _select(self, obs: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
        weight = np.exp(-self.lam * np.arange(active.shape[1], dtype=np.float64))
        order = _sort_active(obs["confidence"] * weight[None, :], active, descending=True)
        return _first_in_order(order, np.full(active.shape[0], self.k))


@dataclass
class LeftToRight(Heuristic):
    """``left_to_right``: the leftmost active position, one per step (autoregressive order,
    the slowest baseline: NFE = L)."""

    name: ClassVar[str] = "left_to_right"

    def _select(self, obs: dict[str, np.ndarray], active: np.ndarray) -> np.ndarray:
        first = np.argmax(active, axis=1)
        return np.arange(active.shape[1])[None, :] == first[:, None]


# ------------------------------------------------------------------------------ registry
POLICIES: dict[str, type[Heuristic]] = {
    cls.name: cls
    for cls in (
        RandomReveal,
        TopK,
        Threshold,
        Factor,
        MarginThreshold,
        EntropyBounded,
        EosLastThreshold,
        LeftToRight,
        KLAdaptiveStability,
        DilatedSchedule,
        EosRejectionAscending,
        PositionCalibrated,
    )
}

# Sweeps for an accuracy-vs-NFE picture on DLLMUnmask-Arith-v0 (L = 48, block 16). top_k
# values are steps per block <= 16, valid for any block_length >= 16 (configure rejects more
# steps than a block has positions).
DEFAULT_GRIDS: dict[str, list[dict[str, Any]]] = {
    "random": [{"k": k} for k in (1, 2, 4)],
    "top_k": [{"steps_per_block": s} for s in (16, 8, 4, 2)],
    "threshold": [{"tau": t} for t in (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)],
    "factor": [{"f": f} for f in (0.5, 1.0, 2.0, 3.0, 4.0)],
    "margin_threshold": [{"tau": t} for t in (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)],
    "entropy_bounded": [{"gamma": g} for g in (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)],
    "eos_last_threshold": [{"tau": t} for t in (0.5, 0.7, 0.9, 0.99)],
    "left_to_right": [{}],
    "klass": [
        {"kl_bound": b, "tau": t} for b, t in ((0.001, 0.9), (0.01, 0.9), (0.05, 0.9), (0.01, 0.7))
    ],
    "dilated": [{"a": a} for a in (2, 3, 4)],
    "eos_reject_ascending": [{"gamma_min": g} for g in (0.1, 0.4, 0.7)]
    + [{"gamma_min": 0.4, "growth": 1.5}],
    "pc_sampler": [{"lam": lam} for lam in (0.0, 0.1, 0.25, 0.5)] + [{"lam": 0.25, "k": 2}],
}


def _hyperparameter_fields(cls: type[Heuristic]) -> list[Any]:
    return [f for f in fields(cls) if f.init]


def make_policy(name: str, **hyperparameters: Any) -> Heuristic:
    """The heuristic registered as ``name`` with the given hyperparameters (validated)."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose one of {list(POLICIES)}")
    cls = POLICIES[name]
    valid = [f.name for f in _hyperparameter_fields(cls)]
    unknown = [key for key in hyperparameters if key not in valid]
    if unknown:
        raise ValueError(
            f"{name}: unknown hyperparameter {', '.join(map(repr, unknown))}; "
            f"valid hyperparameters: {valid}"
        )
    missing = [
        f.name
        for f in _hyperparameter_fields(cls)
        if f.default is MISSING and f.default_factory is MISSING and f.name not in hyperparameters
    ]
    if missing:
        raise ValueError(f"{name}: missing hyperparameter {', '.join(map(repr, missing))}")
    return cls(**hyperparameters)
