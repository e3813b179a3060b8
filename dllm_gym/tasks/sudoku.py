"""Sudoku: 4x4 puzzles (2x2 boxes, digits 1..4), as in d1's Sudoku task.

A puzzle is shown as 4 rows of 4 digits with ``0`` for a blank::

    Solve this 4x4 Sudoku. Fill in the blanks (0) with the digits 1 to 4 so that every row,
    every column and every 2x2 box holds each of 1, 2, 3 and 4 once.
    0040
    0230
    2400
    0300
    Give the completed grid after '####' as 16 digits, row by row.

Puzzles are generated offline: a random complete grid, then cells blanked in a random order,
skipping any blank that would allow a second solution (checked by a small solver), until
``min_blanks..max_blanks`` cells are blank. Every puzzle has exactly one solution.

An answer is the last 16 digits after the last ``####``, ignoring whitespace, commas and bars
(``|``), for example ``#### 3142 4231 2413 1324``. It is correct (scorer ``"sudoku-rules"``)
when it is a valid grid (every row, column and 2x2 box holds 1..4) that keeps every given.
The reference string is the puzzle as 16 characters, row by row, ``0`` for a blank (for
example ``"0040023024000300"``); :attr:`Problem.solution` is ``"#### "`` and the 16 digits of
the solution.

Problem ``i`` of a split is a pure function of ``(seed, split, i)``. Splits are disjoint: a
puzzle belongs to exactly one split, decided by a hash of its 16 characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from dllm_gym.tasks.base import Problem
from dllm_gym.tasks.generated import SPLIT_BUCKETS, GeneratedTask, split_bucket, split_rng

SIZE = 4
BOX = 2
CELLS = SIZE * SIZE
DIGITS = frozenset(range(1, SIZE + 1))
_REFERENCE_RE = re.compile(r"[0-4]{16}")
_IGNORED_RE = re.compile(r"[\s,|]+")
_UNITS: tuple[tuple[int, ...], ...] = (
    *(tuple(r * SIZE + c for c in range(SIZE)) for r in range(SIZE)),
    *(tuple(r * SIZE + c for r in range(SIZE)) for c in range(SIZE)),
    *(
        tuple((br + r) * SIZE + bc + c for r in range(BOX) for c in range(BOX))
        for br in range(0, SIZE, BOX)
        for bc in range(0, SIZE, BOX)
    ),
)
_PEERS: tuple[frozenset[int], ...] = tuple(
    frozenset(peer for unit in _UNITS if cell in unit for peer in unit) - {cell}
    for cell in range(CELLS)
)


def _candidates(grid: Sequence[int], cell: int) -> list[int]:
    return sorted(DIGITS - {grid[peer] for peer in _PEERS[cell]})


def count_solutions(grid: Sequence[int], limit: int = 2) -> int:
    """The number of completions of ``grid`` (16 digits, 0 blank), counting up to ``limit``."""
    cells = list(grid)
    blanks = [cell for cell in range(CELLS) if cells[cell] == 0]

    def search(k: int) -> int:
        if k == len(blanks):
            return 1
        found = 0
        for digit in _candidates(cells, blanks[k]):
            cells[blanks[k]] = digit
            found += search(k + 1)
            cells[blanks[k]] = 0
            if found >= limit:
                break
        return found

    return search(0)


def is_valid_solution(grid: Sequence[int]) -> bool:
    """Whether ``grid`` (16 digits) is a complete Sudoku: every unit holds 1..4 once."""
    return len(grid) == CELLS and all({grid[cell] for cell in unit} == DIGITS for unit in _UNITS)


def _random_solution(rng: np.random.Generator) -> list[int]:
    grid = [0] * CELLS

    def fill(cell: int) -> bool:
        if cell == CELLS:
            return True
        for digit in rng.permutation(_candidates(grid, cell)):
            grid[cell] = int(digit)
            if fill(cell + 1):
                return True
        grid[cell] = 0
        return False

    fill(0)
    return grid


def _draw(rng: np.random.Generator, min_blanks: int, max_blanks: int) -> tuple[str, str]:
    """A puzzle with a unique solution and its solution, as 16-character strings."""
    while True:
        solution = _random_solution(rng)
        blanks = int(rng.integers(min_blanks, max_blanks + 1))
        puzzle = list(solution)
        removed = 0
        for cell in rng.permutation(CELLS):
            puzzle[cell] = 0
            if count_solutions(puzzle) == 1:
                removed += 1
                if removed == blanks:
                    return "".join(map(str, puzzle)), "".join(map(str, solution))
            else:
                puzzle[cell] = solution[cell]


def parse_reference(reference: str) -> tuple[int, ...]:
    """The 16 cells of a reference string (``0`` for a blank)."""
    if not isinstance(reference, str) or _REFERENCE_RE.fullmatch(reference.strip()) is None:
        raise ValueError(
            f"reference={reference!r}: expected a 4x4 Sudoku as 16 digits 0..4, row by row, "
            "with 0 for a blank"
        )
    return tuple(int(char) for char in reference.strip())


def extract_grid(text: str) -> str | None:
    """The last 16 digits after the last ``####`` (whitespace, ``,`` and ``|`` ignored)."""
    if "####" not in text:
        return None
    tail = _IGNORED_RE.sub("", text.rsplit("####", 1)[1])
    runs = re.findall(r"\d{16,}", tail)
    return runs[-1][-CELLS:] if runs else None


