"""GRPO: advantages, schedule, a short training run, checkpoints and exact resumption."""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch

from agents import grpo
from agents.grpo import Args, group_advantages, learning_rate_factor, train
from agents.policy import PolicyConfig, UnmaskingPolicyNet, load_policy


def tiny_args(out_dir, iterations: int, **overrides) -> Args:
    settings = {
        "out_dir": str(out_dir),
        "iterations": iterations,
        "prompts_per_iteration": 2,
        "group_size": 4,
        "checkpoint_every": 1,
        "warmup_iterations": 1,
        "learning_rate": 1e-3,
        "progress": False,
    }
    return Args(**{**settings, **overrides})


def read_log(path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_group_advantages_subtract_the_group_mean_and_flag_silent_groups():
    reward = np.array([1.0, 0.0, 0.5, 0.5, 0.2, 0.2, 0.2, 0.2])
    advantage, informative = group_advantages(reward, group_size=4)
    np.testing.assert_allclose(advantage, [0.5, -0.5, 0.0, 0.0, 0, 0, 0, 0])
    assert informative.tolist() == [True] * 4 + [False] * 4


def test_learning_rate_warms_up_then_decays_by_cosine():
    factors = [learning_rate_factor(step, warmup=2, total=6) for step in range(7)]
    assert factors[:2] == [0.5, 1.0]
    assert factors[2] == pytest.approx(1.0)
    assert factors[4] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factors[6] == pytest.approx(0.0)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="group_size must be at least 2"):
        Args(group_size=1)
    with pytest.raises(ValueError, match="learning_rate must be positive"):
        Args(learning_rate=0.0)
    with pytest.raises(ValueError, match="warmup_iterations"):
        Args(iterations=3, warmup_iterations=5)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """Two iterations in one go; the tests below read it and resume against it."""
    out_dir = tmp_path_factory.mktemp("straight")
    last = train(tiny_args(out_dir, iterations=2))
    return out_dir, last


@pytest.mark.expensive
def test_training_logs_finite_losses_and_checkpoints_the_policy(straight_run):
    out_dir, last = straight_run
    rows = read_log(out_dir / "log.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    rollouts = 2 * 4  # tiny_args: prompts_per_iteration x group_size
    for row in rows:
        assert math.isfinite(float(row["loss"]))
        # Means over the iteration's rollouts: counts of correct episodes and of forwards.
        correct = float(row["accuracy"]) * rollouts
        forwards = float(row["mean_nfe"]) * rollouts
        assert correct == pytest.approx(round(correct)) and 0 <= round(correct) <= rollouts
        assert forwards == pytest.approx(round(forwards))
        assert rollouts <= round(forwards) <= rollouts * 48  # 1 to L forwards each
    assert last["iteration"] == 2
    policy = load_policy(out_dir / "policy")
    saved = load_policy(out_dir / "checkpoints" / "iteration_00002" / "policy")
    for a, b in zip(policy.state_dict().values(), saved.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # Sampled rollouts differ in NFE, so groups carry signal and the weights moved.
    assert any(int(r["skipped_groups"]) < 2 for r in rows)
    torch.manual_seed(0)
    initial = UnmaskingPolicyNet(PolicyConfig()).state_dict()
    assert not torch.equal(initial["head.weight"], policy.state_dict()["head.weight"])


@pytest.mark.expensive
def test_resuming_after_an_interruption_continues_from_the_same_state(
    straight_run, tmp_path, monkeypatch
):
    out_dir, _ = straight_run
    calls = {"n": 0}
    collect = grpo.collect_rollouts

    def interrupted_in_the_second_iteration(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return collect(*args, **kwargs)

    monkeypatch.setattr(grpo, "collect_rollouts", interrupted_in_the_second_iteration)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_args(tmp_path, iterations=2))
    assert json.loads((tmp_path / "latest.json").read_text())["iteration"] == 1
    monkeypatch.setattr(grpo, "collect_rollouts", collect)
    train(tiny_args(tmp_path, iterations=2))  # resumes at iteration 1
    a = load_policy(out_dir / "policy").state_dict()
    b = load_policy(tmp_path / "policy").state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name

    def without_time(path):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in read_log(path)]

    assert without_time(out_dir / "log.csv") == without_time(tmp_path / "log.csv")


@pytest.mark.expensive
def test_a_run_resumes_only_with_the_same_settings(straight_run, tmp_path):
    out_dir, _ = straight_run
    shutil.copytree(out_dir, tmp_path / "copy")
    with pytest.raises(ValueError, match=r"other settings.*alpha"):
        train(tiny_args(tmp_path / "copy", iterations=3, alpha=0.5))


@pytest.mark.expensive
def test_warm_start_imitates_the_teacher_and_is_not_redone_on_resume(tmp_path, monkeypatch):
    args = tiny_args(tmp_path, iterations=1, init_teacher="threshold:tau=0.9", init_prompts=8,
                     init_steps=80)  # fmt: skip
    train(args)
    warm = json.loads((tmp_path / "init.json").read_text())
    assert warm["agreement"] > 0.9  # logit > 0 reproduces the teacher's reveals
    assert 0.0 <= warm["teacher_accuracy"] <= 1.0 and 1 <= warm["teacher_nfe"] <= 48
    # The warm-started policy (iteration 0) reveals what the teacher reveals on a fresh problem.
    net = load_policy(tmp_path / "checkpoints" / "iteration_00000" / "policy")
    confidence = torch.tensor([[0.999, 0.2, 0.95, 0.5] + [0.99] * 12 + [0.3] * 32])
    mask = torch.ones_like(confidence)
    logits = net(confidence, mask, torch.zeros(1, 1))[0, :16]
    assert torch.equal(logits > 0, confidence[0, :16] >= 0.9)

    def no_second_warm_start(*args, **kwargs):
        raise AssertionError("the warm start ran again on resume")

    monkeypatch.setattr(grpo, "imitate", no_second_warm_start)
    train(tiny_args(tmp_path, iterations=2, init_teacher="threshold:tau=0.9", init_prompts=8,
                    init_steps=80))  # fmt: skip
    assert [int(r["iteration"]) for r in read_log(tmp_path / "log.csv")] == [1, 2]


def test_warm_start_teacher_is_validated():
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        Args(init_teacher="nope")
    with pytest.raises(ValueError, match="expected NAME:KEY=VALUE"):
        Args(init_teacher="threshold:tau")
