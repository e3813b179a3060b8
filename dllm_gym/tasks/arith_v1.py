"""Arith-v1: Arith chains whose worked answer stops at the first count of 0, 3, 6 or 9.

Like :mod:`dllm_gym.tasks.arith` (v0), a problem is a chain of single-digit operations told as
sentences about numbered boxes, and the worked answer writes one step per box (``Box 6 has
1 + 4 = 5.``). Four things change:

- **The number of steps depends on the arithmetic.** Every prompt tells a chain of four
  comparisons from the one box whose count is known (not a multiple of 3), and asks for the
  first box along it with 0, 3, 6 or 9. The worked answer follows the chain and stops there,
  after ``k`` steps (``k`` uniform in ``1..4``); whether a link ends the chain depends on the
  count it starts from (``+ 1`` ends it from 2, 5 or 8 only).
- **Steps come in two forms, drawn at random**: a short one (``Box 6 has 1 + 4 = 5.``) and a
  long one that opens with the box it builds on (``Compared to Box 2, Box 6 has 1 + 4 =
  5.``). The answer's length, where end-of-text begins, is therefore not a function of the
  prompt: it is known only as the steps are written, as with a real model's answers.
- **The sentences come in chain order.** What makes the steps sequential is the arithmetic
  (each step starts from the previous result, and whether to go on depends on it), not
  finding the next sentence, which the embedded model never learned beyond about 80%.
- **The operands of ``+`` and ``*`` come in either order** (``Box 6 has 4 + 1 = 5.`` or
  ``Box 6 has 1 + 4 = 5.``). With the two forms of a step, tokens revealed together can mix
  forms.

The answer keeps GSM8K's shape (worked steps, then ``#### N``)::

    Box 2 has 4 eggs. Compared to Box 2, Box 6 has 1 more eggs. Compared to Box 6, Box 1
    has 2 more eggs. Compared to Box 1, Box 0 has 1 fewer eggs. Compared to Box 0, Box 5
    has 3 more eggs. How many eggs does the first Box with 0, 3, 6 or 9 eggs have?

    Box 2 has 4. Box 6 has 1 + 4 = 5. Compared to Box 6, Box 1 has 5 + 2 = 7. Box 0 has
    7 - 1 = 6.
    #### 6

The link after the stop (Box 0 to Box 5 above) is told but never worked.

History (issue 17): earlier drafts told shuffled sentences and hid the length by the prompt's
structure (a box asked at a random depth of a told chain; a loose chain of other boxes beside
the asked one). The embedded model either took shortcuts (65 to 72% top-1) or, with three
comparisons, traced the chain's box names inside one forward pass and read the length off the
prompt (80% of first passes put end-of-text exactly at the true length). A stop at the first
count outside 3..6 was learned slowly from shuffled sentences (51 to 61% in 1,500 steps) and
read in one pass from sentences in order (73% of first passes at the true length after 500
steps): inside a narrow range only small operands keep the chain going, so the first large
operand marks the stop. A stop at the first 0, 3, 6 or 9 along six comparisons in order,
every step in the short form, was read in one pass too once trained (94% of first passes at
the true length after 1,500 steps): this 6-layer model composes six single-digit operations
in one forward pass. Hence two forms of step, so that no model can read the length.

Splits are disjoint in the numbers as in v0: a chain (start value and operations, all four
links) belongs to one split only, whatever the labels, item, forms or operand order.
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
LINKS = 4  # comparisons every prompt tells
STOPS = (0, 3, 6, 9)  # the answer is the first box with one of these counts
QUESTION_WORDS = ("first", "with", "or")  # the words v1 adds to v0's vocabulary


def stop_depth(chain: Chain) -> int | None:
    """The number of worked steps: the depth of the first count in :data:`STOPS` (``None``
    when the start is one or no count is)."""
    values = chain.values()
    if values[0] in STOPS:
        return None
    return next((k for k, value in enumerate(values) if value in STOPS), None)


def _draw_stopping_chain(rng: np.random.Generator, depth: int, links: int) -> Chain:
    """A chain of ``links`` links whose first count in :data:`STOPS` is at ``depth``.

    Each link's operator is uniform among those with an operand that gives a count not in
    ``STOPS`` (before ``depth``), one in ``STOPS`` (at ``depth``) or any digit (after),
    then its operand uniform among those operands.
    """
    starts = [value for value in range(10) if value not in STOPS]
    value = starts[int(rng.integers(len(starts)))]
    start, steps = value, []
    for k in range(1, links + 1):
        options = {}
        for operator in OPERATORS:
            results = [(a, _apply(operator, value, a)) for a in _operands(operator, value)]
            if k <= depth:  # no stop before the stop, a stop at it
                results = [(a, r) for a, r in results if (r in STOPS) == (k == depth)]
            if results:
                options[operator] = [a for a, _ in results]
        operators = list(options)
        operator = operators[int(rng.integers(len(operators)))]
        operand = options[operator][int(rng.integers(len(options[operator])))]
        steps.append((operator, operand))
        value = _apply(operator, value, operand)
    return Chain(start, tuple(steps))


def _step_flags(name: str, flags: Sequence[bool] | None, depth: int) -> list[bool]:
    """One flag per worked step (all False when ``None``), or a ValueError naming ``name``."""
    flags = [False] * depth if flags is None else list(flags)
    if len(flags) != depth:
        raise ValueError(f"{name}: expected {depth} flags (one per worked step), got {flags}")
    return flags


def render_v1(
    chain: Chain,
    labels: Sequence[int],
    item: str,
    order: Sequence[int] | None = None,
    swapped: Sequence[bool] | None = None,
    long_form: Sequence[bool] | None = None,
) -> Problem:
    """The problem asking for the first box of ``chain`` with a count in :data:`STOPS`.

    ``labels[k]`` is the box holding the ``k``-th value of ``chain``; ``order`` is the order
    of the question's sentences (a permutation of the start sentence ``0`` and the links
    ``1..n``; ``None`` tells them in chain order); ``swapped[k]`` writes worked step ``k`` (of
    ``+`` or ``*``) with its operands swapped and ``long_form[k]`` opens it with the box it
    builds on (``Compared to Box 2, Box 6 has ...``); one flag per worked step each.
    """
    n = len(chain.steps)
    if len(labels) != n + 1 or len(set(labels)) != len(labels):
        raise ValueError(f"labels: expected {n + 1} distinct boxes, got {labels}")
    depth = stop_depth(chain)
    if depth is None:
        raise ValueError(
            f"chain: expected a start not in {STOPS} and a later count in it, got "
            f"the counts {chain.values()}"
        )
    swapped = _step_flags("swapped", swapped, depth)
    long_form = _step_flags("long_form", long_form, depth)
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
        opening = f"Compared to {names[k]}, " if long_form[k] else ""
        solution.append(f"{opening}{names[k + 1]} has {left} {operator} {right} = {values[k + 1]}.")
    question = [sentences[i] for i in order]
    question.append(f"How many {item} does the first {LABEL} with 0, 3, 6 or 9 {item} have?")
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
        min_steps, max_steps: the number of worked steps ``k`` (where the first count of
            0, 3, 6 or 9 is) is uniform in this range (``max_steps`` defaults to ``links``).
        links: comparisons every prompt tells (the chain's links, worked or not).
        long_forms: write each step in the short or the long form at random (``False``: all
            short, the draft the v1 model was first trained on).
        sizes: number of problems in each split (``train``, ``validation``, ``test``).
    """

    name = "arith-v1"

    def __init__(
        self,
        seed: int = 0,
        min_steps: int = 1,
        max_steps: int | None = None,
        links: int = LINKS,
        long_forms: bool = True,
        sizes: Mapping[str, int] | None = None,
    ) -> None:
        max_steps = links if max_steps is None else max_steps
        super().__init__(seed=seed, min_steps=min_steps, max_steps=max_steps, sizes=sizes)
        if not max_steps <= links <= BOXES - 1:
            raise ValueError(
                f"links={links}: expected at least max_steps={max_steps} (the worked steps) "
                f"and at most {BOXES - 1} (a chain of distinct boxes)"
            )
        self.links, self.long_forms = links, long_forms

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
        long_form = [bool(rng.integers(2)) for _ in range(depth)] if self.long_forms else None
        return render_v1(chain, labels, item, swapped=swapped, long_form=long_form)


def vocabulary() -> list[str]:
    """Every word and symbol an Arith-v1 problem or solution uses (digits excluded): v0's
    vocabulary followed by :data:`QUESTION_WORDS`, so v0's token ids keep their meaning."""
    return [*v0_vocabulary(), *QUESTION_WORDS]


__all__ = ["DEFAULT_SIZES", "LINKS", "STOPS", "ArithV1Task", "render_v1", "vocabulary"]
