"""GRPO for the learned unmasking policy, in one readable file (CleanRL style).

Group Relative Policy Optimisation as the reference paper ("Learning Unmasking Policies for
Diffusion Language Models") trains its policy against a frozen dLLM:

1. Draw ``prompts_per_iteration`` problems of the training split and run ``group_size``
   rollouts of each on the vector env (``num_envs = prompts x group``, autoreset disabled, so
   every step is one batched forward pass of the dLLM for all rollouts still running). At
   each step the policy samples independent Bernoulli decisions on the active positions and
   the log-likelihood of the step's joint decision is kept.
2. Advantage of a rollout = its reward minus the mean reward of its group (no division by the
   standard deviation); groups whose advantages are all zero carry no signal and are skipped.
3. ``update_epochs`` passes over the batch with PPO's clipped ratio per step (epsilon 0.5 in
   the paper) on the joint log-likelihood of each step's decision, no KL term; AdamW with a
   linear warm-up and a cosine schedule, gradient-norm clipping.

Optionally (``--init-teacher threshold:tau=0.9``) the network first imitates a heuristic
(:func:`imitate`), saved as iteration 0: on the embedded testbed GRPO from the paper's
initialisation drifts to whole-block reveals before it learns to read confidences (README,
"The learned policy and GRPO"). Train on problems the dLLM was not trained on (``--split
validation`` for Arith): on its own training problems it is right almost whatever the
order, so rollouts carry no signal about risky reveals.

    python -m agents.grpo --env-id DLLMUnmask-Arith-v0 --split validation --alpha 1.0 \\
        --iterations 150 --init-teacher threshold:tau=0.9 --out-dir runs/grpo-arith
    dllm-gym train DLLMUnmask-Arith-v0 --split validation --alpha 1.0 --iterations 150 \\
        --init-teacher threshold:tau=0.9 --out-dir runs/grpo-arith

Every iteration appends a row to ``log.csv`` (reward, accuracy, mean NFE, loss, ...) and, when
the ``tensorboard`` package is installed, to TensorBoard; every ``checkpoint_every``
iterations a checkpoint (the policy as safetensors + JSON, the optimiser and the iteration) is
written atomically, and a run started again with the same ``out_dir`` resumes from the last
one exactly: prompts and sampling noise are functions of (seed, iteration), not of the
history. Uses only the public Gymnasium API and the registered ids.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.vector import AutoresetMode
from tqdm.auto import tqdm

import dllm_gym  # noqa: F401  (registers the ids)
from agents.arguments import parse_dataclass
from agents.files import write_atomic
from agents.heuristics import Heuristic, make_policy
from agents.policy import (
    PolicyConfig,
    UnmaskingPolicyNet,
    load_policy,
    log_prob,
    sample,
    save_policy,
)
from agents.rollout import run_episodes


@dataclass
class Args:
    """Hyperparameters of a GRPO run; each is a command-line flag (``--group-size 8``)."""

    env_id: str = field(default="DLLMUnmask-Arith-v0", metadata={"help": "registered id"})
    split: str = field(default="train", metadata={"help": "split whose problems are trained on"})
    alpha: float = field(default=1.0, metadata={"help": "reward's NFE exponent (or weight)"})
    reward: str = field(default="multiplicative", metadata={"help": "multiplicative or additive"})
    seed: int = field(default=0, metadata={"help": "seeds prompts, sampling and initialisation"})
    iterations: int = field(default=100, metadata={"help": "batches of rollouts to train on"})
    prompts_per_iteration: int = field(default=8, metadata={"help": "prompts P per batch"})
    group_size: int = field(default=8, metadata={"help": "rollouts G of each prompt"})
    temperature: float = field(default=1.0, metadata={"help": "policy's sampling temperature"})
    clip_epsilon: float = field(default=0.5, metadata={"help": "PPO ratio clip"})
    update_epochs: int = field(default=2, metadata={"help": "optimisation passes per batch"})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW peak learning rate"})
    warmup_iterations: int = field(default=10, metadata={"help": "linear warm-up, iterations"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=0.2, metadata={"help": "gradient-norm clip"})
    checkpoint_every: int = field(default=10, metadata={"help": "iterations between saves"})
    out_dir: str = field(default="runs/grpo", metadata={"help": "log, checkpoints, final policy"})
    init_teacher: str = field(
        default="",
        metadata={"help": "warm start: imitate this heuristic before GRPO, e.g. "
                          "'threshold:tau=0.9' (empty: the paper's initialisation)"},
    )  # fmt: skip
    init_prompts: int = field(default=256, metadata={"help": "warm start: teacher episodes"})
    init_steps: int = field(default=400, metadata={"help": "warm start: Adam steps on them"})
    device: str = field(default="cpu", metadata={"help": "device of the policy network"})
    workers: int = field(
        default=0,
        metadata={"help": "roll out on this many Ray actors, each with a dLLM replica "
                          "(0: in this process; the same rollouts either way)"},
    )  # fmt: skip
    gpus_per_worker: float = field(default=0.0, metadata={"help": "GPUs Ray reserves per actor"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def __post_init__(self) -> None:
        positive = (
            "iterations", "prompts_per_iteration", "group_size", "update_epochs",
            "checkpoint_every", "init_prompts", "init_steps",
        )  # fmt: skip
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.group_size < 2:
            raise ValueError(f"group_size must be at least 2 (advantages are relative to the "
                             f"group), got {self.group_size}")  # fmt: skip
        for name in ("temperature", "learning_rate", "max_grad_norm", "clip_epsilon"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.init_teacher:
            parse_teacher(self.init_teacher)  # fails early on an unknown heuristic
        if not 0 <= self.warmup_iterations <= self.iterations:
            raise ValueError(
                f"warmup_iterations must be in [0, iterations={self.iterations}], "
                f"got {self.warmup_iterations}"
            )
        if not 0 <= self.workers <= self.num_envs:
            raise ValueError(
                f"workers must be in [0, prompts x group = {self.num_envs}], got {self.workers}"
            )
        if self.gpus_per_worker < 0:
            raise ValueError(f"gpus_per_worker must be >= 0, got {self.gpus_per_worker}")

    @property
    def num_envs(self) -> int:
        return self.prompts_per_iteration * self.group_size


# -- rollouts ---------------------------------------------------------------------------------


@dataclass
class Batch:
    """The steps of one iteration's rollouts, flattened over (step, row) pairs that ran."""

    confidence: torch.Tensor  # (S, L)
    mask: torch.Tensor  # (S, L)
    progress: torch.Tensor  # (S, 1)
    active: torch.Tensor  # (S, L) bool
    action: torch.Tensor  # (S, L) int8
    old_log_prob: torch.Tensor  # (S,)
    row: torch.Tensor  # (S,) the rollout each step belongs to


