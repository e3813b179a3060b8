"""CountdownTask and SudokuTask: seeded generation, disjoint splits, extraction and scoring."""

from __future__ import annotations

import pickle
from fractions import Fraction

import pytest

from dllm_gym.tasks.countdown import (
    CountdownTask,
    evaluate_expression,
    format_reference,
    parse_reference,
)
from dllm_gym.tasks.sudoku import SudokuTask, count_solutions, is_valid_solution
from dllm_gym.tasks.sudoku import parse_reference as parse_puzzle

SIZES = {"train": 200, "validation": 60, "test": 60}
REFERENCE = format_reference([25, 7, 3, 3], 54)  # "numbers=25,7,3,3;target=54"
PUZZLE = "0040023024000300"
SOLUTION = "3142423124131324"


@pytest.fixture(scope="module")
def countdown() -> CountdownTask:
    return CountdownTask(seed=3, sizes=SIZES)


@pytest.fixture(scope="module")
def sudoku() -> SudokuTask:
    return SudokuTask(seed=3, sizes=SIZES)


def all_problems(task) -> dict:
    return {split: list(task.problems(split)) for split in task.splits}


# --- both tasks ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [CountdownTask, SudokuTask])
def test_same_seed_same_problems(cls) -> None:
    first, second = cls(seed=1, sizes=SIZES), cls(seed=1, sizes=SIZES)
    for split in ("train", "test"):
        assert list(first.problems(split)[:20]) == list(second.problems(split)[:20])
        # problem i does not depend on which problems were generated before it
        assert cls(seed=1).problem(split, 17) == first.problem(split, 17)
    assert list(cls(seed=2).problems("test")[:20]) != list(first.problems("test")[:20])
    assert len(first.problems("validation")) == 60
    assert first.problems("test")[-1] == first.problems("test")[59]
    with pytest.raises(IndexError):
        first.problems("test")[60]
    assert pickle.loads(pickle.dumps(first)).problem("test", 3) == first.problem("test", 3)


@pytest.mark.parametrize("cls", [CountdownTask, SudokuTask])
def test_constructor_errors(cls) -> None:
    with pytest.raises(ValueError, match="sizes: unknown splits"):
        cls(sizes={"dev": 10})
    with pytest.raises(ValueError, match="split='dev'"):
        cls().problems("dev")


def test_countdown_splits_disjoint(countdown: CountdownTask) -> None:
    keys = {}
    for split, problems in all_problems(countdown).items():
        numbers_targets = (parse_reference(p.reference) for p in problems)
        keys[split] = {(tuple(sorted(numbers)), target) for numbers, target in numbers_targets}
    assert not keys["train"] & keys["test"]
    assert not keys["train"] & keys["validation"]
    assert not keys["validation"] & keys["test"]


def test_sudoku_splits_disjoint(sudoku: SudokuTask) -> None:
    puzzles = {s: {p.reference for p in ps} for s, ps in all_problems(sudoku).items()}
    assert not puzzles["train"] & puzzles["test"]
    assert not puzzles["train"] & puzzles["validation"]
    assert not puzzles["validation"] & puzzles["test"]


# --- Countdown ----------------------------------------------------------------------------


def test_countdown_generated_problems(countdown: CountdownTask) -> None:
    assert countdown.scorer == "exact-expression"
    for problems in all_problems(countdown).values():
        for problem in problems:
            numbers, target = parse_reference(problem.reference)
            assert 3 <= len(numbers) <= 4 and all(1 <= n <= 99 for n in numbers)
            assert 1 <= target <= 999
            assert f"[{', '.join(map(str, numbers))}]" in problem.question
            assert f"equals {target}." in problem.question and "'####'" in problem.question
            assert problem.solution.rsplit("\n", 1)[1].startswith("#### ")
            expression = countdown.extract_answer(problem.solution)
            value, used = evaluate_expression(expression)
            assert value == target and sorted(used) == sorted(numbers)
            assert countdown.is_correct(problem.solution, problem.reference)


@pytest.mark.parametrize(
    "answer",
    [
        "#### (25 - 7) * 3",
        "#### (25-7)*3 = 54",
        "so <answer>3 * (25 - 7)</answer>",
        "#### 25 * 3 - 7 * 3",  # 3 is given twice
        "#### 3 × (25 − 7)",
        "#### -(7 - 25) * 3",
        "#### 1\nmore text\n#### (25 - 7) * 3\n",
    ],
)
def test_countdown_valid_answers(answer: str) -> None:
    assert CountdownTask().is_correct(answer, REFERENCE), answer


