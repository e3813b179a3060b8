"""Stable-Baselines3 PPO on an unmasking environment, in one readable file (CleanRL style).

How to bring your own RL library: the registered vector env (one batched forward pass of the
dLLM per step for all sub-environments) goes to SB3 through ``agents.sb3.SB3VecEnv`` and
``VecMonitor``; the policy is either ``agents.sb3.UnmaskingActorCriticPolicy`` (``--policy
unmasking``, the default: the learned policy's transformer, whose per-position logits are
PPO's Bernoulli logits, on the active positions only unless ``--no-mask-inactive``, and whose
pooled per-position features feed the value head) or SB3's ``MultiInputPolicy`` (an MLP over
the flattened observation, ``--policy mlp``).

    python examples/sb3_ppo.py                                # about 2 CPU-minutes, 1 thread
    python examples/sb3_ppo.py --policy mlp
    python examples/sb3_ppo.py --checkpoint runs/grpo/policy  # fine-tune a GRPO policy

Every finished training episode is a row of ``<out-dir>/episodes.csv`` (env transitions so
far, reward, correct, NFE, length, seconds). The script prints the mean reward, accuracy and
NFE of the first and the last ``--window`` training episodes and of ``--eval-episodes``
episodes of the sampling policy on the same ``--eval-split`` problems before and after
training; it writes them to ``result.json``, the curve to ``curve.png`` when matplotlib is
installed and, with the unmasking policy, the trained network to ``<out-dir>/policy``
(``agents.policy.save_policy``; evaluate it with ``dllm-gym eval <env-id> --policy learned
--param checkpoint=<out-dir>/policy``). Uses only the public Gymnasium API, the registered
ids and ``agents.sb3``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor

import dllm_gym  # noqa: F401  (registers the ids)
from agents.arguments import parse_dataclass
from agents.policy import save_policy
from agents.rollout import run_episodes
from agents.sb3 import SB3VecEnv, UnmaskingActorCriticPolicy

POLICIES = ("unmasking", "mlp")


@dataclass
class Args:
    """Hyperparameters of the run; each is a command-line flag (``--n-steps 32``)."""

    env_id: str = field(default="DLLMUnmask-Arith-v0", metadata={"help": "registered id"})
    split: str = field(default="train", metadata={"help": "split whose problems are trained on"})
    alpha: float = field(default=1.0, metadata={"help": "reward's NFE exponent (or weight)"})
    policy: str = field(
        default="unmasking",
        metadata={"help": "unmasking (UnmaskingActorCriticPolicy) or mlp (MultiInputPolicy)"},
    )
    checkpoint: str = field(
        default="", metadata={"help": "save_policy folder to start from (unmasking only)"}
    )
    mask_inactive: bool = field(
        default=True,
        metadata={"help": "unmasking policy: Bernoulli on the active positions only (else all L)"},
    )
    seed: int = field(default=0, metadata={"help": "seeds the envs, PPO and the networks"})
    total_timesteps: int = field(
        default=6144, metadata={"help": "env transitions to train on (all sub-envs together)"}
    )
    num_envs: int = field(default=16, metadata={"help": "sub-environments, one forward a step"})
    n_steps: int = field(default=32, metadata={"help": "steps per sub-env between updates"})
    batch_size: int = field(default=128, metadata={"help": "PPO minibatch, transitions"})
    n_epochs: int = field(default=4, metadata={"help": "optimisation passes per rollout"})
    learning_rate: float = field(default=3e-4, metadata={"help": "Adam learning rate"})
    gamma: float = field(
        default=1.0, metadata={"help": "discount (1: the reward already prices the NFE)"}
    )
    gae_lambda: float = field(default=0.95, metadata={"help": "GAE lambda"})
    clip_range: float = field(default=0.2, metadata={"help": "PPO ratio clip"})
    ent_coef: float = field(default=0.0, metadata={"help": "entropy bonus weight"})
    window: int = field(default=50, metadata={"help": "episodes in the first and last windows"})
    eval_split: str = field(default="test", metadata={"help": "split of the evaluations"})
    eval_episodes: int = field(
        default=96,
        metadata={"help": "episodes of the sampled policy before and after training (0: none)"},
    )
    out_dir: str = field(default="runs/sb3-ppo", metadata={"help": "episodes.csv, curve, policy"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads (0: torch's default)"})
    device: str = field(default="cpu", metadata={"help": "device of the policy network"})
    verbose: int = field(default=0, metadata={"help": "1: print SB3's table every update"})

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if self.checkpoint and self.policy != "unmasking":
            raise ValueError("checkpoint needs policy=unmasking (it holds an UnmaskingPolicyNet)")
        for name in ("total_timesteps", "num_envs", "n_steps", "batch_size", "n_epochs", "window"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.eval_episodes and self.eval_episodes < self.num_envs:
            raise ValueError(
                f"eval_episodes must be 0 or at least num_envs={self.num_envs} (one problem per "
                f"sub-env to start), got {self.eval_episodes}"
            )


class EpisodeLog(BaseCallback):
    """Records every finished episode (VecMonitor's ``episode`` info and the env's
    ``correct`` and ``nfe``) with the number of env transitions trained on so far."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.start = time.perf_counter()

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
            if done:
                self.rows.append(
                    {
                        "timesteps": self.num_timesteps,
                        "reward": float(info["episode"]["r"]),
                        "correct": int(info["correct"]),
                        "nfe": int(info["nfe"]),
                        "length": int(info["episode"]["l"]),
                        "wall_s": round(time.perf_counter() - self.start, 3),
                    }
                )
        return True


