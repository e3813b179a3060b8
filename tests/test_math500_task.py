"""MATH500Task: boxed-answer extraction, both scorers and loading local JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dllm_gym.tasks.math500 import (
    INSTRUCTION,
    MATH500Task,
    answers_equivalent,
    last_boxed,
    math_verify_available,
    normalize_answer,
)

RECORDS = [
    {
        "problem": "What is $\\frac{1}{4} + \\frac{1}{4}$?",
        "solution": "We add: $\\frac{1}{4} + \\frac{1}{4} = \\boxed{\\frac{1}{2}}$.",
        "answer": "\\frac{1}{2}",
        "subject": "Prealgebra",
        "level": 1,
        "unique_id": "test/prealgebra/0.json",
    },
    {
        "problem": "Convert the point $(0,3)$ to polar coordinates.",
        "solution": "The point is at distance 3 and angle $\\frac{\\pi}{2}$, so "
        "$\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$.",
        "answer": "\\left( 3, \\frac{\\pi}{2} \\right)",
    },
    {"problem": "What is $2 + 3$?", "answer": "5"},
]

MODES = [
    False,
    pytest.param(
        True,
        marks=pytest.mark.skipif(not math_verify_available(), reason="math-verify not installed"),
    ),
]


@pytest.fixture(params=MODES, ids=["normalized-string", "math-verify"])
def task(request) -> MATH500Task:
    return MATH500Task(data_files=None, use_math_verify=request.param)


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so $\\boxed{\\frac{1}{\\sqrt{2}}}$.", "\\frac{1}{\\sqrt{2}}"),
        ("first \\boxed{3}, then \\boxed{4}", "4"),
        ("\\boxed {7}", "7"),
        ("\\fbox{x^2}", "x^2"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\boxed{\\text{a \\fbox{b} c}}", "\\text{a \\fbox{b} c}"),
        ("\\boxed{\\frac{1}{2}", None),
        ("\\boxed{1} and \\boxed{2", None),
        ("\\boxed{ }", None),
        ("The answer is 5.", None),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected
    assert MATH500Task(use_math_verify=False).extract_answer(text) == expected


@pytest.mark.parametrize(
    ("predicted", "reference"),
    [
        ("0.5", "\\frac{1}{2}"),
        ("\\frac{1}{2}", "0.5"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\frac12", "\\tfrac{1}{2}"),
        ("-\\frac{3}{4}", "-0.75"),
        ("(3,4)", "\\left( 3, 4 \\right)"),
        ("x = 5", "5"),
        ("90^\\circ", "90"),
        ("10,\\!000", "10000"),
        ("5\\text{ cm}", "5"),
        ("\\text{(C)}", "(C)"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ],
)
def test_equivalent_answers(task: MATH500Task, predicted: str, reference: str) -> None:
    assert task.is_correct(f"Thus the answer is $\\boxed{{{predicted}}}$.", reference)


@pytest.mark.parametrize(
    ("predicted", "reference"),
    [("6", "5"), ("\\frac{1}{3}", "0.5"), ("(4,3)", "(3,4)"), ("-5", "5"), ("\\pi", "3.14")],
)
def test_wrong_answers(task: MATH500Task, predicted: str, reference: str) -> None:
    assert not task.is_correct(f"\\boxed{{{predicted}}}", reference)


def test_no_box_is_wrong(task: MATH500Task) -> None:
    assert not task.is_correct("The answer is 5.", "5")
    assert not task.is_correct("\\boxed{5", "5")


def test_scorer_names() -> None:
    assert MATH500Task(use_math_verify=False).scorer == "normalized-string"
    expected = "math-verify" if math_verify_available() else "normalized-string"
    assert MATH500Task().scorer == expected


@pytest.mark.skipif(not math_verify_available(), reason="math-verify not installed")
def test_math_verify_goes_beyond_strings() -> None:
    text = "\\boxed{\\frac{\\sqrt{2}}{2}}"
    assert MATH500Task(use_math_verify=True).is_correct(text, "\\frac{1}{\\sqrt{2}}")
    assert not MATH500Task(use_math_verify=False).is_correct(text, "\\frac{1}{\\sqrt{2}}")


def test_use_math_verify_true_without_the_package(monkeypatch) -> None:
    monkeypatch.setattr("dllm_gym.tasks.math500.math_verify_available", lambda: False)
    with pytest.raises(ImportError, match="pip install math-verify"):
        MATH500Task(use_math_verify=True)
    assert MATH500Task().scorer == "normalized-string"


def test_normalize_answer() -> None:
    assert normalize_answer("$\\left( 3, 4 \\right)$") == "(3,4)"
    assert normalize_answer("\\pi r^2") == "\\pi r^2"
    assert normalize_answer("\\frac 1{\\sqrt2}") == "\\frac{1}{\\sqrt{2}}"
    assert not answers_equivalent(None, "5")
    assert not answers_equivalent("", "")


def test_load_from_file_folder_and_mapping(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "test.jsonl", RECORDS)
    for data_files in (path, str(path), tmp_path, {"test": path}):
        task = MATH500Task(data_files=data_files, use_math_verify=False)
        problems = task.problems("test")
        assert len(problems) == 3
        assert problems[0].question.startswith(RECORDS[0]["problem"])
        assert problems[0].question.endswith(INSTRUCTION)
        assert problems[0].reference == "\\frac{1}{2}"
        assert problems[2].solution is None
        for problem in problems[:2]:  # the published solutions box their answer
            assert task.is_correct(problem.solution, problem.reference)
    with pytest.raises(ValueError, match="split='train'"):
        task.problems("train")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"test\.jsonl"):
        MATH500Task(data_files=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        MATH500Task(data_files={"test": tmp_path / "nope.jsonl"})
    with pytest.raises(ValueError, match="unknown split"):
        MATH500Task(data_files={"train": tmp_path / "test.jsonl"})


@pytest.mark.parametrize(
    "bad",
    [
        {"problem": "What is 1 + 1?"},
        {"question": "What is 1 + 1?", "answer": "2"},
        {"problem": "What is 1 + 1?", "answer": 2},
        ["not", "an", "object"],
    ],
)
def test_bad_record(tmp_path: Path, bad: object) -> None:
    path = write_jsonl(tmp_path / "test.jsonl", [RECORDS[0], bad])
    task = MATH500Task(data_files=path, use_math_verify=False)
    with pytest.raises(ValueError, match=r"test\.jsonl:2 is not a MATH-500 record"):
        task.problems("test")


def test_bad_json_and_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "test.jsonl"
    path.write_text('{"problem": "1 + 1", "answer": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"test\.jsonl:1"):
        MATH500Task(data_files=path).problems("test")
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no problems"):
        MATH500Task(data_files=path).problems("test")