@pytest.mark.parametrize(
    "answer",
    [
        "#### 25 * 3 - 7 * 3 + 3 - 3",  # a number used more often than given
        "#### (25 - 7) * 3 + 0",  # 0 is not given
        "#### 18 * 3",  # 18 is not given
        "#### __import__('os').system('echo hi')",
        "#### 25 + 7 / (3 - 3)",  # division by zero
        "#### 7 ** 2 + 3 + 3 - 25 + 25",  # ** is not allowed (and 25 is used twice)
        "#### 3 ** 3 * (25 - 7 - 3 * 3 - 7)",
        "#### (25 - 7) * 3.0",
        "#### abs(-54)",
        "#### [54][0]",
        "#### 25 - 7 * 3",  # wrong value
        "#### (25 - 7) * 3 if True else 0",
        "#### (25 - 7) * 3 = 54 = 54",
        "#### ",
        "The answer is (25 - 7) * 3",  # no '####'
        "#### " + "(" * 300 + "54" + ")" * 300,
    ],
)
def test_countdown_invalid_answers(answer: str) -> None:
    assert not CountdownTask().is_correct(answer, REFERENCE), answer


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 / 3 + 2 / 3", (Fraction(1), [1, 3, 2, 3])),
        ("-(4 - 10) * (7 / 2)", (Fraction(21), [4, 10, 7, 2])),
        ("7 / (3 - 3)", None),
        ("7 ** 2", None),
        ("7 // 2", None),
        ("+7", None),
        ("__import__('os')", None),
        ("x + 1", None),
        ("1 +", None),
        ("True + 1", None),
    ],
)
def test_evaluate_expression(expression: str, expected) -> None:
    assert evaluate_expression(expression) == expected


def test_countdown_extraction_and_reference() -> None:
    task = CountdownTask()
    assert task.extract_answer("#### (25 - 7) * 3 = 54") == "(25 - 7) * 3"
    assert task.extract_answer("#### 1 + 2\n<answer> 3 * 4 = 12 </answer>") == "3 * 4"
    assert task.extract_answer("<answer>1 + 2</answer> then #### 3 + 4") == "3 + 4"
    assert task.extract_answer("no answer") is None
    assert parse_reference(REFERENCE) == ((25, 7, 3, 3), 54)
    with pytest.raises(ValueError, match="reference='54'"):
        task.is_correct("#### 54", "54")
    with pytest.raises(ValueError, match="min_numbers=5, max_numbers=4"):
        CountdownTask(min_numbers=5)


# --- Sudoku -------------------------------------------------------------------------------


def test_sudoku_generated_problems(sudoku: SudokuTask) -> None:
    assert sudoku.scorer == "sudoku-rules"
    for problems in all_problems(sudoku).values():
        for problem in problems:
            puzzle = parse_puzzle(problem.reference)
            assert 6 <= puzzle.count(0) <= 10
            assert count_solutions(puzzle) == 1
            rows = [problem.reference[4 * r : 4 * r + 4] for r in range(4)]
            assert "\n".join(rows) in problem.question
            assert problem.solution.startswith("#### ")
            assert is_valid_solution([int(c) for c in problem.solution[5:]])
            assert sudoku.is_correct(problem.solution, problem.reference)


def test_sudoku_blanks_range() -> None:
    task = SudokuTask(min_blanks=12, max_blanks=12, sizes=SIZES)
    for problem in task.problems("test")[:10]:
        assert problem.reference.count("0") == 12
        assert count_solutions(parse_puzzle(problem.reference)) == 1
    with pytest.raises(ValueError, match="min_blanks=6, max_blanks=13"):
        SudokuTask(max_blanks=13)


def test_sudoku_scoring() -> None:
    task = SudokuTask()
    assert task.is_correct(f"#### {SOLUTION}", PUZZLE)
    one_wrong = SOLUTION[:3] + "1" + SOLUTION[4:]  # a blank cell, now invalid
    assert not task.is_correct(f"#### {one_wrong}", PUZZLE)
    # a valid grid (digits 1 and 2 swapped) that changes the givens
    swapped = SOLUTION.translate(str.maketrans("12", "21"))
    assert is_valid_solution([int(c) for c in swapped])
    assert not task.is_correct(f"#### {swapped}", PUZZLE)
    assert not task.is_correct("#### " + SOLUTION.replace("4", "5"), PUZZLE)
    assert not task.is_correct(SOLUTION, PUZZLE)  # no '####'
    with pytest.raises(ValueError, match="reference='123'"):
        task.is_correct(f"#### {SOLUTION}", "123")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#### 3142 4231 2413 1324", SOLUTION),
        ("Thinking 1234...\n####\n3142\n4231\n2413\n1324\n", SOLUTION),
        ("#### 3,1,4,2, 4,2,3,1, 2,4,1,3, 1,3,2,4", SOLUTION),
        ("#### |3|1|4|2|\n|4|2|3|1|\n|2|4|1|3|\n|1|3|2|4|", SOLUTION),
        ("#### 1111 2222\n#### 3142 4231 2413 1324.", SOLUTION),
        ("#### 0000 3142 4231 2413 1324", SOLUTION),
        ("#### 3142 4231 2413", None),
        ("3142 4231 2413 1324", None),
        ("#### 3142 4231 2413 13x24", None),
    ],
)
def test_sudoku_extraction(text: str, expected: str | None) -> None:
    task = SudokuTask()
    assert task.extract_answer(text) == expected
    assert task.is_correct(text, PUZZLE) == (expected is not None)
