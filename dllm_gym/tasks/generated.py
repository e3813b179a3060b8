"""What the generated tasks (Arith, Countdown, Sudoku) share: seeded, hash-disjoint splits
whose problems are made on demand from their index."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from dllm_gym.tasks.base import Problem, Task

DEFAULT_SIZES: dict[str, int] = {"train": 1_000_000, "validation": 1_000, "test": 1_000}
# A problem goes to a split by the hash of its canonical key modulo 10.
SPLIT_BUCKETS: dict[str, frozenset[int]] = {
    "train": frozenset(range(2, 10)),
    "validation": frozenset({1}),
    "test": frozenset({0}),
}
SPLIT_SALT = {"train": 0, "validation": 1, "test": 2}
_CACHE_SIZE = 65536


class SeededProblems(Sequence[Problem]):
    """The problems of one split, generated on demand from their index by ``problem(index)``."""

    def __init__(self, problem: Callable[[int], Problem], size: int) -> None:
        self._problem, self._size = problem, size

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._size))]
        if not -self._size <= index < self._size:
            raise IndexError(f"problem index {index} out of range for {self._size} problems")
        return self._problem(index % self._size)


def split_bucket(key: str) -> int:
    """The split bucket (0..9) of a problem's canonical ``key``."""
    digest = hashlib.blake2b(key.encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") % 10


def check_sizes(sizes: Mapping[str, int] | None, splits: Sequence[str]) -> dict[str, int]:
    """The split sizes: :data:`DEFAULT_SIZES` updated by ``sizes``, checked."""
    merged = {**DEFAULT_SIZES, **(sizes or {})}
    unknown = set(merged) - set(splits)
    if unknown:
        raise ValueError(f"sizes: unknown splits {sorted(unknown)}; expected {tuple(splits)}")
    for split, size in merged.items():
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"sizes[{split!r}]={size!r}: expected a non-negative integer")
    return merged


def split_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of problem ``index`` of ``split``: a pure function of the three."""
    return np.random.default_rng([seed, SPLIT_SALT[split], index])


class GeneratedTask(Task):
    """A task whose problem ``i`` of a split is drawn by ``_generate(split, i)`` (with
    :func:`split_rng`, redrawing until :func:`split_bucket` puts it in the split), kept in a
    bounded cache.

    Args:
        seed: seed of the generator; problem ``i`` of a split depends only on (seed, split, i).
        sizes: number of problems in each split (``train``, ``validation``, ``test``).
    """

    splits = ("train", "validation", "test")

    def __init__(self, seed: int = 0, sizes: Mapping[str, int] | None = None) -> None:
        self.seed = seed
        self.sizes = check_sizes(sizes, self.splits)
        self._cache: dict[tuple[str, int], Problem] = {}

    def problems(self, split: str) -> SeededProblems:
        self.check_split(split)
        return SeededProblems(functools.partial(self.problem, split), self.sizes[split])

    def problem(self, split: str, index: int) -> Problem:
        """Problem ``index`` of ``split``."""
        self.check_split(split)
        key = (split, index)
        if key not in self._cache:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = self._generate(split, index)
        return self._cache[key]

    def _generate(self, split: str, index: int) -> Problem:
        raise NotImplementedError