def make_model(args: Args, venv: VecMonitor) -> PPO:
    if args.policy == "unmasking":
        extractor: dict[str, Any] = {"mask_inactive": args.mask_inactive}
        if args.checkpoint:
            extractor["checkpoint"] = args.checkpoint
        policy: Any = UnmaskingActorCriticPolicy
        policy_kwargs: dict[str, Any] = {"features_extractor_kwargs": extractor}
    else:
        policy, policy_kwargs = "MultiInputPolicy", {}
    return PPO(
        policy,
        venv,
        learning_rate=args.learning_rate,
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        n_epochs=args.n_epochs,
        gamma=args.gamma,
        gae_lambda=args.gae_lambda,
        clip_range=args.clip_range,
        ent_coef=args.ent_coef,
        policy_kwargs=policy_kwargs,
        seed=args.seed,
        device=args.device,
        verbose=args.verbose,
    )


def evaluate(model: PPO, args: Args) -> list[dict[str, Any]]:
    """The policy as it samples in training on the first ``args.eval_episodes`` problems of
    ``args.eval_split`` (so evaluations before and after training see the same problems),
    played by the project's episode driver on the vector env."""
    envs = gym.make_vec(
        args.env_id,
        num_envs=args.num_envs,
        autoreset_mode=AutoresetMode.DISABLED,
        split=args.eval_split,
        alpha=args.alpha,
    )
    torch.manual_seed(args.seed)  # the policy's sampling noise

    def act(obs: dict[str, np.ndarray], running: np.ndarray) -> np.ndarray:
        return model.predict(obs, deterministic=False)[0]

    episodes = sorted(run_episodes(envs, act, range(args.eval_episodes)), key=lambda e: e.index)
    envs.close()
    return [
        {"reward": e.reward, "correct": int(e.info["correct"]), "nfe": int(e.info["nfe"])}
        for e in episodes
    ]


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean reward, accuracy and NFE of episodes, with the standard error of the reward."""
    reward = np.array([row["reward"] for row in rows])
    return {
        "episodes": len(rows),
        "reward": float(reward.mean()),
        "reward_se": float(reward.std(ddof=1) / np.sqrt(len(rows))) if len(rows) > 1 else 0.0,
        "accuracy": float(np.mean([row["correct"] for row in rows])),
        "nfe": float(np.mean([row["nfe"] for row in rows])),
        **({"until_timesteps": int(rows[-1]["timesteps"])} if "timesteps" in rows[0] else {}),
    }


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict[str, Any]], args: Args, path: Path) -> bool:
    """Reward, accuracy and NFE (running means over ``args.window`` episodes) against env
    transitions; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    steps = np.array([row["timesteps"] for row in rows])
    width = min(args.window, len(rows))

    def running(key: str) -> np.ndarray:
        values = np.array([row[key] for row in rows], dtype=float)
        return np.convolve(values, np.ones(width) / width, mode="valid")

    x = steps[width - 1 :]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(x, running("reward"), label="episode reward")
    left.plot(x, running("correct"), label="accuracy (fraction correct)")
    left.set_xlabel("env transitions (all sub-envs)")
    left.set_ylabel("running mean (unitless, 0 to 1)")
    left.set_ylim(0, 1)
    left.legend()
    right.plot(x, running("nfe"), color="tab:green", label="NFE per episode")
    right.set_xlabel("env transitions (all sub-envs)")
    right.set_ylabel("forward passes per episode")
    right.set_ylim(bottom=0)
    right.legend()
    policy = f"{args.policy} policy"
    if args.policy == "unmasking":
        policy += " (active positions)" if args.mask_inactive else " (all positions)"
    figure.suptitle(
        f"SB3 PPO, {policy}, on {args.env_id} (alpha={args.alpha:g})\n"
        f"running means over {width} training episodes"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def main(args: Args) -> dict[str, Any]:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    venv = VecMonitor(
        SB3VecEnv(args.env_id, num_envs=args.num_envs, split=args.split, alpha=args.alpha)
    )
    model = make_model(args, venv)
    before = evaluate(model, args) if args.eval_episodes else []
    log = EpisodeLog()
    start, cpu = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=args.total_timesteps, callback=log)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = evaluate(model, args) if args.eval_episodes else []
    venv.close()
    rows = log.rows
    if len(rows) < 2:
        raise SystemExit(f"only {len(rows)} episode(s) finished: raise --total-timesteps")
    write_csv(rows, out / "episodes.csv")
    window = min(args.window, len(rows) // 2)
    result = {
        "args": dataclasses.asdict(args),
        "timesteps": int(model.num_timesteps),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "first": summary(rows[:window]),
        "last": summary(rows[-window:]),
        **({"before": summary(before), "after": summary(after)} if before else {}),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.policy == "unmasking":
        save_policy(model.policy.unmasking_net, out / "policy", extra={"sb3_ppo": result})
    plotted = plot(rows, args, out / "curve.png")
    print(
        f"{args.policy} policy, {result['timesteps']} env transitions, {len(rows)} episodes, "
        f"{wall:.0f} s ({cpu:.0f} s CPU)"
    )
    labels = {
        "first": "training, first",
        "last": "training, last",
        "before": f"{args.eval_split} split, before",
        "after": f"{args.eval_split} split, after",
    }
    for name, label in labels.items():
        if name in result:
            s = result[name]
            print(
                f"  {label:22} {s['episodes']:3} episodes: reward {s['reward']:.3f} +- "
                f"{s['reward_se']:.3f}, accuracy {s['accuracy']:6.1%}, NFE {s['nfe']:4.1f}"
            )
    print(f"  wrote {out / 'episodes.csv'}" + (f" and {out / 'curve.png'}" if plotted else ""))
    return result


if __name__ == "__main__":
    main(parse_dataclass(Args, description=__doc__))
