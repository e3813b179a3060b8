"""agents.evaluate: batched evaluation with refilled rows, files and resume, sweeps, the
Pareto front, plots and tables. On DLLMUnmask-Arith-v0 (embedded model, CPU), with policies
written here so that the tests do not depend on agents.heuristics (one test excepted)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest

import dllm_gym  # noqa: F401  (registers the ids)
from agents import evaluate as ev
from agents import results, run_files, statistics
from agents.sweep import folder_name, sweep

ENV_ID = "DLLMUnmask-Arith-v0"
EPISODES = 12
NUM_ENVS = 4  # fewer rows than episodes: rows are refilled


@dataclasses.dataclass
class Threshold:
    """The most confident active position plus every active one with confidence >= tau;
    asks for the entropy feature to check that required features reach the observation."""

    name: ClassVar[str] = "test_threshold"
    required_features: ClassVar[tuple[str, ...]] = ("entropy",)
    tau: float = 0.9

    def __post_init__(self) -> None:
        self.calls = 0
        self.configured: tuple[int, int] | None = None
        self.interrupt_after: int | None = None  # raise KeyboardInterrupt after this many calls

    def configure(self, *, gen_length: int, block_length: int) -> None:
        self.configured = (gen_length, block_length)

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        assert "entropy" in obs
        self.calls += 1
        if self.interrupt_after is not None and self.calls > self.interrupt_after:
            raise KeyboardInterrupt
        active = obs["active"].astype(bool)
        confidence = np.where(active, obs["confidence"], -1.0)
        action = active & (confidence >= self.tau)
        action[np.arange(len(action)), confidence.argmax(axis=1)] |= active.any(axis=1)
        return action.astype(np.int8)


@dataclasses.dataclass
class LeftToRight:
    """The leftmost active position (a second policy family)."""

    name: ClassVar[str] = "test_left_to_right"
    required_features: ClassVar[tuple[str, ...]] = ()

    def configure(self, *, gen_length: int, block_length: int) -> None:
        pass

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        active = obs["active"].astype(bool)
        action = np.zeros_like(active)
        action[np.arange(len(active)), active.argmax(axis=1)] = active.any(axis=1)
        return action.astype(np.int8)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> tuple[dict[str, Any], Path, Threshold]:
    """An uninterrupted run of 12 episodes on 4 rows: its summary, folder and policy."""
    out = tmp_path_factory.mktemp("fresh")
    policy = Threshold()
    summary = ev.evaluate(
        policy, ENV_ID, episodes=EPISODES, num_envs=NUM_ENVS, out_dir=out, progress=False
    )
    return summary, out, policy


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def forbid_envs(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("no environment should be built here")

    monkeypatch.setattr(gym, "make_vec", refuse)


# -- evaluate --------------------------------------------------------------------------------


def test_summary_matches_episode_file(fresh):
    summary, out, policy = fresh
    records = read_lines(out / run_files.EPISODES_FILE)
    assert sorted(r["index"] for r in records) == list(range(EPISODES))  # each exactly once
    assert policy.configured == (48, 16)
    n = len(records)
    correct = sum(r["correct"] for r in records)
    total = max(r["run_seconds"] for r in records)
    assert summary["env_id"] == ENV_ID
    assert summary["label"] == "test_threshold(tau=0.9)"
    assert summary["hyperparameters"] == {"tau": 0.9}
    assert summary["episodes"] == n == EPISODES
    assert summary["accuracy"] == pytest.approx(correct / n)
    assert summary["mean_nfe"] == pytest.approx(np.mean([r["nfe"] for r in records]))
    assert summary["tokens_per_nfe"] == pytest.approx(
        np.mean([r["tokens_per_nfe"] for r in records])
    )
    assert summary["mean_reward"] == pytest.approx(np.mean([r["reward"] for r in records]))
    assert summary["total_seconds"] == pytest.approx(total)
    assert summary["tokens_per_second"] == pytest.approx(48 * n / total)
    assert summary["seconds_per_episode"] == pytest.approx(total / n)
    low, high = summary["accuracy_ci95"]
    assert low <= summary["accuracy"] <= high
    assert (low, high) == pytest.approx(statistics.wilson_interval(correct, n))
    assert all(0 < r["seconds"] <= r["run_seconds"] for r in records)
    assert json.loads((out / run_files.SUMMARY_FILE).read_text()) == summary
    run = json.loads((out / run_files.RUN_FILE).read_text())
    assert (run["env_id"], run["overrides"], run["label"]) == (ENV_ID, {}, summary["label"])


def test_same_results_as_single_env(fresh):
    _, out, _ = fresh
    records = {r["index"]: r for r in read_lines(out / run_files.EPISODES_FILE)}
    policy = Threshold()
    env = gym.make(ENV_ID, obs_features=["entropy"])
    for i in range(EPISODES):
        obs, _ = env.reset(seed=0, options={"index": i})
        done = False
        while not done:
            action = policy({k: v[None] for k, v in obs.items()})[0]
            obs, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        got = records[i]
        assert (got["correct"], got["nfe"]) == (bool(info["correct"]), int(info["nfe"])), i
        assert got["reward"] == pytest.approx(float(reward))
        assert (got["answer"], got["reference"]) == (info["answer"], info["reference"])
    env.close()


def test_wilson_interval_known_values():
    assert statistics.wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert statistics.wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert statistics.wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    # The interval holds the observed proportion exactly, even where rounding would not.
    for n in range(1, 201):
        for successes in (0, n):
            low, high = statistics.wilson_interval(successes, n)
            assert low <= successes / n <= high, (successes, n)


def test_resume_after_interruption(fresh, tmp_path):
    summary, _, fresh_policy = fresh
    out = tmp_path / "run"
    interrupted = Threshold()
    interrupted.interrupt_after = 12
    with pytest.raises(KeyboardInterrupt):
        ev.evaluate(
            interrupted, ENV_ID, episodes=EPISODES, num_envs=NUM_ENVS, out_dir=out, progress=False
        )
    first = read_lines(out / run_files.EPISODES_FILE)
    assert 0 < len(first) < EPISODES
    assert not (out / run_files.SUMMARY_FILE).exists()

    policy = Threshold()
    resumed = ev.evaluate(
        policy, ENV_ID, episodes=EPISODES, num_envs=NUM_ENVS, out_dir=out, progress=False
    )
    records = read_lines(out / run_files.EPISODES_FILE)
    assert records[: len(first)] == first
    done_before = {r["index"] for r in first}
    assert {r["index"] for r in records[len(first) :]} == set(range(EPISODES)) - done_before
    assert sorted(r["index"] for r in records) == list(range(EPISODES))
    assert 0 < policy.calls < fresh_policy.calls
    for key in ("episodes", "accuracy", "mean_nfe", "tokens_per_nfe", "mean_reward"):
        assert resumed[key] == pytest.approx(summary[key]), key
    assert resumed["total_seconds"] >= max(r["run_seconds"] for r in first)


def test_finished_run_resumes_without_an_env(fresh, tmp_path, monkeypatch):
    summary, out, _ = fresh
    out = copy_run(out, tmp_path / "run")
    forbid_envs(monkeypatch)
    again = ev.evaluate(Threshold(), ENV_ID, episodes=EPISODES, out_dir=out, progress=False)
    assert again == summary
    fewer = ev.evaluate(Threshold(), ENV_ID, episodes=5, out_dir=out, progress=False)
    assert fewer["episodes"] == 5  # the summary covers the episodes asked for


def test_torn_last_line_is_repaired(fresh, tmp_path):
    summary, out, _ = fresh
    out = copy_run(out, tmp_path / "run")
    path = out / run_files.EPISODES_FILE
    lines = path.read_text().splitlines(keepends=True)
    torn = lines[-1][: len(lines[-1]) // 2]  # half a line, no newline
    path.write_text("".join(lines[:-1]) + torn)
    policy = Threshold()
    resumed = ev.evaluate(policy, ENV_ID, episodes=EPISODES, out_dir=out, progress=False)
    assert policy.calls > 0  # the torn episode ran again
    repaired = path.read_text().splitlines(keepends=True)
    assert repaired[:-1] == lines[:-1]  # the torn line cut, the rest kept
    assert json.loads(repaired[-1])["index"] == json.loads(lines[-1])["index"]  # and run again
    assert sorted(r["index"] for r in read_lines(path)) == list(range(EPISODES))
    assert resumed["accuracy"] == summary["accuracy"]
    assert resumed["mean_nfe"] == pytest.approx(summary["mean_nfe"])


def test_read_episodes_cuts_an_invalid_last_line_and_rejects_one_inside(tmp_path):
    path = tmp_path / run_files.EPISODES_FILE
    good = '{"index": 0, "correct": true}\n{"index": 1, "correct": false}\n'
    path.write_text(good + "not json\n")
    assert sorted(run_files.read_episodes(path)) == [0, 1]
    assert path.read_text() == good
    path.write_text('{"index": 0}\n{"ind\n{"index": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        run_files.read_episodes(path)
    path.write_text('{"index": 0}\n{"index": 0}\n')
    with pytest.raises(ValueError, match="repeated"):
        run_files.read_episodes(path)


def test_settings_mismatch_and_fresh_start(fresh, tmp_path, monkeypatch):
    _, out, _ = fresh
    out = copy_run(out, tmp_path / "run")
    before = (out / run_files.EPISODES_FILE).read_text()
    with monkeypatch.context() as patch:
        forbid_envs(patch)
        with pytest.raises(ValueError, match=r"label.*resume=False"):
            ev.evaluate(Threshold(tau=0.5), ENV_ID, episodes=EPISODES, out_dir=out)
        with pytest.raises(ValueError, match="overrides"):
            ev.evaluate(Threshold(), ENV_ID, episodes=EPISODES, out_dir=out, overrides={"alpha": 0})
        with pytest.raises(ValueError, match="env_id"):
            ev.evaluate(Threshold(), "DLLMUnmask-Arith-FullDiffusion-v0", out_dir=out)
    assert (out / run_files.EPISODES_FILE).read_text() == before  # nothing touched
    policy = Threshold(tau=0.5)
    summary = ev.evaluate(policy, ENV_ID, episodes=2, out_dir=out, resume=False, progress=False)
    assert summary["episodes"] == 2 and summary["label"] == "test_threshold(tau=0.5)"
    assert sorted(r["index"] for r in read_lines(out / run_files.EPISODES_FILE)) == [0, 1]
    assert json.loads((out / run_files.RUN_FILE).read_text())["label"] == "test_threshold(tau=0.5)"


def test_unwritable_out_dir_fails_before_env_work(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "run"
    forbid_envs(monkeypatch)
    with pytest.raises((OSError, ValueError), match=str(out)):
        ev.evaluate(Threshold(), ENV_ID, episodes=2, out_dir=out)


def test_failed_start_does_not_block_the_folder(tmp_path):
    with pytest.raises(ValueError, match="block_length"):
        ev.evaluate(Threshold(), ENV_ID, episodes=2, overrides={"gen_length": 40}, out_dir=tmp_path)
    summary = ev.evaluate(Threshold(), ENV_ID, episodes=2, out_dir=tmp_path, progress=False)
    assert summary["episodes"] == 2 and summary["overrides"] == {}


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_envs"):
        ev.evaluate(Threshold(), ENV_ID, episodes=2, num_envs=0)
    with pytest.raises(ValueError, match="episodes"):
        ev.evaluate(Threshold(), ENV_ID, episodes=0)
    with pytest.raises(ValueError, match="1000 problems"):
        ev.evaluate(Threshold(), ENV_ID, episodes=1001, num_envs=2, progress=False)


def test_sweep_keeps_one_folder_per_policy_and_resumes(tmp_path, monkeypatch):
    policies = [Threshold(tau=0.5), LeftToRight()]
    summaries = sweep(policies, ENV_ID, episodes=4, num_envs=4, out_dir=tmp_path, progress=False)
    assert [s["label"] for s in summaries] == ["test_threshold(tau=0.5)", "test_left_to_right()"]
    assert summaries[1]["mean_nfe"] == 48  # one token per step
    assert summaries[0]["mean_nfe"] < 48
    for s in summaries:
        folder = tmp_path / folder_name(s["label"])
        assert json.loads((folder / run_files.SUMMARY_FILE).read_text()) == s
    assert folder_name("test_threshold(tau=0.5)") == "test_threshold_tau=0.5"
    forbid_envs(monkeypatch)
    again = sweep(policies, ENV_ID, episodes=4, num_envs=4, out_dir=tmp_path, progress=False)
    assert again == summaries
    with pytest.raises(ValueError, match="repeated"):
        sweep([Threshold(), Threshold()], ENV_ID, episodes=4, out_dir=tmp_path)


def test_with_the_heuristics_threshold_policy(fresh):
    """The one test that uses agents.heuristics (written separately): its threshold policy
    through evaluate, against the threshold policy of these tests."""
    from agents.heuristics import make_policy

    policy = make_policy("threshold", tau=0.9)
    summary = ev.evaluate(policy, ENV_ID, episodes=EPISODES, num_envs=NUM_ENVS, progress=False)
    assert summary["label"].startswith("threshold(") and "tau=0.9" in summary["label"]
    assert summary["episodes"] == EPISODES
    assert summary["accuracy"] == fresh[0]["accuracy"]
    assert summary["mean_nfe"] == pytest.approx(fresh[0]["mean_nfe"])


# -- Pareto front, plots, tables -------------------------------------------------------------


def test_pareto_front():
    points = [
        (10.0, 0.90),  # 0: front
        (5.0, 0.80),  # 1: front
        (12.0, 0.85),  # 2: dominated by 0
        (5.0, 0.80),  # 3: duplicate of 1: on the front too
        (5.0, 0.70),  # 4: same NFE as 1, lower accuracy: dominated
        (20.0, 0.95),  # 5: front
        (20.0, 0.95),  # 6: duplicate of 5
        (3.0, float("nan")),  # 7: never
        (30.0, 0.95),  # 8: same accuracy as 5, more NFE: dominated
        (2.0, 0.10),  # 9: front (cheapest)
    ]
    assert statistics.pareto_front(points) == [9, 1, 3, 0, 5, 6]
    assert statistics.pareto_front([]) == []
    assert statistics.pareto_front([(1.0, 0.5)]) == [0]


def fake_summary(policy: str, hyper: dict[str, Any], nfe: float, correct: int, n: int = 100):
    low, high = statistics.wilson_interval(correct, n)
    label = f"{policy}({', '.join(f'{k}={v!r}' for k, v in hyper.items())})"
    return {
        "policy": policy, "hyperparameters": hyper, "label": label, "episodes": n,
        "accuracy": correct / n, "accuracy_ci95": [low, high], "mean_nfe": nfe,
        "tokens_per_nfe": 48 / nfe,
    }  # fmt: skip


SUMMARIES = [
    fake_summary("threshold", {"tau": 0.5}, 4.1, 84),  # front
    fake_summary("threshold", {"tau": 0.9}, 7.3, 93),  # front
    fake_summary("top_k", {"k": 1}, 48.0, 93),  # dominated by tau=0.9 (same accuracy)
    fake_summary("top_k", {"k": 8}, 6.0, 79),  # dominated by tau=0.5
    fake_summary("threshold", {"tau": 0.99}, 8.7, 94),  # front
]


def test_plot_files(tmp_path):
    title = "Arith accuracy against NFE"
    png, svg = results.plot_accuracy_vs_nfe(SUMMARIES, tmp_path / "plots" / "pareto", title)
    assert png == tmp_path / "plots" / "pareto.png" and svg.suffix == ".svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    for expected in (title, "mean NFE (forward passes)", "accuracy (%)", "Pareto front"):
        assert expected in text
    assert "threshold" in text and "top_k" in text  # the legend


def test_front_numbers_never_overlap_and_the_key_names_each_point():
    """Ten front points crowded into a narrow NFE range (labels would print over each other):
    each gets a number that overlaps no other, and the key beside the plot names it."""
    crowded = [  # 0.1 point and 0.05 NFE apart: a few pixels
        fake_summary("threshold", {"tau": round(0.5 + 0.05 * i, 2)}, 5.0 + 0.05 * i, 850 + i, 1000)
        for i in range(10)
    ]
    crowded.append(fake_summary("top_k", {"k": 1}, 48.0, 60))  # dominated: not numbered
    figure = results.accuracy_vs_nfe_figure(crowded, "crowded front")
    figure.draw_without_rendering()
    renderer = figure.canvas.get_renderer()
    (ax,) = figure.axes
    numbers = [text for text in ax.texts if text.get_text().isdigit()]
    assert sorted(int(text.get_text()) for text in numbers) == list(range(1, 11))
    boxes = [text.get_window_extent(renderer) for text in numbers]
    overlapping = [
        (i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
        if boxes[i].overlaps(boxes[j])
    ]  # fmt: skip
    assert not overlapping
    (key,) = [text for text in ax.texts if text.get_text().startswith("Pareto front")]
    lines = key.get_text().splitlines()[1:]
    assert lines[0] == "1  threshold tau=0.5" and lines[-1] == "10  threshold tau=0.95"
    assert len(lines) == 10 and not any("top_k" in line for line in lines)


def test_tables(tmp_path):
    md, path = results.write_tables(SUMMARIES, tmp_path / "pareto")
    lines = md.read_text().splitlines()
    assert lines[0].startswith("| policy | hyperparameters |")
    assert "95% CI" in lines[0] and "Pareto front" in lines[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [(r[0], r[1], r[-1]) for r in rows] == [
        ("threshold", "tau=0.5", "yes"),
        ("threshold", "tau=0.9", "yes"),
        ("top_k", "k=1", "no"),
        ("top_k", "k=8", "no"),
        ("threshold", "tau=0.99", "yes"),
    ]
    assert rows[1][3] == "93.0" and rows[1][5] == "7.30"
    with path.open(newline="") as file:
        table = list(csv.DictReader(file))
    assert [r["pareto_front"] for r in table] == ["yes", "yes", "no", "no", "yes"]
    assert float(table[0]["accuracy_pct"]) == pytest.approx(84.0)
    low = float(table[0]["ci95_low_pct"])
    assert math.isclose(low, 100 * SUMMARIES[0]["accuracy_ci95"][0])
