"""Arith: synthetic GSM8K-shaped word problems that a tiny dLLM can learn on a CPU.

A problem is a chain of 2 to 4 single-digit operations, each applied to the previous result,
told as a short story about numbered boxes. The sentences come in a shuffled order, so the
chain has to be followed from box to box, one link at a time::

    Compared to Box 4, Box 2 has 4 fewer apples. Box 7 has 7 apples. Compared to Box 7,
    Box 4 has 2 more apples. How many apples does Box 2 have?

Its worked solution follows the chain from its start, one box a step, then gives the GSM8K
answer line::

    Box 7 has 7. Box 4 has 7 + 2 = 9. Box 2 has 9 - 4 = 5.
    #### 5

Every value stays in 0..9 (single-digit facts of ``+``, ``-`` and ``*``), boxes are named by
a digit and every link has the same shape, so a tiny model learns the arithmetic and the
copying quickly (people's names, in an earlier version, were the last thing it learned to
copy). What it cannot do in one forward pass is follow several links at once: step ``k``
needs the box and the result of step ``k - 1``. Revealing many answer tokens at once therefore
measurably hurts, which is the speed/quality trade-off the environments are about.

Problem ``i`` of a split is a pure function of ``(seed, split, i)``. Splits are disjoint in
the numbers: a chain (start value and operations) belongs to exactly one split, decided by a
hash of the chain, so no test chain is ever seen in training under any labels or order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np

from dllm_gym.tasks.base import Problem, Task
from dllm_gym.tasks.generated import (
    SPLIT_BUCKETS,
    SeededProblems,
    check_sizes,
    split_rng,
)

LABEL = "Box"
BOXES = 10  # boxes are labelled 0..9
ITEMS: tuple[str, ...] = (
    "apples", "pens", "books", "coins", "cards", "shells", "stamps", "marbles", "eggs", "cookies",
)  # fmt: skip
OPERATORS: tuple[str, ...] = ("+", "-", "*")
TEMPLATE_WORDS: tuple[str, ...] = (
    LABEL, "Compared", "to", "has", "more", "fewer", "times", "the", "How", "many", "does",
    "have",
)  # fmt: skip
PUNCTUATION: tuple[str, ...] = (".", "?", "=", "+", "-", "*", "####")


@dataclass(frozen=True)
class Chain:
    """The numbers of a problem: a start value and (operator, operand) steps."""

    start: int
    steps: tuple[tuple[str, int], ...]

    def values(self) -> list[int]:
        """The start value followed by the result of every step."""
        values = [self.start]
        for operator, operand in self.steps:
            values.append(_apply(operator, values[-1], operand))
        return values

    def split_bucket(self) -> int:
        digest = hashlib.blake2b(repr((self.start, self.steps)).encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "little") % 10


def _apply(operator: str, left: int, right: int) -> int:
    if operator == "+":
        return left + right
    if operator == "-":
        return left - right
    return left * right


def _operands(operator: str, value: int) -> list[int]:
    """Operands that keep the result of ``value operator operand`` a single digit."""
    if operator == "+":
        return list(range(1, 10 - value))
    if operator == "-":
        return list(range(1, value + 1))
    return [a for a in range(2, 10) if value >= 1 and value * a <= 9]


def _draw_chain(rng: np.random.Generator, min_steps: int, max_steps: int) -> Chain:
    value = int(rng.integers(0, 10))
    start, steps = value, []
    for _ in range(int(rng.integers(min_steps, max_steps + 1))):
        operators = [op for op in OPERATORS if _operands(op, value)]
        operator = operators[int(rng.integers(len(operators)))]
        choices = _operands(operator, value)
        operand = choices[int(rng.integers(len(choices)))]
        steps.append((operator, operand))
        value = _apply(operator, value, operand)
    return Chain(start, tuple(steps))


def _sentence(operator: str, name: str, operand: int, item: str, previous: str) -> str:
    """One link of the chain. Every link starts the same way, so the previous box, the new
    one, the operand and the operator sit at the same offsets in every link, and a box is
    followed by ``,`` where it is referred to and by ``has`` where it is introduced."""
    if operator == "+":
        return f"Compared to {previous}, {name} has {operand} more {item}."
    if operator == "-":
        return f"Compared to {previous}, {name} has {operand} fewer {item}."
    return f"Compared to {previous}, {name} has {operand} times the {item}."


def render(
    chain: Chain, labels: Sequence[int], item: str, order: Sequence[int] | None = None
) -> Problem:
    """The word problem and worked solution of ``chain`` with the given box labels and item.

    ``labels[k]`` is the box holding the ``k``-th value of the chain. ``order`` is the order
    of the sentences in the question (a permutation of the start sentence ``0`` and the steps
    ``1..n``); ``None`` tells them in chain order.
    """
    if len(labels) != len(chain.steps) + 1 or len(set(labels)) != len(labels):
        raise ValueError(f"labels: expected {len(chain.steps) + 1} distinct boxes, got {labels}")
    names = [f"{LABEL} {label}" for label in labels]
    values = chain.values()
    sentences = [f"{names[0]} has {chain.start} {item}."]
    solution = [f"{names[0]} has {chain.start}."]
    for k, (operator, operand) in enumerate(chain.steps):
        sentences.append(_sentence(operator, names[k + 1], operand, item, names[k]))
        solution.append(f"{names[k + 1]} has {values[k]} {operator} {operand} = {values[k + 1]}.")
    if order is None:
        order = range(len(sentences))
    if sorted(order) != list(range(len(sentences))):
        raise ValueError(f"order: expected a permutation of 0..{len(chain.steps)}, got {order}")
    question = [sentences[i] for i in order]
    question.append(f"How many {item} does {names[len(chain.steps)]} have?")
    answer = str(values[-1])
    return Problem(
        question=" ".join(question),
        reference=answer,
        solution=" ".join(solution) + f"\n#### {answer}",
    )


class ArithTask(Task):
    """Synthetic multi-step single-digit arithmetic word problems (see the module docstring).

    Args:
        seed: seed of the generator; problem ``i`` of a split depends only on (seed, split, i).
        min_steps, max_steps: the number of operations of a problem is uniform in this range.
        sizes: number of problems in each split (``train``, ``validation``, ``test``).
    """

    name = "arith"
    splits = ("train", "validation", "test")

    def __init__(
        self,
        seed: int = 0,
        min_steps: int = 2,
        max_steps: int = 4,
        sizes: Mapping[str, int] | None = None,
    ) -> None:
        if not 1 <= min_steps <= max_steps <= BOXES - 1:
            raise ValueError(
                f"min_steps={min_steps}, max_steps={max_steps}: expected "
                f"1 <= min_steps <= max_steps <= {BOXES - 1}"
            )
        self.seed, self.min_steps, self.max_steps = seed, min_steps, max_steps
        self.sizes = check_sizes(sizes, self.splits)
        self._problem = lru_cache(maxsize=65536)(self._generate)

    def problems(self, split: str) -> SeededProblems:
        self.check_split(split)
        return SeededProblems(partial(self.problem, split), self.sizes[split])

    def problem(self, split: str, index: int) -> Problem:
        """Problem ``index`` of ``split``."""
        self.check_split(split)
        return self._problem(split, index)

    def chain(self, split: str, index: int) -> tuple[Chain, np.random.Generator]:
        """The chain of problem ``index`` of ``split`` and the generator that drew it."""
        rng = split_rng(self.seed, split, index)
        buckets = SPLIT_BUCKETS[split]
        while True:
            chain = _draw_chain(rng, self.min_steps, self.max_steps)
            if chain.split_bucket() in buckets:
                return chain, rng

    def _generate(self, split: str, index: int) -> Problem:
        chain, rng = self.chain(split, index)
        labels = [int(i) for i in rng.permutation(BOXES)[: len(chain.steps) + 1]]
        item = ITEMS[int(rng.integers(len(ITEMS)))]
        order = [int(i) for i in rng.permutation(len(chain.steps) + 1)]
        return render(chain, labels, item, order)


def vocabulary() -> list[str]:
    """Every word and symbol an Arith problem or solution uses (digits excluded)."""
    return [*ITEMS, *TEMPLATE_WORDS, *PUNCTUATION]
