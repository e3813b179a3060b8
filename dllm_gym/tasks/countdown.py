"""Countdown: reach a target number by combining given numbers with ``+ - * /``.

A problem gives 3 or 4 numbers and a target, for example::

    Using the numbers [25, 7, 3], create an equation that equals 54. You can use +, -, *, /
    and each number at most once. Give the final equation after '####'.

Problems are generated offline: the numbers are drawn, then combined two at a time in a random
order with random operators until one value is left, which becomes the target. Every
intermediate value of this construction is a positive integer (subtraction only of a smaller
number, division only when exact), the target is at most ``max_target``, and the construction
is the worked solution, so every problem has one::

    25 - 7 = 18. 18 * 3 = 54.
    #### (25 - 7) * 3

An answer is the expression after the last ``####`` (or in the last ``<answer>...</answer>``
block), with a trailing ``= target`` dropped. It is correct (scorer ``"exact-expression"``)
when it parses as numbers, ``+ - * /``, unary minus and parentheses only (it is never
evaluated by Python), uses a sub-multiset of the given numbers, and its exact value
(:class:`fractions.Fraction`; any intermediate value is allowed) equals the target.

The reference string encodes the numbers, in the order shown, and the target:
``"numbers=25,7,3;target=54"`` (see :func:`format_reference` and :func:`parse_reference`).

Problem ``i`` of a split is a pure function of ``(seed, split, i)``. Splits are disjoint: a
problem (its sorted numbers and its target) belongs to exactly one split, decided by a hash.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction

import numpy as np

from dllm_gym.tasks.base import Problem
from dllm_gym.tasks.generated import SPLIT_BUCKETS, GeneratedTask, split_bucket, split_rng

MIN_VALUE = 1
MAX_EXPRESSION_CHARS = 200  # longer answers are wrong without being parsed
_REFERENCE_RE = re.compile(r"numbers=(\d+(?:,\d+)*);target=(-?\d+)")
_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_TRAILING_TARGET_RE = re.compile(r"\s*=\s*[-+]?\d+(?:\.\d+)?\s*$")
_OPERATORS: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
_SYMBOLS = {"×": "*", "÷": "/", "−": "-", "\\times": "*", "\\div": "/", "\\cdot": "*"}


def format_reference(numbers: Sequence[int], target: int) -> str:
    """The reference string of a problem: ``"numbers=25,7,3;target=54"``."""
    return f"numbers={','.join(str(n) for n in numbers)};target={target}"


def parse_reference(reference: str) -> tuple[tuple[int, ...], int]:
    """The numbers and target of a reference string made by :func:`format_reference`."""
    match = _REFERENCE_RE.fullmatch(reference.strip()) if isinstance(reference, str) else None
    if match is None:
        raise ValueError(
            f"reference={reference!r}: expected a Countdown reference such as "
            "'numbers=25,7,3;target=54'"
        )
    numbers = tuple(int(n) for n in match.group(1).split(","))
    return numbers, int(match.group(2))


def extract_expression(text: str) -> str | None:
    """The expression after the last ``####`` or in the last ``<answer>`` block, else None.

    Whichever comes later in ``text`` wins. After ``####`` the expression is the rest of that
    line. A trailing ``= number`` is dropped and ``×``, ``÷``, ``−``, ``\\times``, ``\\div`` and
    ``\\cdot`` are read as ``*``, ``/`` and ``-``.
    """
    candidates: list[tuple[int, str]] = []
    if "####" in text:
        position = text.rindex("####")
        candidates.append((position, text[position + 4 :].lstrip().split("\n", 1)[0]))
    tags = list(_ANSWER_TAG_RE.finditer(text))
    if tags:
        candidates.append((tags[-1].start(), tags[-1].group(1)))
    if not candidates:
        return None
    expression = max(candidates)[1].strip()
    for symbol, replacement in _SYMBOLS.items():
        expression = expression.replace(symbol, replacement)
    expression = _TRAILING_TARGET_RE.sub("", expression).strip().rstrip(".").strip()
    return expression or None


def evaluate_expression(expression: str) -> tuple[Fraction, list[int]] | None:
    """The exact value of an arithmetic expression and the numbers it uses, else None.

    Only integer literals, ``+ - * /``, unary minus and parentheses are allowed; the
    expression is parsed with :mod:`ast` and never evaluated by Python. None for anything
    else, a syntax error or a division by zero.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        return None
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    numbers: list[int] = []

    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant):
            if type(node.value) is not int:
                raise ValueError(f"not an integer literal: {node.value!r}")
            numbers.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        raise ValueError(f"not allowed in an answer: {type(node).__name__}")

    try:
        return value(tree.body), numbers
    except (ValueError, ZeroDivisionError, RecursionError):
        return None


