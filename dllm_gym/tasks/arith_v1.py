"""Arith-v1: Arith chains whose worked answer has a length the prompt does not tell.

Like :mod:`dllm_gym.tasks.arith` (v0), a problem is a chain of single-digit operations told as
shuffled sentences about numbered boxes. Two things change:

- **The question asks for a box at a random depth** ``k`` of a chain of ``N`` links (``k``
  uniform in ``1..N``), so the worked answer stops after ``k`` steps while the prompt always
  holds ``N`` links. How long the answer is, and so where end-of-text begins, is known only
  after following the chain to the asked box: a model cannot read it off the prompt.
- **Equivalent forms are used at random**: the operands of ``+`` and ``*`` come in either
  order (``... Box 4 has 7 + 2 = 9.`` or ``... Box 4 has 2 + 7 = 9.``), so tokens of one
  step revealed together can mix forms.

The answer keeps GSM8K's shape (worked steps, then ``#### N``)::

    Compared to Box 2, Box 8 has 3 times the eggs. Box 2 has 3 eggs. Compared to Box 8,
    Box 5 has 4 fewer eggs. How many eggs does Box 8 have?

    Box 2 has 3. Compared to Box 2, Box 8 has 3 * 3 = 9.
    #### 9

Each step opens as the question's sentence about that box does (``Compared to Box 2, Box 8
has``): the worked answer names the box it builds on, as a person checking the chain would.

Splits are disjoint in the numbers as in v0: a chain (start value and operations) belongs to
one split only, whatever the asked depth, labels, item, order or operand order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dllm_gym.tasks.arith import (
    BOXES,
    ITEMS,
    LABEL,
    ArithTask,
    Chain,
    _sentence,
)
from dllm_gym.tasks.base import Problem
from dllm_gym.tasks.generated import DEFAULT_SIZES

COMMUTATIVE = ("+", "*")


def render_v1(
    chain: Chain,
    labels: Sequence[int],
    item: str,
    depth: int,
    order: Sequence[int] | None = None,
    swapped: Sequence[bool] | None = None,
) -> Problem:
    """The problem asking for the box at ``depth`` (1..len(chain.steps)) of ``chain``.

    ``labels[k]`` is the box holding the ``k``-th value; ``order`` is the order of the
    question's sentences (a permutation of ``0..N``); ``swapped[k]`` writes step ``k`` (of
    ``+`` or ``*``) with its operands swapped.
    """
    n = len(chain.steps)
    if len(labels) != n + 1 or len(set(labels)) != len(labels):
        raise ValueError(f"labels: expected {n + 1} distinct boxes, got {labels}")
    if not 1 <= depth <= n:
        raise ValueError(f"depth: expected 1..{n}, got {depth}")
    swapped = [False] * n if swapped is None else list(swapped)
    if len(swapped) != n:
        raise ValueError(f"swapped: expected {n} flags, got {len(swapped)}")
    for (operator, _), swap in zip(chain.steps, swapped, strict=True):
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
    for k in range(depth):
        operator, operand = chain.steps[k]
        left, right = (operand, values[k]) if swapped[k] else (values[k], operand)
        solution.append(
            f"Compared to {names[k]}, {names[k + 1]} has {left} {operator} {right} "
            f"= {values[k + 1]}."
        )
    question = [sentences[i] for i in order]
    question.append(f"How many {item} does {names[depth]} have?")
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
        min_steps, max_steps: the chain's number of links ``N`` is uniform in this range; the
            asked depth is uniform in ``1..N``.
        sizes: number of problems in each split (``train``, ``validation``, ``test``).
    """

    name = "arith-v1"

    def __init__(
        self,
        seed: int = 0,
        min_steps: int = 2,
        max_steps: int = 4,
        sizes: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(seed=seed, min_steps=min_steps, max_steps=max_steps, sizes=sizes)

    def _generate(self, split: str, index: int) -> Problem:
        chain, rng = self.chain(split, index)
        n = len(chain.steps)
        labels = [int(i) for i in rng.permutation(BOXES)[: n + 1]]
        item = ITEMS[int(rng.integers(len(ITEMS)))]
        order = [int(i) for i in rng.permutation(n + 1)]
        depth = int(rng.integers(1, n + 1))
        swapped = [bool(rng.integers(2)) and op in COMMUTATIVE for op, _ in chain.steps]
        return render_v1(chain, labels, item, depth, order, swapped)


__all__ = ["DEFAULT_SIZES", "ArithV1Task", "render_v1"]
