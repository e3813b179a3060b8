"""Every notebook in ``notebooks/`` runs top to bottom, at its quick setting, on the CPU.

Each notebook is executed by nbclient in a fresh ``python3`` kernel (ipykernel is in the dev
extra: a missing kernel fails, it is not skipped), in a temporary working directory, with
``DLLM_GYM_NOTEBOOK_RESULTS`` naming a temporary JSON file. A notebook writes its key numbers
there; their ranges are checked for any notebook that writes them (accuracies in [0, 100],
mean NFE in [1, L]), and the notebooks listed in ``CHECKS`` must write them and pass checks of
their own. Committed notebooks carry no outputs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from agents.heuristics import POLICIES

pytestmark = pytest.mark.expensive  # executing the notebooks takes minutes

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 600  # one cell; each quick setting takes under 3 minutes in all (02 the most)
# Parameters that would switch a notebook to its slower run or make it write into the repo.
FULL_RUN_VARIABLES = (
    "DLLM_GYM_NOTEBOOK_FULL",
    "DLLM_GYM_NOTEBOOK_EPISODES",
    "DLLM_GYM_NOTEBOOK_ALL_GRID_POINTS",
    "DLLM_GYM_NOTEBOOK_ITERATIONS",
    "DLLM_GYM_NOTEBOOK_SAVE_FIGURES",
)


def test_notebooks_are_found():
    names = {path.stem for path in NOTEBOOKS}
    assert {"01_unmasking_as_an_mdp", "02_heuristics_ablation", "03_train_a_policy"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_committed_notebook_has_no_outputs(path: Path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}, cell {index}: strip the outputs"
            assert cell.execution_count is None, f"{path.name}, cell {index}: strip the count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in FULL_RUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    results_file = tmp_path / "results.json"
    monkeypatch.setenv("DLLM_GYM_NOTEBOOK_RESULTS", str(results_file))
    # One torch thread: the embedded model is small, and on a 2-core machine shared with
    # another job two threads were measured 3 times slower than one.
    monkeypatch.setenv("DLLM_GYM_NOTEBOOK_THREADS", "1")
    workdir = tmp_path / "cwd"
    workdir.mkdir()

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(workdir)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the traceback, on any error
    print(f"{path.name}: {time.perf_counter() - start:.0f} s")

    assert not any(workdir.iterdir()), "a notebook wrote into its working directory"
    check = CHECKS.get(path.stem)
    if check is not None:
        assert results_file.exists(), f"{path.name} wrote no results to DLLM_GYM_NOTEBOOK_RESULTS"
    if results_file.exists():
        results = json.loads(results_file.read_text())
        check_runs(results.get("runs", []))
        if check is not None:
            check(results)


# -- checks of the key numbers ---------------------------------------------------------------

# (generation length, block length) of the ids the notebooks decode
SEMI_AR = (64, 16)  # DLLMUnmask-Arith-v1
FULL_DIFFUSION = (192, 192)  # DLLMUnmask-Arith-FullDiffusion-v1


def check_runs(runs: list[dict[str, Any]]) -> None:
    """Any notebook's evaluation runs: accuracy a percentage, mean NFE between 1 and L."""
    for run in runs:
        assert 0 <= run["accuracy_pct"] <= 100, run
        assert 1 <= run["mean_nfe"] <= run["gen_length"], run
        if "ci95_pct" in run:
            low, high = run["ci95_pct"]
            assert low <= run["accuracy_pct"] <= high, run