def expression_reaches(expression: str | None, numbers: Sequence[int], target: int) -> bool:
    """Whether ``expression`` uses each of ``numbers`` at most once and equals ``target``."""
    if expression is None:
        return False
    evaluated = evaluate_expression(expression)
    if evaluated is None:
        return False
    result, used = evaluated
    if Counter(used) - Counter(numbers):
        return False
    return result == target


def _combine(a: int, b: int, operator: str) -> int | None:
    """``a operator b`` when it is a positive integer, else None."""
    if operator == "+":
        return a + b
    if operator == "-":
        return a - b if a > b else None
    if operator == "*":
        return a * b
    return a // b if a % b == 0 else None


def _draw(
    rng: np.random.Generator, min_numbers: int, max_numbers: int, max_number: int, max_target: int
) -> tuple[list[int], int, str, list[str]]:
    """Numbers, target, expression and worked steps of one problem (retrying until valid)."""
    while True:
        count = int(rng.integers(min_numbers, max_numbers + 1))
        numbers = [int(n) for n in rng.integers(MIN_VALUE, max_number + 1, size=count)]
        items = [(n, str(n), True) for n in numbers]  # value, text, is a single number
        steps: list[str] = []
        while len(items) > 1:
            pair = sorted(
                (int(k) for k in rng.choice(len(items), size=2, replace=False)),
                key=lambda k: -items[k][0],
            )  # the larger value first, so that - and / can stay positive integers
            (a, a_text, a_atom), (b, b_text, b_atom) = items[pair[0]], items[pair[1]]
            operators = [op for op in "+-*/" if _combine(a, b, op) is not None]
            operator = operators[int(rng.integers(len(operators)))]
            result = _combine(a, b, operator)
            assert result is not None
            steps.append(f"{a} {operator} {b} = {result}.")
            text = " ".join(
                (a_text if a_atom else f"({a_text})", operator, b_text if b_atom else f"({b_text})")
            )
            items = [item for k, item in enumerate(items) if k not in pair]
            items.append((result, text, False))
        if items[0][0] <= max_target:
            return numbers, items[0][0], items[0][1], steps


class CountdownTask(GeneratedTask):
    """Countdown number puzzles (see the module docstring).

    Args:
        seed: seed of the generator; problem ``i`` of a split depends only on (seed, split, i).
        min_numbers, max_numbers: the count of given numbers is uniform in this range (2..6).
        max_number: the given numbers are uniform in ``1..max_number``.
        max_target: the largest target; targets are positive integers.
        sizes: number of problems in each split (``train``, ``validation``, ``test``).
    """

    name = "countdown"
    scorer = "exact-expression"  # how answers are compared (see the module docstring)

    def __init__(
        self,
        seed: int = 0,
        min_numbers: int = 3,
        max_numbers: int = 4,
        max_number: int = 99,
        max_target: int = 999,
        sizes: Mapping[str, int] | None = None,
    ) -> None:
        if not 2 <= min_numbers <= max_numbers <= 6:
            raise ValueError(
                f"min_numbers={min_numbers}, max_numbers={max_numbers}: expected "
                "2 <= min_numbers <= max_numbers <= 6"
            )
        if max_number < 2:
            raise ValueError(f"max_number={max_number}: expected an integer >= 2")
        if max_target < 1:
            raise ValueError(f"max_target={max_target}: expected a positive integer")
        super().__init__(seed=seed, sizes=sizes)
        self.min_numbers, self.max_numbers = min_numbers, max_numbers
        self.max_number, self.max_target = max_number, max_target

    def _generate(self, split: str, index: int) -> Problem:
        rng = split_rng(self.seed, split, index)
        buckets = SPLIT_BUCKETS[split]
        while True:
            numbers, target, expression, steps = _draw(
                rng, self.min_numbers, self.max_numbers, self.max_number, self.max_target
            )
            if split_bucket(format_reference(sorted(numbers), target)) in buckets:
                break
        return Problem(
            question=prompt_text(numbers, target),
            reference=format_reference(numbers, target),
            solution=" ".join(steps) + f"\n#### {expression}",
        )

    def extract_answer(self, text: str) -> str | None:
        """The answer expression of ``text`` (:func:`extract_expression`)."""
        return extract_expression(text)

    def is_correct(self, text: str, reference: str) -> bool:
        """Whether the answer of ``text`` reaches the target of ``reference`` validly."""
        numbers, target = parse_reference(reference)
        return expression_reaches(self.extract_answer(text), numbers, target)


def prompt_text(numbers: Sequence[int], target: int) -> str:
    """The question shown to the model."""
    shown = ", ".join(str(n) for n in numbers)
    return (
        f"Using the numbers [{shown}], create an equation that equals {target}. You can use "
        "+, -, *, / and each number at most once. Give the final equation after '####'."
    )
