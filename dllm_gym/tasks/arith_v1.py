"""Arith-v1: Arith chains whose worked answer stops where a computed count first leaves 3..6.

Like :mod:`dllm_gym.tasks.arith` (v0), a problem is a chain of single-digit operations told as
sentences about numbered boxes, and the worked answer writes one step per box (``Box 6 has
1 + 4 = 5.``). Three things change:

- **The answer's length depends on the arithmetic, not on the prompt.** Every prompt tells a
  chain of six comparisons from the one box whose count is known (3 to 6), and asks for the
  first box along it with fewer than 3 or more than 6. The worked answer follows the chain
  and stops there, after ``k`` steps (``k`` uniform in ``1..6``). Every prompt has the same
  shape and the question names no box, so where end-of-text begins is known only by doing
  the chain's arithmetic up to the stop, up to six dependent operations.
- **The sentences come in chain order.** What makes the steps sequential is the arithmetic
  (each step starts from the previous result, and whether to go on depends on it), not
  finding the next sentence, which the embedded model never learned beyond about 80%.
- **Equivalent forms are used at random**: the operands of ``+`` and ``*`` come in either
  order (``Box 6 has 4 + 1 = 5.`` or ``Box 6 has 1 + 4 = 5.``), so tokens of one step
  revealed together can mix forms.

The answer keeps GSM8K's shape (worked steps, then ``#### N``)::

    Box 2 has 4 eggs. Compared to Box 2, Box 6 has 1 more eggs. Compared to Box 6, Box 1
    has 2 fewer eggs. Compared to Box 1, Box 0 has 3 times the eggs. Compared to Box 0,
    Box 5 has 1 more eggs. Compared to Box 5, Box 8 has 4 fewer eggs. Compared to Box 8,
    Box 3 has 2 more eggs. How many eggs does the first Box with fewer than 3 or more
    than 6 eggs have?

    Box 2 has 4. Box 6 has 1 + 4 = 5. Box 1 has 5 - 2 = 3. Box 0 has 3 * 3 = 9.
    #### 9

The links after the stop (from Box 0 on above) are told but never worked.

History (issue 17): earlier drafts told shuffled sentences and hid the length by the prompt's
structure (a box asked at a random depth of a told chain; a loose chain of other boxes beside
the asked one). The embedded model either took shortcuts (65 to 72% top-1) or, with three
comparisons, traced the chain's box names inside one forward pass and read the length off the
prompt (80% of first passes put end-of-text exactly at the true length). With shuffled
sentences, this stopping rule reached 51 to 61% in 1,500 steps (operands taken from the wrong
sentence); with three comparisons in order, the model knew the length of one- and two-step
answers in one pass after 500 steps. Hence six comparisons, in order.

Splits are disjoint in the numbers as in v0: a chain (start value and operations, all six
links) belongs to one split only, whatever the labels, item or operand order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from dllm_gym.tasks.arith import (
    BOXES,
    ITEMS,
    LABEL,
    OPERATORS,
    ArithTask,
    Chain,
    _apply,
    _operands,
    _sentence,
)
from dllm_gym.tasks.arith import vocabulary as v0_vocabulary
from dllm_gym.tasks.base import Problem
from dllm_gym.tasks.generated import DEFAULT_SIZES, SPLIT_BUCKETS, split_rng

COMMUTATIVE = ("+", "*")
LINKS = 6  # comparisons every prompt tells
LOW, HIGH = 3, 6  # the answer is the first box with a count outside LOW..HIGH
QUESTION_WORDS = ("first", "with", "than", "or")  # the words v1 adds to v0's vocabulary


def stop_depth(chain: Chain) -> int | None:
    """The number of worked steps: the depth of the first count outside ``LOW..HIGH``
    (``None`` when the start is already outside or no count leaves the range)."""
    values = chain.values()
    if not LOW <= values[0] <= HIGH:
        return None
    return next((k for k, value in enumerate(values) if not LOW <= value <= HIGH), None)


def _draw_stopping_chain(rng: np.random.Generator, depth: int, links: int) -> Chain:
    """A chain of ``links`` links whose first count outside ``LOW..HIGH`` is at ``depth``.

    Each link's operator is uniform among those with an operand that keeps the count inside
    the range (before ``depth``), takes it out (at ``depth``) or keeps it a digit (after),
    then its operand uniform among those operands.
    """
    value = int(rng.integers(LOW, HIGH + 1))
    start, steps = value, []
    for k in range(1, links + 1):
        options = {}
        for operator in OPERATORS:
            results = [(a, _apply(operator, value, a)) for a in _operands(operator, value)]
            if k <= depth:  # inside before the stop, outside at it
                results = [(a, r) for a, r in results if (LOW <= r <= HIGH) != (k == depth)]
            if results:
                options[operator] = [a for a, _ in results]
        operators = list(options)
        operator = operators[int(rng.integers(len(operators)))]
        operand = options[operator][int(rng.integers(len(options[operator])))]
        steps.append((operator, operand))
        value = _apply(operator, value, operand)
    return Chain(start, tuple(steps))


def render_v1(
    chain: Chain,
    labels: Sequence[int],
    item: str,
    order: Sequence[int] | None = None,
    swapped: Sequence[bool] | None = None,
) -> Problem:
    """The problem asking for the first box of ``chain`` with a count outside ``LOW..HIGH``.

    ``labels[k]`` is the box holding the ``k``-th value of ``chain``; ``order`` is the order
    of the question's sentences (a permutation of the start sentence ``0`` and the links
    ``1..n``; ``None`` tells them in chain order); ``swapped[k]`` writes worked step ``k`` (of
    ``+`` or ``*``) with its operands swapped (one flag per worked step).
    """
    n = len(chain.steps)
    if len(labels) != n + 1 or len(set(labels)) != len(labels):
        raise ValueError(f"labels: expected {n + 1} distinct boxes, got {labels}")
    depth = stop_depth(chain)
    if depth is None:
        raise ValueError(
            f"chain: expected a start in {LOW}..{HIGH} and a later count outside, got "
            f"the counts {chain.values()}"
        )
    swapped = [False] * depth if swapped is None else list(swapped)
    if len(swapped) != depth:
        raise ValueError(f"swapped: expected {depth} flags (one per worked step), got {swapped}")
    for (operator, _), swap in zip(chain.steps, swapped, strict=False):
        if swap and operator not in COMMUTATIVE:
            raise ValueError(f"swapped: a {operator!r} step cannot swap its operands")
    order = list(range(n + 1)) if order is None else list(order)
    if sorted(order) != list(range(n + 1)):
        raise ValueError(f"order: expected a permutation of 0..{n}, got {order}")
    names = [f"{LABEL} {label}" for label in labels]
    values = chain.values()
    sentences = [f"{names[0]} has {chain.start} {item}."]
    for k, (operator, operand) in enumerate(chain.steps):
        sentences.append(_sentence(operator, names[k + 1], operand, item, names[k]))
    solution = [f"{names[0]} has {chain.start}."]
    for k, (operator, operand) in enumerate(chain.steps[:depth]):
        left, right = (operand, values[k]) if swapped[k] else (values[k], operand)
        solution.append(f"{names[k + 1]} has {left} {operator} {right} = {values[k + 1]}.")
    question = [sentences[i] for i in order]
    question.append(
        f"How many {item} does the first {LABEL} with fewer than {LOW} or more than {HIGH} "
        f"{item} have?"
    )
    answer = str(values[depth])
    return Problem(
        question=" ".join(question),
        reference=answer,
        solution=" ".join(solution) + f"\n#### {answer}",
    )


class ArithV1Task(ArithTask):
    """Arith-v1 (see the module docstring).

    Args:
        seed: seed of the generator; problem ``i`` of a split depends only on (seed, split, i).
        min_steps, max_steps: the number of worked steps ``k`` (where the first count outside
            3..6 is) is uniform in this range.
        links: comparisons every prompt tells (the chain's links, worked or not).
        sizes: number of problems in each split (``train``, ``validation``, ``test``).
    """

    name = "arith-v1"

    def __init__(
        self,
        seed: int = 0,
        min_steps: int = 1,
        max_steps: int = LINKS,
        links: int = LINKS,
        sizes: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(seed=seed, min_steps=min_steps, max_steps=max_steps, sizes=sizes)
        if not max_steps <= links <= BOXES - 1:
            raise ValueError(
                f"links={links}: expected at least max_steps={max_steps} (the worked steps) "
                f"and at most {BOXES - 1} (a chain of distinct boxes)"
            )
        self.links = links

    def chain(self, split: str, index: int) -> tuple[Chain, np.random.Generator]:
        """The chain of problem ``index`` of ``split`` and the generator that drew it.

        The number of worked steps is drawn first, then chains of ``links`` links that stop
        there until one belongs to ``split``, so it is uniform in every split.
        """
        rng = split_rng(self.seed, split, index)
        depth = int(rng.integers(self.min_steps, self.max_steps + 1))
        while True:
            chain = _draw_stopping_chain(rng, depth, self.links)
            if chain.split_bucket() in SPLIT_BUCKETS[split]:
                return chain, rng

    def _generate(self, split: str, index: int) -> Problem:
        chain, rng = self.chain(split, index)
        depth = stop_depth(chain)
        labels = [int(i) for i in rng.permutation(BOXES)[: self.links + 1]]
        item = ITEMS[int(rng.integers(len(ITEMS)))]
        swapped = [bool(rng.integers(2)) and op in COMMUTATIVE for op, _ in chain.steps[:depth]]
        return render_v1(chain, labels, item, swapped=swapped)


def vocabulary() -> list[str]:
    """Every word and symbol an Arith-v1 problem or solution uses (digits excluded): v0's
    vocabulary followed by :data:`QUESTION_WORDS`, so v0's token ids keep their meaning."""
    return [*v0_vocabulary(), *QUESTION_WORDS]


__all__ = ["DEFAULT_SIZES", "HIGH", "LINKS", "LOW", "ArithV1Task", "render_v1", "vocabulary"]
