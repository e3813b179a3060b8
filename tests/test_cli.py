"""The ``dllm-gym`` command: what each subcommand prints and writes, and one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from agents.cli import main
from agents.policy import PolicyConfig, UnmaskingPolicyNet, save_policy

ARITH = "DLLMUnmask-Arith-v0"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_list_shows_every_registered_id_with_its_settings(capsys):
    status, out, _ = run(capsys, "list")
    assert status == 0
    rows = {line.split(" | ")[0].strip("| "): line for line in out.splitlines()[2:]}
    assert set(rows) == {
        "DLLMUnmask-GSM8K-v0",
        "DLLMUnmask-GSM8K-FullDiffusion-v0",
        "DLLMUnmask-Arith-v0",
        "DLLMUnmask-Arith-FullDiffusion-v0",
        "DLLMUnmask-Arith-v1",
        "DLLMUnmask-Arith-FullDiffusion-v1",
        *(f"DLLMUnmask-{name}-{kind}"
          for name in ("MATH500", "HumanEval", "Countdown", "Sudoku")
          for kind in ("v0", "FullDiffusion-v0")),
    }  # fmt: skip
    assert "| arith | embedded | 48 | 16 |" in rows[ARITH]
    assert "| arith-v1 | embedded-v1 | 192 | 192 |" in rows["DLLMUnmask-Arith-FullDiffusion-v1"]
    assert "| humaneval | GSAI-ML/LLaDA-8B-Instruct | 512 | 32 |" in rows["DLLMUnmask-HumanEval-v0"]


def test_eval_prints_and_writes_the_same_summary(capsys, tmp_path):
    out_dir = tmp_path / "run"
    status, out, _ = run(
        capsys, "eval", ARITH, "--policy", "threshold", "--param", "tau=0.9",
        "--episodes", "6", "--num-envs", "4", "--out", str(out_dir), "--quiet",
    )  # fmt: skip
    assert status == 0
    summary = json.loads((out_dir / "summary.json").read_text())
    episodes = [json.loads(line) for line in (out_dir / "episodes.jsonl").read_text().splitlines()]
    assert sorted(e["index"] for e in episodes) == list(range(6))
    accuracy = sum(e["correct"] for e in episodes) / 6
    assert summary["accuracy"] == pytest.approx(accuracy)
    assert f"accuracy {100 * accuracy:.1f}%" in out
    assert f"mean NFE {summary['mean_nfe']:.2f}" in out
    assert "threshold(tau=0.9)" in out


def test_play_reveals_every_position_once_and_reports_the_answer(capsys):
    status, out, _ = run(
        capsys, "play", ARITH, "--policy", "top_k", "--param", "steps_per_block=4",
        "--index", "3",
    )  # fmt: skip
    assert status == 0
    revealed = [
        json.loads(line.split("revealed positions ")[1])
        for line in out.splitlines()
        if line.startswith("step ")
    ]
    assert len(revealed) == 12  # 48 positions, 4 a step
    assert sorted(p for step in revealed for p in step) == list(range(48))
    assert all(len(step) == 4 for step in revealed)
    assert "NFE 12" in out.splitlines()[-1] and "reference" in out.splitlines()[-1]


def test_sweep_writes_figure_and_table(capsys, tmp_path):
    out_dir = tmp_path / "sweep"
    status, out, _ = run(
        capsys, "sweep", ARITH, "--policies", "threshold", "left_to_right",
        "--grid", "threshold:tau=0.5,0.9", "--episodes", "4", "--num-envs", "4",
        "--out", str(out_dir), "--quiet",
    )  # fmt: skip
    assert status == 0
    for suffix in (".png", ".svg", ".md", ".csv"):
        assert (out_dir / f"pareto{suffix}").stat().st_size > 0
    table = (out_dir / "pareto.md").read_text()
    assert "0.5" in table and "0.9" in table and "left_to_right" in table
    assert table in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "DLLMUnmask-Nope-v0", "--policy", "threshold"], "unknown environment id"),
        (["eval", ARITH, "--policy", "best"], "unknown policy 'best'"),
        (["eval", ARITH, "--policy", "threshold", "--param", "tau=1.5"], "tau"),
        (["eval", ARITH, "--policy", "threshold", "--param", "tau"], "expected name=value"),
        (["eval", ARITH, "--policy", "threshold", "--set", "gen_lenght=8"], "gen_lenght"),
        (["sweep", ARITH, "--grid", "threshold:tau", "--out", "x"], "--grid"),
        (["eval", ARITH, "--policy", "learned"], "checkpoint=PATH"),
        (["eval", ARITH, "--policy", "learned", "--param", "checkpoint=/nowhere"], "/nowhere"),
    ],
)
def test_user_mistakes_end_with_one_line(capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and message in err
    assert "Traceback" not in err + out


def test_an_output_path_that_cannot_be_written_is_one_line(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    status, _, err = run(
        capsys, "eval", ARITH, "--policy", "threshold", "--episodes", "2",
        "--out", str(blocker / "run"), "--quiet",
    )  # fmt: skip
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and str(blocker) in err


def test_eval_runs_a_learned_policy_checkpoint(capsys, tmp_path):
    torch.manual_seed(0)
    net = UnmaskingPolicyNet(PolicyConfig())
    save_policy(net, tmp_path / "policy")
    status, out, _ = run(
        capsys, "eval", ARITH, "--policy", "learned", "--param",
        f"checkpoint={tmp_path / 'policy'}", "--episodes", "4", "--num-envs", "4", "--quiet",
    )  # fmt: skip
    assert status == 0
    assert "learned(deterministic=True" in out and "4 episodes" in out


def test_a_bug_shows_its_traceback_while_a_user_mistake_is_one_line(capsys, monkeypatch):
    status, _, err = run(
        capsys, "eval", ARITH, "--policy", "threshold", "--set", "colour=blue", "--episodes", "1"
    )
    assert status == 2 and err.count("\n") == 1 and "unknown setting(s) ['colour']" in err

    def broken(*args, **kwargs):
        raise TypeError("a bug in the code, not the user's mistake")

    monkeypatch.setattr("agents.evaluate.evaluate", broken)
    with pytest.raises(TypeError, match="a bug in the code"):
        main(["eval", ARITH, "--policy", "threshold", "--episodes", "1"])
