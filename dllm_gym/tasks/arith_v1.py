"""Arith-v1: Arith chains whose worked answer has a length the prompt does not tell.

Like :mod:`dllm_gym.tasks.arith` (v0), a problem is a chain of single-digit operations told as
shuffled sentences about numbered boxes, and the question asks for the box at its end. Two
things change:

- **The prompt always tells the same number of links**: the asked chain has ``N`` links
  (``N`` uniform in ``1..3``) and a *loose chain* of ``links - N`` more comparisons between
  other boxes, the first of which has no known count, fills the rest (three comparisons in
  all, so a chain of three has no loose one). The sentences are shuffled together, so every
  prompt has the same shape and the worked answer's length (``N`` steps, and so where
  end-of-text begins) is known only after following the chain from its start, not from
  counting sentences (a model that follows three links inside one forward pass can still
  tell it: see the status below).
- **Equivalent forms are used at random**: the operands of ``+`` and ``*`` come in either
  order (``... Box 4 has 7 + 2 = 9.`` or ``... Box 4 has 2 + 7 = 9.``), so tokens of one
  step revealed together can mix forms.

The answer keeps GSM8K's shape (worked steps, then ``#### N``)::

    Compared to Box 6, Box 1 has 2 fewer eggs. Box 2 has 3 eggs. Compared to Box 1, Box 0
    has 4 more eggs. Compared to Box 2, Box 8 has 3 times the eggs. How many eggs does Box 8
    have?

    Box 2 has 3. Compared to Box 2, Box 8 has 3 * 3 = 9.
    #### 9

Each step opens as the question's sentence about that box does (``Compared to Box 2, Box 8
has``): the worked answer names the box it builds on, as a person checking the chain would.
The loose chain (Box 6 to 1 to 0 above) never meets the asked one: following the chain
from the only box with a known count never enters it.

Status (issue 17): no environment id uses this task yet, because no embedded model meets its
targets. Three drafts were trained from the v0 model on this 2-core CPU (40 to 106 minutes
each): a box asked at a random depth of a fully told chain (65 to 72% top-1 on validation; the
model named the asked box in the first step, a shortcut right whenever it is the first link),
four comparisons in every prompt (62.5% and 55% at 2,500 and 3,000 steps, where it was stopped;
operands taken from the wrong sentence), and this one (73.1% top-1 on the 1,000 test problems
after 6,000 steps). With three comparisons the trained model also reads the answer's length off
the prompt in one forward pass (end of text first exceeds 0.5 exactly at the true length in 80%
of problems, against 15% at step 500): the chains are short enough to follow inside one pass.

Splits are disjoint in the numbers as in v0: the asked chain (start value and operations)
belongs to one split only, whatever the loose chain, labels, item, order or operand order.
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
    _draw_chain,
    _sentence,
)
from dllm_gym.tasks.base import Problem
from dllm_gym.tasks.generated import DEFAULT_SIZES, SPLIT_BUCKETS, split_rng

COMMUTATIVE = ("+", "*")
LINKS = 3  # comparisons every prompt tells: the asked chain's and the loose chain's


def render_v1(
    chain: Chain,
    labels: Sequence[int],
    item: str,
    loose: Sequence[tuple[str, int]] = (),
    loose_labels: Sequence[int] = (),
    order: Sequence[int] | None = None,
    swapped: Sequence[bool] | None = None,
) -> Problem:
    """The problem asking for the box at the end of ``chain``, told among a loose chain.

    ``labels[k]`` is the box holding the ``k``-th value of ``chain``; ``loose`` are the
    (operator, operand) links of the loose chain, whose boxes are ``loose_labels`` (one more
    than its links, none of ``labels``); ``order`` is the order of the question's sentences
    (a permutation of the start sentence ``0``, the chain's links ``1..N`` and then the loose
    links); ``swapped[k]`` writes step ``k`` (of ``+`` or ``*``) with its operands swapped.
    """
    n = len(chain.steps)
    if len(labels) != n + 1 or len(set(labels)) != len(labels):
        raise ValueError(f"labels: expected {n + 1} distinct boxes, got {labels}")
    if loose and (
        len(loose_labels) != len(loose) + 1
        or len(set(loose_labels)) != len(loose_labels)
        or set(loose_labels) & set(labels)
    ):
        raise ValueError(
            f"loose_labels: expected {len(loose) + 1} distinct boxes not in labels {labels}, "
            f"got {loose_labels}"
        )
    swapped = [False] * n if swapped is None else list(swapped)
    if len(swapped) != n:
        raise ValueError(f"swapped: expected {n} flags, got {len(swapped)}")
    for (operator, _), swap in zip(chain.steps, swapped, strict=True):
        if swap and operator not in COMMUTATIVE:
            raise ValueError(f"swapped: a {operator!r} step cannot swap its operands")
    count = n + 1 + len(loose)
    order = list(range(count)) if order is None else list(order)
    if sorted(order) != list(range(count)):
        raise ValueError(f"order: expected a permutation of 0..{count - 1}, got {order}")
    names = [f"{LABEL} {label}" for label in labels]
    loose_names = [f"{LABEL} {label}" for label in loose_labels]
    values = chain.values()
    sentences = [f"{names[0]} has {chain.start} {item}."]
    for k, (operator, operand) in enumerate(chain.steps):
        sentences.append(_sentence(operator, names[k + 1], operand, item, names[k]))
    for k, (operator, operand) in enumerate(loose):
        sentences.append(_sentence(operator, loose_names[k + 1], operand, item, loose_names[k]))
    solution = [f"{names[0]} has {chain.start}."]
    for k, (operator, operand) in enumerate(chain.steps):
        left, right = (operand, values[k]) if swapped[k] else (values[k], operand)
        solution.append(
            f"Compared to {names[k]}, {names[k + 1]} has {left} {operator} {right} "
            f"= {values[k + 1]}."
        )
    question = [sentences[i] for i in order]
    question.append(f"How many {item} does {names[n]} have?")
    answer = str(values[n])
    return Problem(
        question=" ".join(question),
        reference=answer,
        solution=" ".join(solution) + f"\n#### {answer}",
    )


class ArithV1Task(ArithTask):
    """Arith-v1 (see the module docstring).

    Args:
        seed: seed of the generator; problem ``i`` of a split depends only on (seed, split, i).
        min_steps, max_steps: the asked chain's number of links ``N`` is uniform in this range.
        links: comparisons every prompt tells; the loose chain has ``links - N`` of them.
        sizes: number of problems in each split (``train``, ``validation``, ``test``).
    """

    name = "arith-v1"

    def __init__(
        self,
        seed: int = 0,
        min_steps: int = 1,
        max_steps: int = 3,
        links: int = LINKS,
        sizes: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(seed=seed, min_steps=min_steps, max_steps=max_steps, sizes=sizes)
        if not max_steps <= links <= BOXES - 2:
            raise ValueError(
                f"links={links}: expected at least max_steps={max_steps} (the asked chain's "
                f"links) and at most {BOXES - 2} (two chains of distinct boxes)"
            )
        self.links = links

    def chain(self, split: str, index: int) -> tuple[Chain, np.random.Generator]:
        """The asked chain of problem ``index`` of ``split`` and the generator that drew it.

        Its length is drawn first, then chains of that length until one belongs to
        ``split``, so ``N`` is uniform in every split (v0 redraws the length too, which
        favours lengths with more chains in the split's buckets).
        """
        rng = split_rng(self.seed, split, index)
        n = int(rng.integers(self.min_steps, self.max_steps + 1))
        while True:
            chain = _draw_chain(rng, n, n)
            if chain.split_bucket() in SPLIT_BUCKETS[split]:
                return chain, rng

    def _generate(self, split: str, index: int) -> Problem:
        chain, rng = self.chain(split, index)
        n = len(chain.steps)
        boxes = [int(i) for i in rng.permutation(BOXES)]
        labels, loose_labels = boxes[: n + 1], boxes[n + 1 : self.links + 2]
        loose = []
        for _ in range(self.links - n):
            operator = OPERATORS[int(rng.integers(len(OPERATORS)))]
            loose.append((operator, int(rng.integers(2 if operator == "*" else 1, 10))))
        item = ITEMS[int(rng.integers(len(ITEMS)))]
        order = [int(i) for i in rng.permutation(self.links + 1)]
        swapped = [bool(rng.integers(2)) and op in COMMUTATIVE for op, _ in chain.steps]
        return render_v1(chain, labels, item, loose, loose_labels, order, swapped)


__all__ = ["DEFAULT_SIZES", "LINKS", "ArithV1Task", "render_v1"]