def check_unmasking_as_an_mdp(results: dict[str, Any]) -> None:
    length, block = SEMI_AR
    orders = results["orders"]
    # Left to right: position p is revealed at step p + 1.
    assert orders["left to right"]["unmask_step"] == list(range(1, length + 1))
    assert orders["left to right"]["nfe"] == length
    # Top-k, 4 per step: 16 steps of exactly 4, blocks of 16 completed in order.
    steps = np.array(orders["top-k, 4 per step"]["unmask_step"])
    assert orders["top-k, 4 per step"]["nfe"] == length // 4
    assert np.bincount(steps)[1:].tolist() == [4] * (length // 4)
    blocks = steps.reshape(length // block, block)
    assert (blocks[:-1].max(axis=1) < blocks[1:].min(axis=1)).all()
    # Threshold: every position once, every step reveals something, fewer steps than L.
    threshold = orders["threshold 0.9"]
    steps = np.array(threshold["unmask_step"])
    assert steps.min() >= 1 and steps.max() == threshold["nfe"] < length
    assert (np.bincount(steps)[1:] >= 1).all()
    # The hand-written threshold policy decodes as the library's does (same problem).
    assert results["threshold_episode"] == {
        "nfe": threshold["nfe"],
        "correct": threshold["correct"],
    }
    # The example where revealing a whole block per step breaks the answer.
    example = results["example"]
    assert example["whole_block"] == {"nfe": length // block, "correct": False}
    assert example["one_per_step"] == {"nfe": length, "correct": True}
    assert example["positions_differing"] >= 1
    # Fixed counts cost exactly L / k forward passes.
    runs = {run["label"]: run for run in results["runs"]}
    for k in (1, 4, 16):
        assert runs[f"{k} per step"]["mean_nfe"] == length / k
    assert runs["threshold 0.9"]["mean_nfe"] < length


def check_heuristics_ablation(results: dict[str, Any]) -> None:
    length, block = SEMI_AR
    runs = results["runs"]
    assert all(run["episodes"] == results["episodes"] for run in runs)
    semi_ar = [run for run in runs if (run["gen_length"], run["block_length"]) == SEMI_AR]
    assert {run["policy"] for run in semi_ar} == set(POLICIES), "every heuristic is measured"
    # Section 2: each rule on both ids; the full-diffusion rules include the contrasts printed.
    full = {
        run["label"]: run
        for run in runs
        if (run["gen_length"], run["block_length"]) == FULL_DIFFUSION
    }
    assert {"top_k 8/step", "random 8/step", "threshold tau=0.9", "threshold tau=0.99"} <= set(full)
    assert set(full) <= {run["label"] for run in semi_ar}
    assert len({run["block_length"] for run in runs if run["gen_length"] == length}) >= 3
    assert len({run["gen_length"] for run in runs if run["block_length"] == block}) >= 3
    for run in runs:
        blocks = run["gen_length"] // run["block_length"]
        if run["policy"] == "top_k":
            assert run["mean_nfe"] == blocks * run["hyperparameters"]["steps_per_block"], run
        if run["policy"] == "left_to_right":
            assert run["mean_nfe"] == run["gen_length"], run
    front = results["pareto_front"]
    assert front and set(front) <= {run["label"] for run in semi_ar}
    # Answers that ended early: counted on the same problems, greedily, as the rule's run.
    measured = {(run["label"], run["gen_length"], run["block_length"]): run for run in runs}
    shapes = set()
    for row in results["ended_early"]:
        run = measured[row["label"], row["gen_length"], row["block_length"]]
        wrong = round(run["episodes"] * (1 - run["accuracy_pct"] / 100))
        assert row["wrong"] == wrong, (row, run)  # the same decodes as the run's
        assert 0 <= row["wrong_and_ended_early"] <= min(row["ended_early"], row["wrong"]), row
        assert row["ended_early"] <= run["episodes"], row
        shapes.add((row["gen_length"], row["block_length"]))
    assert shapes == {SEMI_AR, FULL_DIFFUSION}


def check_train_a_policy(results: dict[str, Any]) -> None:
    grpo = results["grpo"]
    length = grpo["gen_length"]
    assert length == SEMI_AR[0]
    logs = grpo["logs"]
    assert set(logs) == {"cold start", "warm start"}
    for run_name, rows in logs.items():
        # One finite row per iteration, in order.
        assert [row["iteration"] for row in rows] == list(range(1, grpo["iterations"] + 1))
        for row in rows:
            assert all(math.isfinite(value) for value in row.values()), (run_name, row)
            # r = correct * ((L - NFE + 1) / L) ** alpha <= correct: mean reward <= accuracy.
            assert 0 <= row["reward"] <= row["accuracy"] + 1e-6 <= 1 + 1e-6, (run_name, row)
            assert 1 <= row["mean_nfe"] <= length, (run_name, row)
            assert 0 <= row["skipped_groups"] <= grpo["prompts_per_iteration"], (run_name, row)
    init = grpo["warm_init"]
    assert 0 <= init["teacher_accuracy"] <= 1 and 0 <= init["agreement"] <= 1, init
    # The warm start imitates threshold 0.9 (a few NFE); the untrained net reveals ~2 a step.
    assert logs["warm start"][0]["mean_nfe"] < logs["cold start"][0]["mean_nfe"]

    runs = {run["label"]: run for run in results["runs"]}
    assert len(runs) == len(results["runs"]), "labels are unique"
    learned = {
        "learned (shipped)", "learned (shipped), deterministic",
        "learned, cold start here", "learned, warm start here",
    }  # fmt: skip
    assert learned <= set(runs)
    assert {run["policy"] for run in runs.values()} == {
        "learned", "threshold", "top_k", "left_to_right"
    }  # fmt: skip
    for run in runs.values():
        assert (run["gen_length"], run["block_length"]) == SEMI_AR, run
        blocks = run["gen_length"] // run["block_length"]
        assert run["episodes"] == results["episodes"], run
        assert blocks <= run["mean_nfe"] <= run["gen_length"], run  # >= one forward per block
        assert run["mean_reward"] <= run["accuracy_pct"] / 100 + 1e-9, run
        if run["policy"] == "top_k":
            assert run["mean_nfe"] == blocks * run["hyperparameters"]["steps_per_block"], run
        if run["policy"] == "left_to_right":
            assert run["mean_nfe"] == run["gen_length"], run
            # Every correct answer earns (L - L + 1) / L = 1 / L.
            expected = run["accuracy_pct"] / 100 / run["gen_length"]
            assert math.isclose(run["mean_reward"], expected, abs_tol=1e-9), run

    # The Pareto front is exactly the set of undominated points, ordered by NFE.
    points = {label: (run["mean_nfe"], run["accuracy_pct"]) for label, run in runs.items()}
    front = results["pareto_front"]
    assert front and set(front) <= set(points)

    def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] <= b[0] and a[1] >= b[1] and a != b

    for label, point in points.items():
        dominated = any(dominates(other, point) for other in points.values())
        assert (label in front) == (not dominated), (label, point, front)
    cheapest = min(points, key=lambda label: (points[label][0], -points[label][1]))
    most_accurate = max(points, key=lambda label: (points[label][1], -points[label][0]))
    assert cheapest in front and most_accurate in front
    assert [points[label][0] for label in front] == sorted(points[label][0] for label in front)

    sb3 = results["sb3"]
    assert sb3["timesteps"] >= sb3["requested_timesteps"]
    assert sb3["episodes"] == len(sb3["episode_rewards"]) >= 1
    assert math.isclose(sb3["mean_episode_reward"], np.mean(sb3["episode_rewards"]), rel_tol=1e-6)
    episodes = zip(
        sb3["episode_rewards"], sb3["episode_lengths"], sb3["episode_nfe"], sb3["episode_correct"],
        strict=True,
    )  # fmt: skip
    for reward, steps, nfe, correct in episodes:
        assert steps == nfe and 1 <= nfe <= length  # one forward pass per env step
        # VecMonitor's episode return is the env's reward at alpha = 1.
        expected = (length - nfe + 1) / length if correct else 0.0
        assert math.isclose(reward, expected, abs_tol=1e-6), (reward, nfe, correct)


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "01_unmasking_as_an_mdp": check_unmasking_as_an_mdp,
    "02_heuristics_ablation": check_heuristics_ablation,
    "03_train_a_policy": check_train_a_policy,
}