def solves(answer: str | None, puzzle: Sequence[int]) -> bool:
    """Whether ``answer`` (16 digits) is a valid Sudoku keeping every given of ``puzzle``."""
    if answer is None or len(answer) != CELLS or not answer.isdigit():
        return False
    grid = [int(char) for char in answer]
    if any(given and given != cell for given, cell in zip(puzzle, grid, strict=True)):
        return False
    return is_valid_solution(grid)


def prompt_text(puzzle: str) -> str:
    """The question shown to the model for a puzzle of 16 characters."""
    rows = "\n".join(puzzle[r * SIZE : (r + 1) * SIZE] for r in range(SIZE))
    return (
        "Solve this 4x4 Sudoku. Fill in the blanks (0) with the digits 1 to 4 so that every "
        "row, every column and every 2x2 box holds each of 1, 2, 3 and 4 once.\n"
        f"{rows}\n"
        "Give the completed grid after '####' as 16 digits, row by row."
    )


class SudokuTask(GeneratedTask):
    """4x4 Sudoku puzzles with a unique solution (see the module docstring).

    Args:
        seed: seed of the generator; problem ``i`` of a split depends only on (seed, split, i).
        min_blanks, max_blanks: the number of blank cells is uniform in this range (1..12).
        sizes: number of problems in each split (``train``, ``validation``, ``test``).
    """

    name = "sudoku"
    scorer = "sudoku-rules"  # how answers are compared (see the module docstring)

    def __init__(
        self,
        seed: int = 0,
        min_blanks: int = 6,
        max_blanks: int = 10,
        sizes: Mapping[str, int] | None = None,
    ) -> None:
        if not 1 <= min_blanks <= max_blanks <= 12:
            raise ValueError(
                f"min_blanks={min_blanks}, max_blanks={max_blanks}: expected "
                "1 <= min_blanks <= max_blanks <= 12 (a 4x4 Sudoku needs 4 givens)"
            )
        super().__init__(seed=seed, sizes=sizes)
        self.min_blanks, self.max_blanks = min_blanks, max_blanks

    def _generate(self, split: str, index: int) -> Problem:
        rng = split_rng(self.seed, split, index)
        buckets = SPLIT_BUCKETS[split]
        while True:
            puzzle, solution = _draw(rng, self.min_blanks, self.max_blanks)
            if split_bucket(puzzle) in buckets:
                break
        return Problem(question=prompt_text(puzzle), reference=puzzle, solution=f"#### {solution}")

    def extract_answer(self, text: str) -> str | None:
        """The 16 answer digits of ``text`` (:func:`extract_grid`)."""
        return extract_grid(text)

    def is_correct(self, text: str, reference: str) -> bool:
        """Whether the answer of ``text`` solves the puzzle ``reference``."""
        return solves(self.extract_answer(text), parse_reference(reference))