@dataclass
class Rollouts:
    batch: Batch
    reward: np.ndarray  # (N,)
    correct: np.ndarray  # (N,)
    nfe: np.ndarray  # (N,)


def as_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), device=device)


def play_episodes(
    envs: gym.vector.VectorEnv,
    indices: list[int],
    act: Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run one episode on every row of ``envs`` (autoreset disabled; row i on problem
    ``indices[i]``), choosing each step's actions with ``act(obs, running)``; each row's final
    reward, correctness and NFE."""
    n = envs.num_envs
    reward, correct, nfe = np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
    for episode in run_episodes(envs, act, indices, refill=False):
        reward[episode.row] = episode.reward
        correct[episode.row] = episode.info["correct"]
        nfe[episode.row] = episode.info["nfe"]
    return reward, correct, nfe


@torch.no_grad()
def collect_rollouts(
    net: UnmaskingPolicyNet,
    envs: gym.vector.VectorEnv,
    indices: list[int],
    temperature: float,
    generator: torch.Generator,
) -> Rollouts:
    """Run one episode on every row (row i on problem ``indices[i]``) with sampled actions."""
    device = next(net.parameters()).device
    steps: list[dict[str, torch.Tensor]] = []

    def act(obs: dict[str, np.ndarray], running: np.ndarray) -> np.ndarray:
        rows = torch.as_tensor(np.flatnonzero(running), device=device)
        confidence = as_tensor(obs["confidence"], device).float()
        mask = as_tensor(obs["mask"], device).long()
        progress = as_tensor(obs["progress"], device).float()
        active = as_tensor(obs["active"], device).bool()
        logits = net(confidence, mask, progress)
        action, step_log_prob = sample(logits, active, temperature, generator)
        steps.append(
            {
                "confidence": confidence[rows], "mask": mask[rows], "progress": progress[rows],
                "active": active[rows], "action": action[rows],
                "old_log_prob": step_log_prob[rows], "row": rows,
            }
        )  # fmt: skip
        return action.cpu().numpy()

    reward, correct, nfe = play_episodes(envs, indices, act)
    batch = Batch(**{key: torch.cat([s[key] for s in steps]) for key in steps[0]})
    return Rollouts(batch=batch, reward=reward, correct=correct, nfe=nfe)


def group_advantages(reward: np.ndarray, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Reward minus its group's mean, and which rollouts belong to a group with any signal."""
    grouped = reward.reshape(-1, group_size)
    advantage = grouped - grouped.mean(axis=1, keepdims=True)
    informative = np.repeat(~np.all(np.isclose(advantage, 0.0), axis=1), group_size)
    return advantage.reshape(-1), informative


# -- warm start (optional) ---------------------------------------------------------------------


def parse_teacher(text: str) -> Heuristic:
    """``"threshold:tau=0.9"`` -> the heuristic ``make_policy("threshold", tau=0.9)``."""
    name, _, params = text.partition(":")
    values: dict[str, Any] = {}
    for item in filter(None, params.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"init_teacher {text!r}: expected NAME:KEY=VALUE,..., got {item!r}")
        values[key.strip()] = json.loads(value) if value.strip()[:1] in "-0123456789[" else value
    return make_policy(name.strip(), **values)


def imitate(
    net: UnmaskingPolicyNet, envs: gym.vector.VectorEnv, args: Args, split_size: int
) -> dict[str, float]:
    """Warm start: behaviour-clone a heuristic (``args.init_teacher``) on ``init_prompts``
    training problems. The teacher decodes them on the vector env; the net then learns its
    reveal decisions on the active positions (binary cross-entropy, Adam, ``init_steps`` steps
    of 64 decoding steps each). Returns the teacher's accuracy and NFE and the final agreement
    of ``logit > 0`` with the teacher on active positions."""
    teacher = parse_teacher(args.init_teacher)
    settings = gym.spec(args.env_id).kwargs
    teacher.configure(gen_length=settings["gen_length"], block_length=settings["block_length"])
    device = next(net.parameters()).device
    rng = np.random.default_rng([args.seed, 10**6])
    problems = rng.choice(split_size, size=min(args.init_prompts, split_size), replace=False)
    keys = ("confidence", "mask", "progress", "active")
    recorded: dict[str, list[np.ndarray]] = {key: [] for key in (*keys, "action")}
    correct, nfe = [], []
    n = envs.num_envs

    def act(obs: dict[str, np.ndarray], running: np.ndarray) -> np.ndarray:
        action = teacher(obs)
        keep = running & (np.arange(n) < real)
        for key in keys:
            recorded[key].append(np.asarray(obs[key])[keep])
        recorded["action"].append(np.asarray(action)[keep])
        return action

    for begin in range(0, len(problems), n):
        chunk = problems[begin : begin + n].tolist()
        chunk += chunk[:1] * (n - len(chunk))  # pad the last batch (its copies are dropped)
        real = min(n, len(problems) - begin)
        _, chunk_correct, chunk_nfe = play_episodes(envs, chunk, act)
        correct += chunk_correct[:real].tolist()
        nfe += chunk_nfe[:real].tolist()
    data = {key: as_tensor(np.concatenate(v), device) for key, v in recorded.items()}
    active, target = data["active"].bool(), data["action"].float()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(args.seed)
    for _ in range(args.init_steps):
        rows = torch.randint(len(target), (64,), generator=generator).to(device)
        logits = net(data["confidence"][rows].float(), data["mask"][rows].long(),
                     data["progress"][rows].float())  # fmt: skip
        loss = F.binary_cross_entropy_with_logits(logits, target[rows], reduction="none")
        loss = (loss * active[rows]).sum() / active[rows].sum().clamp(min=1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    agree = torch.zeros((), device=device)
    with torch.no_grad():  # in chunks: a slow teacher records tens of thousands of states
        for begin in range(0, len(target), 1024):
            rows = slice(begin, begin + 1024)
            logits = net(data["confidence"][rows].float(), data["mask"][rows].long(),
                         data["progress"][rows].float())  # fmt: skip
            agree += (((logits > 0).float() == target[rows]) & active[rows]).sum()
    agree = agree / active.sum()
    return {"teacher_accuracy": float(np.mean(correct)), "teacher_nfe": float(np.mean(nfe)),
            "agreement": float(agree), "bc_loss": loss.item()}  # fmt: skip


# -- optimisation -----------------------------------------------------------------------------


def learning_rate_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` optimiser steps, then a cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def clipped_loss(
    net: UnmaskingPolicyNet, batch: Batch, advantage: torch.Tensor, args: Args
) -> tuple[torch.Tensor, float]:
    """PPO's clipped surrogate per step, averaged over the (step, rollout) pairs."""
    logits = net(batch.confidence, batch.mask, batch.progress)
    new_log_prob = log_prob(logits, batch.active, batch.action, args.temperature)
    ratio = torch.exp(new_log_prob - batch.old_log_prob)
    step_advantage = advantage[batch.row]
    clipped = ratio.clamp(1 - args.clip_epsilon, 1 + args.clip_epsilon)
    loss = -torch.minimum(ratio * step_advantage, clipped * step_advantage).mean()
    clip_fraction = ((ratio - 1).abs() > args.clip_epsilon).float().mean().item()
    return loss, clip_fraction


def select(batch: Batch, keep: torch.Tensor) -> Batch:
    return Batch(**{f.name: getattr(batch, f.name)[keep] for f in dataclasses.fields(Batch)})


# -- checkpoints and logs ---------------------------------------------------------------------


LOG_COLUMNS = (
    "iteration", "reward", "accuracy", "mean_nfe", "loss", "clip_fraction",
    "skipped_groups", "learning_rate", "seconds",
)  # fmt: skip


def save_checkpoint(
    out_dir: Path, iteration: int, net: UnmaskingPolicyNet, optimizer, scheduler, args: Args
) -> Path:
    """Write ``checkpoints/iteration_XXXXX`` whole, then point ``latest.json`` at it."""
    checkpoints = out_dir / "checkpoints"
    final = checkpoints / f"iteration_{iteration:05d}"
    staging = checkpoints / f".staging_{iteration:05d}"
    shutil.rmtree(staging, ignore_errors=True)
    save_policy(net, staging / "policy", extra={"args": dataclasses.asdict(args),
                                                "iteration": iteration})  # fmt: skip
    trainer = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
               "iteration": iteration}  # fmt: skip
    torch.save(trainer, staging / "trainer.pt")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    latest = {"iteration": iteration, "path": final.name}
    write_atomic(out_dir / "latest.json", json.dumps(latest).encode())
    return final


def load_latest(out_dir: Path) -> tuple[int, Path] | None:
    pointer = out_dir / "latest.json"
    if not pointer.is_file():
        return None
    latest = json.loads(pointer.read_text())
    return int(latest["iteration"]), out_dir / "checkpoints" / latest["path"]


def trim_log(path: Path, iteration: int) -> None:
    """Keep the log's rows up to ``iteration`` (rows after a checkpoint are redone on resume)."""
    if not path.is_file():
        return
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["iteration"]) <= iteration]
    lines = [",".join(LOG_COLUMNS)] + [",".join(r[c] for c in LOG_COLUMNS) for r in rows]
    write_atomic(path, ("\n".join(lines) + "\n").encode())


def check_resumable(out_dir: Path, args: Args) -> None:
    """A run resumes only with the settings that shaped its trajectory."""
    saved_path = out_dir / "args.json"
    if not saved_path.is_file():
        return
    saved = json.loads(saved_path.read_text())
    ignored = {
        "iterations", "checkpoint_every", "progress", "device", "out_dir", "workers",
        "gpus_per_worker",
    }  # fmt: skip
    current = dataclasses.asdict(args)
    different = {k: (saved.get(k), v) for k, v in current.items()
                 if k not in ignored and saved.get(k) != v}  # fmt: skip
    if different:
        listed = ", ".join(f"{k}: saved {a!r}, given {b!r}" for k, (a, b) in different.items())
        raise ValueError(f"out_dir {out_dir} holds a run with other settings ({listed}); "
                         "use another --out-dir")  # fmt: skip


# -- the training loop ------------------------------------------------------------------------


def make_optimizer(
    net: UnmaskingPolicyNet, args: Args
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW and its schedule: linear warm-up, then cosine decay over every update."""
    optimizer = torch.optim.AdamW(
        net.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay
    )
    total_steps = args.iterations * args.update_epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: learning_rate_factor(
            step, args.warmup_iterations * args.update_epochs, total_steps
        ),
    )
    return optimizer, scheduler


def update(
    net: UnmaskingPolicyNet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    rollouts: Rollouts,
    args: Args,
) -> dict[str, Any]:
    """``update_epochs`` clipped-ratio passes over the rollouts of informative groups; the
    mean loss, clip fraction and the number of groups skipped (all advantages zero)."""
    device = next(net.parameters()).device
    advantage, informative = group_advantages(rollouts.reward, args.group_size)
    advantage_t = torch.as_tensor(advantage, dtype=torch.float32, device=device)
    keep = torch.as_tensor(informative, device=device)[rollouts.batch.row]
    losses, clip_fractions = [], []
    for _ in range(args.update_epochs):
        if keep.any():
            loss, clip_fraction = clipped_loss(net, select(rollouts.batch, keep), advantage_t, args)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), args.max_grad_norm)
            optimizer.step()
            losses.append(loss.item())
            clip_fractions.append(clip_fraction)
        scheduler.step()
    return {
        "loss": float(np.mean(losses)) if losses else 0.0,
        "clip_fraction": float(np.mean(clip_fractions)) if clip_fractions else 0.0,
        "skipped_groups": int((~informative).sum() // args.group_size),
    }


def start_or_resume(out_dir: Path, args: Args, envs: gym.vector.VectorEnv):
    """The net, optimizer and schedule at the latest checkpoint of ``out_dir`` (or new, after
    the optional warm start), and the iteration to continue from."""
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    net = UnmaskingPolicyNet(PolicyConfig()).to(device)
    optimizer, scheduler = make_optimizer(net, args)
    start = 0
    latest = load_latest(out_dir)
    if latest is not None:
        start, path = latest
        net.load_state_dict(load_policy(path / "policy").state_dict())
        state = torch.load(path / "trainer.pt", map_location=device, weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    elif args.init_teacher:
        warm = imitate(net, envs, args, len(envs.unwrapped.problems))
        write_atomic(out_dir / "init.json", json.dumps(warm, indent=2).encode())
        save_checkpoint(out_dir, 0, net, optimizer, scheduler, args)
    return net, optimizer, scheduler, start


def train(args: Args) -> dict[str, Any]:
    """Train (or resume) a policy; returns the last iteration's log row."""
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_resumable(out_dir, args)
    write_atomic(out_dir / "args.json", json.dumps(dataclasses.asdict(args), indent=2).encode())
    distributed = (
        {"workers": args.workers, "num_gpus_per_worker": args.gpus_per_worker}
        if args.workers
        else {}
    )
    envs = gym.make_vec(
        args.env_id, num_envs=args.num_envs, autoreset_mode=AutoresetMode.DISABLED,
        split=args.split, reward=args.reward, alpha=args.alpha, **distributed,
    )  # fmt: skip
    split_size = len(envs.unwrapped.problems)
    net, optimizer, scheduler, start = start_or_resume(out_dir, args, envs)
    device = next(net.parameters()).device
    trim_log(out_dir / "log.csv", start)
    writer = tensorboard_writer(out_dir)
    row: dict[str, Any] = {}
    bar = tqdm(range(start, args.iterations), disable=not args.progress, desc="GRPO",
               initial=start, total=args.iterations)  # fmt: skip
    for iteration in bar:
        started = time.perf_counter()
        rng = np.random.default_rng([args.seed, iteration])
        prompts = rng.choice(split_size, size=args.prompts_per_iteration, replace=False)
        indices = np.repeat(prompts, args.group_size).tolist()
        generator = torch.Generator(device=device).manual_seed(args.seed * 1_000_003 + iteration)
        rollouts = collect_rollouts(net, envs, indices, args.temperature, generator)
        losses = update(net, optimizer, scheduler, rollouts, args)
        row = {
            "iteration": iteration + 1,
            "reward": float(rollouts.reward.mean()),
            "accuracy": float(rollouts.correct.mean()),
            "mean_nfe": float(rollouts.nfe.mean()),
            **losses,
            "learning_rate": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
        }
        append_log(out_dir / "log.csv", row, writer)
        bar.set_postfix(reward=f"{row['reward']:.3f}", acc=f"{row['accuracy']:.2f}",
                        nfe=f"{row['mean_nfe']:.1f}")  # fmt: skip
        if (iteration + 1) % args.checkpoint_every == 0 or iteration + 1 == args.iterations:
            save_checkpoint(out_dir, iteration + 1, net, optimizer, scheduler, args)
    if (out_dir / "latest.json").is_file():
        _, path = load_latest(out_dir)
        shutil.rmtree(out_dir / "policy", ignore_errors=True)
        shutil.copytree(path / "policy", out_dir / "policy")
    envs.close()
    if writer is not None:
        writer.close()
    return row


def append_log(path: Path, row: dict[str, Any], writer) -> None:
    new = not path.is_file()
    with open(path, "a", newline="") as handle:
        if new:
            handle.write(",".join(LOG_COLUMNS) + "\n")
        handle.write(",".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c])
                              for c in LOG_COLUMNS) + "\n")  # fmt: skip
        handle.flush()
        os.fsync(handle.fileno())
    if writer is not None:
        for name in LOG_COLUMNS[1:]:
            writer.add_scalar(f"grpo/{name}", row[name], row["iteration"])


def tensorboard_writer(out_dir: Path):
    """A TensorBoard writer when the ``tensorboard`` package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


def main() -> None:
    print(train(parse_dataclass(Args, description=__doc__)))


if __name__ == "__main__":
    main()
