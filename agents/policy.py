"""The learned unmasking policy of "Learning Unmasking Policies for Diffusion Language Models"
(arXiv:2512.09106): a one-block transformer that reads the dLLM's per-position confidence and
mask flags, conditioned on decoding progress, and gives one reveal logit per position.

- :class:`PolicyConfig`, :class:`UnmaskingPolicyNet`: the network. Per position, confidence
  (``Linear(1, d)`` of its log-odds by default, see ``PolicyConfig.confidence_input``) plus mask
  flag (``Embedding(2, d)``); progress (NFE / L) by a sinusoidal
  embedding and an MLP to a conditioning vector, applied through adaLN-Zero (DiT, Peebles &
  Xie 2023, "Scalable Diffusion Models with Transformers", arXiv:2212.09748); one
  bidirectional self-attention block with rotary positions; a modulated final LayerNorm and
  ``Linear(d, 1)``. adaLN weights start at zero (the block starts as the identity) and the
  output bias at -2 (the policy starts by revealing little).
- :func:`sample`, :func:`log_prob`, :func:`deterministic_action`: the action distribution,
  independent ``Bernoulli(sigmoid(logit / temperature))`` on *active* positions only, and its
  evaluation mode (logit > 0, at least the best active position).
- :class:`LearnedPolicy`: the :class:`agents.policies.Policy` interface over numpy
  observations of single (``(L,)``) or vector (``(N, L)``) environments.
- :func:`save_policy`, :func:`load_policy`: checkpoint folders (``model.safetensors`` and
  ``config.json``), validated on load. A checkpoint may name the decoding mode it was
  measured in (``extra.evaluation``, see :func:`evaluation_settings`);
  :meth:`LearnedPolicy.load` uses it for the fields it is not given.

    import gymnasium as gym
    import dllm_gym  # registers the ids
    from agents.policy import LearnedPolicy, PolicyConfig, UnmaskingPolicyNet, save_policy

    save_policy(UnmaskingPolicyNet(PolicyConfig()), "runs/policy-init")
    policy = LearnedPolicy.load("runs/policy-init")  # deterministic=True by default
    env = gym.make("DLLMUnmask-Arith-v0")
    policy.configure(gen_length=48, block_length=16)
    obs, info = env.reset(seed=0)
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        done = terminated or truncated

Uses only the public Gymnasium observation and action format; never imports ``dllm_gym``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import InitVar, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from agents.files import write_atomic
from agents.validation import check_int, check_real

__all__ = [
    "CONFIG_FILE",
    "OBSERVATION_LAYOUT",
    "WEIGHTS_FILE",
    "LearnedPolicy",
    "PolicyConfig",
    "UnmaskingPolicyNet",
    "deterministic_action",
    "evaluation_settings",
    "load_policy",
    "log_prob",
    "observation_tensors",
    "progress_embedding",
    "read_config",
    "sample",
    "save_policy",
    "shipped_checkpoint",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
EVALUATION_KEY = "evaluation"  # extra.evaluation in config.json: see evaluation_settings
EVALUATION_FIELDS = ("deterministic", "temperature", "seed")
# Trained policies shipped with the package, one folder per registered id (see its README.md).
SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"
# What the network reads, in order; a checkpoint with another layout is refused on load.
OBSERVATION_LAYOUT: dict[str, Any] = {"inputs": ["confidence", "mask", "progress"], "version": 1}


CONFIDENCE_INPUTS = ("log_odds", "probability")
LOG_ODDS_EPS = 1e-6  # confidence is clamped to [eps, 1 - eps] before log-odds (|x| <= 13.8)
LOG_ODDS_SCALE = 0.25  # log-odds are multiplied by this (|x| <= 3.5, like the mask embedding)


# ------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class PolicyConfig:
    """Hyperparameters of :class:`UnmaskingPolicyNet` (the paper's values by default)."""

    d_model: int = 128
    """Width of the per-position representation and of the conditioning vector."""
    num_heads: int = 2
    """Attention heads; ``d_model / num_heads`` must be even (rotary pairs)."""
    ff_dim: int = 512
    """Hidden width of the feed-forward sublayer (GELU)."""
    max_length: int = 1024
    """Longest generation the policy accepts (a sanity limit: rotary positions need no table)."""
    progress_frequencies: int = 64
    """Size of the sinusoidal progress embedding (even: cosines then sines)."""
    progress_scale: float = 1000.0
    """Progress in [0, 1] is multiplied by this before the sinusoids (DiT's timestep range)."""
    output_bias: float = -2.0
    """Initial bias of the output logit: sigmoid(-2) = 0.12, the policy starts slow."""
    rope_theta: float = 10000.0
    """Base of the rotary position embedding frequencies."""
    confidence_input: str = "log_odds"
    """What ``Linear(1, d)`` reads: ``"log_odds"``, ``log(c / (1 - c)) / 4`` with ``c`` clamped
    to ``[1e-6, 1 - 1e-6]`` (thresholds 0.9 / 0.99 / 0.999 lie 0.6 apart, so one weight can
    separate them), or ``"probability"``, ``c`` itself as in the paper (where 0.9 and 0.999
    differ by 0.1: on the embedded model, whose confidences crowd near 1, GRPO then learned a
    global reveal rate that ignored confidence)."""

    def __post_init__(self) -> None:
        for name in ("d_model", "num_heads", "ff_dim", "max_length", "progress_frequencies"):
            check_int("PolicyConfig", name, getattr(self, name), 1)
        check_real("PolicyConfig", "progress_scale", self.progress_scale, 0, low_open=True)
        check_real("PolicyConfig", "rope_theta", self.rope_theta, 1, low_open=True)
        check_real("PolicyConfig", "output_bias", self.output_bias, -math.inf, low_open=True)
        if self.d_model % self.num_heads or (self.d_model // self.num_heads) % 2:
            raise ValueError(
                f"PolicyConfig: d_model / num_heads must be an even integer (rotary pairs), "
                f"got d_model={self.d_model}, num_heads={self.num_heads}"
            )
        if self.progress_frequencies % 2:
            raise ValueError(
                f"PolicyConfig: progress_frequencies must be even, got {self.progress_frequencies}"
            )
        if self.confidence_input not in CONFIDENCE_INPUTS:
            raise ValueError(
                f"PolicyConfig: confidence_input must be one of {CONFIDENCE_INPUTS}, got "
                f"{self.confidence_input!r}"
            )


# ------------------------------------------------------------------------------ network
def progress_embedding(progress: torch.Tensor, size: int, scale: float) -> torch.Tensor:
    """(B,) progress -> (B, size) sinusoidal embedding ``[cos(t f_i), sin(t f_i)]`` with
    ``t = scale * progress`` and ``f_i = 10000 ** (-i / (size / 2))`` (DiT's timestep
    embedding)."""
    half = size // 2
    exponent = torch.arange(half, dtype=torch.float32, device=progress.device) / half
    frequencies = torch.exp(-math.log(10000.0) * exponent)
    angles = (scale * progress.float())[:, None] * frequencies[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation of (B, L, d) ``x`` by (B, d) shift and scale."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


class RotarySelfAttention(nn.Module):
    """Bidirectional multi-head self-attention with rotary position embeddings on q and k
    (Su et al. 2021, "RoFormer", arXiv:2104.09864; half-split pairing)."""

    def __init__(self, d_model: int, num_heads: int, rope_theta: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        exponent = torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim
        self.register_buffer("inv_freq", rope_theta**-exponent, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, d) -> (B, L, d)."""
        batch, length, width = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, L, Dh)
        positions = torch.arange(length, dtype=torch.float32, device=x.device)
        angles = positions[:, None] * self.inv_freq[None, :]  # (L, Dh / 2)
        angles = torch.cat([angles, angles], dim=-1)
        cos, sin = torch.cos(angles).to(q.dtype), torch.sin(angles).to(q.dtype)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        out = F.scaled_dot_product_attention(q, k, v)  # no mask: every row has length L
        return self.proj(out.transpose(1, 2).reshape(batch, length, width))


class AdaLNZeroBlock(nn.Module):
    """A DiT block (Peebles & Xie 2023): attention and feed-forward sublayers, each after a
    LayerNorm without affine parameters, shifted, scaled and gated by ``c`` through
    ``SiLU -> Linear(d, 6d)``. That Linear starts at zero, so the block starts as the
    identity."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        d = config.d_model
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = RotarySelfAttention(d, config.num_heads, config.rope_theta)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(d, config.ff_dim), nn.GELU(), nn.Linear(config.ff_dim, d)
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        nn.init.zeros_(self.adaLN_modulation[1].weight)
        nn.init.zeros_(self.adaLN_modulation[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """(B, L, d) input and (B, d) conditioning -> (B, L, d)."""
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, -1)
        x = x + gate_a[:, None, :] * self.attn(_modulate(self.norm1(x), shift_a, scale_a))
        return x + gate_m[:, None, :] * self.mlp(_modulate(self.norm2(x), shift_m, scale_m))


class UnmaskingPolicyNet(nn.Module):
    """The paper's policy network: one reveal logit per generation position.

    ``forward(confidence (B, L) float, mask (B, L) {0, 1}, progress (B, 1) or (B,)) -> (B, L)``
    logits. The final LayerNorm is modulated like DiT's final layer (shift and scale from the
    conditioning, zero-initialised, no gate), so at initialisation the output is
    ``head(LayerNorm(embedding))`` with ``head.bias = output_bias``.
    """

    def __init__(self, config: PolicyConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or PolicyConfig()
        d = config.d_model
        self.confidence_embed = nn.Linear(1, d)
        self.mask_embed = nn.Embedding(2, d)
        self.progress_mlp = nn.Sequential(
            nn.Linear(config.progress_frequencies, d), nn.SiLU(), nn.Linear(d, d)
        )
        self.block = AdaLNZeroBlock(config)
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        nn.init.zeros_(self.final_modulation[1].weight)
        nn.init.zeros_(self.final_modulation[1].bias)
        self.head = nn.Linear(d, 1)
        nn.init.constant_(self.head.bias, config.output_bias)

    def embed(self, confidence: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L) confidence and mask -> (B, L, d) input embedding (their sum)."""
        value = confidence.to(self.confidence_embed.weight.dtype)
        if self.config.confidence_input == "log_odds":
            value = torch.logit(value, eps=LOG_ODDS_EPS) * LOG_ODDS_SCALE
        return self.confidence_embed(value[..., None]) + self.mask_embed(mask.long())

    def condition(self, progress: torch.Tensor) -> torch.Tensor:
        """(B, 1) or (B,) progress -> (B, d) conditioning vector."""
        config = self.config
        sinusoids = progress_embedding(
            progress.reshape(-1), config.progress_frequencies, config.progress_scale
        )
        return self.progress_mlp(sinusoids.to(self.head.weight.dtype))

    def forward(
        self, confidence: torch.Tensor, mask: torch.Tensor, progress: torch.Tensor
    ) -> torch.Tensor:
        """(B, L) confidence, (B, L) mask, (B, 1) progress -> (B, L) reveal logits."""
        return self.head(self.features(confidence, mask, progress)).squeeze(-1)

    def features(
        self, confidence: torch.Tensor, mask: torch.Tensor, progress: torch.Tensor
    ) -> torch.Tensor:
        """The (B, L, d) per-position features the output ``Linear`` (``head``) reads: the
        block's output after the modulated final LayerNorm."""
        if confidence.ndim != 2 or mask.shape != confidence.shape:
            raise ValueError(
                f"UnmaskingPolicyNet: confidence and mask must both have shape (B, L), got "
                f"{tuple(confidence.shape)} and {tuple(mask.shape)}"
            )
        batch, length = confidence.shape
        if progress.numel() != batch:
            raise ValueError(
                f"UnmaskingPolicyNet: progress must have shape (B, 1) = ({batch}, 1), got "
                f"{tuple(progress.shape)}"
            )
        if length > self.config.max_length:
            raise ValueError(
                f"UnmaskingPolicyNet: length {length} exceeds max_length="
                f"{self.config.max_length} of the config"
            )
        c = self.condition(progress)
        x = self.block(self.embed(confidence, mask), c)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return _modulate(self.final_norm(x), shift, scale)


# ------------------------------------------------------------------------------ actions
def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    check_real("policy", "temperature", temperature, 0, low_open=True)
    return logits.float() / temperature


def log_prob(
    logits: torch.Tensor, active: torch.Tensor, action: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """(B,) joint log-likelihood of ``action`` under independent
    ``Bernoulli(sigmoid(logit / temperature))`` over the active positions (the paper's
    per-step quantity for the PPO ratio); inactive positions contribute 0. Differentiable
    with respect to ``logits``; computed in float32 with ``logsigmoid``."""
    z = _scaled(logits, temperature)
    chosen = action.bool()
    per_position = torch.where(chosen, F.logsigmoid(z), F.logsigmoid(-z))
    return torch.where(active.bool(), per_position, torch.zeros_like(per_position)).sum(-1)


def sample(
    logits: torch.Tensor,
    active: torch.Tensor,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw an action: ``(B, L)`` int8, each active position revealed independently with
    probability ``sigmoid(logit / temperature)``, inactive ones never; and its (B,)
    :func:`log_prob` (attached to the graph of ``logits``; detach it to store it). May reveal
    nothing (the env then applies its ``empty_action``)."""
    z = _scaled(logits, temperature)
    uniform = torch.rand(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    action = (uniform < torch.sigmoid(z.detach())) & active.bool()
    return action.to(torch.int8), log_prob(logits, active, action, temperature)


def deterministic_action(logits: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """The evaluation mode: ``(B, L)`` int8, every active position with logit > 0
    (probability > 0.5 at any temperature), or the highest-logit active position (lowest index
    on ties) when none is; rows without an active position get zeros."""
    active = active.bool()
    chosen = (logits > 0) & active
    best = torch.where(active, logits, torch.full_like(logits, -math.inf)).argmax(-1)
    forced = ~chosen.any(-1) & active.any(-1)
    top = torch.zeros_like(chosen).scatter_(-1, best[:, None], forced[:, None])
    return (chosen | top).to(torch.int8)


def observation_tensors(
    obs: Mapping[str, np.ndarray], device: torch.device | str = "cpu"
) -> tuple[dict[str, torch.Tensor], bool]:
    """(N, L) tensors ``confidence`` (float32), ``mask``, ``active`` (bool) and (N, 1)
    ``progress`` from an ``(L,)`` or ``(N, L)`` observation, and whether it was a single row."""
    if not isinstance(obs, Mapping):
        raise ValueError(f"learned: expected an observation dict, got {type(obs).__name__}")
    missing = [key for key in ("confidence", "mask", "active", "progress") if key not in obs]
    if missing:
        raise ValueError(f"learned: the observation has no {missing}")
    active = np.asarray(obs["active"])
    if active.ndim not in (1, 2):
        raise ValueError(
            f"learned: obs['active'] must have shape (L,) or (N, L), got {active.shape}"
        )
    single = active.ndim == 1
    rows = 1 if single else active.shape[0]
    arrays = {"active": active}
    for key in ("confidence", "mask"):
        arrays[key] = np.asarray(obs[key])
        if arrays[key].shape != active.shape:
            raise ValueError(
                f"learned: obs[{key!r}] has shape {arrays[key].shape}, expected the shape of "
                f"obs['active'], {active.shape}"
            )
    progress = np.asarray(obs["progress"])
    if progress.size != rows:
        raise ValueError(
            f"learned: obs['progress'] must have shape {(1,) if single else (rows, 1)}, got "
            f"{progress.shape}"
        )
    tensors = {
        "confidence": torch.as_tensor(arrays["confidence"], dtype=torch.float32),
        "mask": torch.as_tensor(arrays["mask"] != 0),
        "active": torch.as_tensor(arrays["active"] != 0),
        "progress": torch.as_tensor(progress, dtype=torch.float32).reshape(rows, 1),
    }
    tensors = {key: value.reshape(rows, -1).to(device) for key, value in tensors.items()}
    return tensors, single


# ------------------------------------------------------------------------------ policy
@dataclass(eq=False)
class LearnedPolicy:
    """The learned policy behind the :class:`agents.policies.Policy` interface.

    Reads ``confidence``, ``mask``, ``active`` and ``progress`` (no optional feature) of an
    ``(L,)`` or ``(N, L)`` observation and returns an int8 action of the same shape, set only
    on active positions. ``deterministic=True`` (evaluation): :func:`deterministic_action`;
    otherwise a draw of :func:`sample` at ``temperature`` from a ``torch.Generator`` seeded
    with ``seed`` (re-seeded by :meth:`configure`, so a run is reproducible). Runs under
    ``torch.inference_mode`` on ``device`` (default: where the net's parameters are; given,
    the net is moved there). Build it from a net or with :meth:`load`.
    """

    name: ClassVar[str] = "learned"
    required_features: ClassVar[tuple[str, ...]] = ()

    net: InitVar[UnmaskingPolicyNet]
    deterministic: bool = True  # threshold at logit 0 (at least one); False: sample
    temperature: float = 1.0  # > 0, divides the logits when sampling
    seed: int = 0  # seed of the torch.Generator used when sampling, >= 0
    checkpoint: str | None = None  # where the weights come from (part of the label)
    device: InitVar[torch.device | str | None] = None

    gen_length: int | None = field(default=None, init=False, repr=False)
    block_length: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self, net: UnmaskingPolicyNet, device: torch.device | str | None) -> None:
        if not isinstance(net, UnmaskingPolicyNet):
            raise ValueError(f"learned: net must be an UnmaskingPolicyNet, got {type(net)}")
        decoding = {"deterministic": self.deterministic, "temperature": self.temperature}
        checked = _checked_decoding(self.name, {**decoding, "seed": self.seed})
        self.temperature, self.seed = checked["temperature"], checked["seed"]
        self._device = torch.device(device) if device is not None else net.head.weight.device
        self.device = self._device  # the InitVar's value, resolved
        self._net = net.to(self._device)
        self._generator = self._new_generator()

    @property
    def model(self) -> UnmaskingPolicyNet:
        """The network (shared, not copied: training it changes this policy)."""
        return self._net

    @classmethod
    def load(
        cls, path: str | Path, *, device: torch.device | str | None = None, **kwargs: Any
    ) -> LearnedPolicy:
        """The policy of the checkpoint folder ``path`` (see :func:`load_policy`); ``kwargs``
        are the fields (``deterministic``, ``temperature``, ``seed``). A field not given takes
        the checkpoint's :func:`evaluation_settings`, then the class default."""
        net = load_policy(path, device=device if device is not None else "cpu")
        settings = {**evaluation_settings(path), **kwargs}
        return cls(net, checkpoint=str(path), device=device, **settings)

    def _new_generator(self) -> torch.Generator:
        generator = torch.Generator(device=self._device)
        generator.manual_seed(self.seed)
        return generator

    def configure(self, *, gen_length: int, block_length: int) -> None:
        """Store the environment's lengths (validated) and re-seed the sampling generator."""
        gen_length = check_int(self.name, "gen_length", gen_length, 1)
        block_length = check_int(self.name, "block_length", block_length, 1, gen_length)
        if gen_length > self._net.config.max_length:
            raise ValueError(
                f"{self.name}: gen_length={gen_length} exceeds the policy's max_length="
                f"{self._net.config.max_length}"
            )
        self.gen_length, self.block_length = gen_length, block_length
        self._generator = self._new_generator()

    def __call__(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Action for an (L,) or (N, L) observation: int8 of the shape of ``obs["active"]``."""
        tensors, single = observation_tensors(obs, self._device)
        length = tensors["active"].shape[1]
        if self.gen_length is not None and length != self.gen_length:
            raise ValueError(
                f"{self.name}: observation of length {length}, but configure() was called "
                f"with gen_length={self.gen_length}"
            )
        with torch.inference_mode():
            logits = self._net(tensors["confidence"], tensors["mask"], tensors["progress"])
            if self.deterministic:
                action = deterministic_action(logits, tensors["active"])
            else:
                action, _ = sample(logits, tensors["active"], self.temperature, self._generator)
        result = action.cpu().numpy()
        return result[0] if single else result


# ------------------------------------------------------------------------------ checkpoints
def save_policy(
    net: UnmaskingPolicyNet, path: str | Path, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write ``net`` to the folder ``path`` (created if needed): ``model.safetensors`` (the
    state dict) and ``config.json`` (the :class:`PolicyConfig` fields, ``observation_layout``
    and ``extra``: any JSON metadata, e.g. the training step). Each file is written to a
    temporary file and renamed, so a reader never sees a half-written one. Returns the folder.
    """
    if not isinstance(net, UnmaskingPolicyNet):
        raise ValueError(f"save_policy: net must be an UnmaskingPolicyNet, got {type(net)}")
    try:
        config = {
            **asdict(net.config),
            "observation_layout": OBSERVATION_LAYOUT,
            "extra": dict(extra or {}),
        }
        text = json.dumps(config, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as error:
        raise ValueError(f"save_policy: extra must be JSON-serialisable: {error}") from error
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    weights = safetensors.torch.save(tensors, metadata={"format": "pt"})
    write_atomic(folder / WEIGHTS_FILE, weights)
    write_atomic(folder / CONFIG_FILE, text.encode("utf-8"))
    return folder


def read_config(path: str | Path) -> tuple[PolicyConfig, dict[str, Any]]:
    """The :class:`PolicyConfig` and ``extra`` metadata of checkpoint folder ``path``'s
    ``config.json``, validated (a ValueError names the file and the problem)."""
    file = Path(path) / CONFIG_FILE
    where = repr(str(file))
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not valid JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(value).__name__}")
    names = [f.name for f in fields(PolicyConfig)]
    missing = [key for key in [*names, "observation_layout"] if key not in value]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}")
    unknown = sorted(set(value) - {*names, "observation_layout", "extra"})
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; put metadata under 'extra'")
    if value["observation_layout"] != OBSERVATION_LAYOUT:
        raise ValueError(
            f"{where}: observation layout {value['observation_layout']!r} differs from this "
            f"code's {OBSERVATION_LAYOUT!r}; the policy was made for other inputs"
        )
    extra = value.get("extra", {})
    if not isinstance(extra, dict):
        raise ValueError(f"{where}: 'extra' must be a JSON object, got {type(extra).__name__}")
    try:
        config = PolicyConfig(**{name: value[name] for name in names})
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    return config, extra


def evaluation_settings(path: str | Path) -> dict[str, Any]:
    """The decoding mode checkpoint folder ``path`` was measured in: ``extra.evaluation`` of its
    ``config.json``, a JSON object with some of ``deterministic`` (bool), ``temperature``
    (> 0) and ``seed`` (int >= 0), e.g. ``{"deterministic": false, "temperature": 2.0}`` for
    a policy chosen by its sampled accuracy; ``{}`` when absent (deterministic mode). Written
    with ``save_policy(net, path, extra={..., "evaluation": {...}})``; a ValueError names the
    file and the problem."""
    _, extra = read_config(path)
    value = extra.get(EVALUATION_KEY, {})
    where = f"{str(Path(path) / CONFIG_FILE)!r}: extra.{EVALUATION_KEY}"
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(EVALUATION_FIELDS))
    if unknown:
        raise ValueError(
            f"{where}: unknown field(s) {unknown}; expected some of {EVALUATION_FIELDS}"
        )
    return _checked_decoding(where, value)


def _checked_decoding(owner: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` (some of the :data:`EVALUATION_FIELDS`) validated as
    :class:`LearnedPolicy` takes them: ``deterministic`` a bool, ``temperature`` a real
    > 0, ``seed`` an integer >= 0; a ValueError starts with ``owner``."""
    checked = dict(settings)
    if "deterministic" in checked and not isinstance(checked["deterministic"], bool):
        raise ValueError(f"{owner}: deterministic must be a bool, got {checked['deterministic']!r}")
    if "temperature" in checked:
        checked["temperature"] = check_real(
            owner, "temperature", checked["temperature"], 0, low_open=True
        )
    if "seed" in checked:
        checked["seed"] = check_int(owner, "seed", checked["seed"], 0)
    return checked


def shipped_checkpoint(env_id: str) -> Path:
    """The folder of the learned policy shipped for the registered id ``env_id`` (trained on
    it with :mod:`agents.grpo`; ``agents/checkpoints/README.md`` says how); a ValueError lists
    the ids that have one when ``env_id`` does not."""
    folder = SHIPPED_DIR / str(env_id)
    if not (folder / CONFIG_FILE).is_file():
        shipped = sorted(p.parent.name for p in SHIPPED_DIR.glob(f"*/{CONFIG_FILE}"))
        raise ValueError(f"no shipped learned policy for {env_id!r}; shipped for: {shipped}")
    return folder


def load_policy(path: str | Path, device: torch.device | str = "cpu") -> UnmaskingPolicyNet:
    """The network saved by :func:`save_policy` in folder ``path``, on ``device``.

    A ValueError names the file and the problem when the folder or a file is missing,
    ``config.json`` is not valid JSON, lacks fields or has another observation layout, or
    ``model.safetensors`` is unreadable (corrupt, truncated) or its tensors do not match the
    config (names, shapes, non-finite values).
    """
    folder = Path(path)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ValueError(f"policy checkpoint {str(folder)!r} {what}")
    absent = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if absent:
        raise ValueError(
            f"policy checkpoint {str(folder)!r}: missing {absent}; a checkpoint folder holds "
            f"{CONFIG_FILE} and {WEIGHTS_FILE} (written by save_policy)"
        )
    config, _ = read_config(folder)
    file = folder / WEIGHTS_FILE
    where = repr(str(file))
    try:
        tensors = safetensors.torch.load(file.read_bytes())
    except Exception as error:  # SafetensorError and friends: corrupt or truncated
        raise ValueError(f"{where}: not a readable safetensors file ({error})") from None
    net = UnmaskingPolicyNet(config)
    expected = {name: tuple(t.shape) for name, t in net.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{where}: tensor names do not match the config: missing {missing}, "
            f"unexpected {unexpected}"
        )
    wrong = {
        name: (tuple(t.shape), expected[name])
        for name, t in tensors.items()
        if tuple(t.shape) != expected[name]
    }
    if wrong:
        details = ", ".join(
            f"{k}: {wrong[k][0]} (expected {wrong[k][1]})" for k in sorted(wrong)[:4]
        ) + (f" and {len(wrong) - 4} more" if len(wrong) > 4 else "")
        raise ValueError(f"{where}: tensor shapes do not match the config: {details}")
    bad = [
        name for name, t in tensors.items() if not (t.is_floating_point() and t.isfinite().all())
    ]
    if bad:
        raise ValueError(f"{where}: tensors not floating point or not finite: {sorted(bad)}")
    net.load_state_dict(tensors)
    return net.to(device)
