"""What the file-reading tasks (GSM8K, MATH-500) share: problems from local JSON lines, one
file per split, or from a Hugging Face dataset through the ``datasets`` extra."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dllm_gym.tasks.base import Problem, Task

DataFiles = str | os.PathLike | Mapping[str, str | os.PathLike]


class JsonLinesTask(Task):
    """A task read from JSON lines. Subclasses set ``label`` (the name in messages),
    ``hub_dataset`` (and ``hub_config``), ``lines`` and ``record`` (what a file and a line
    must be, for the error messages) and implement :meth:`parse`.

    Args:
        data_files: where the problems are. A mapping ``{split: path}``; a folder holding
            ``<split>.jsonl`` for each split; or one file, used for every split. None loads
            ``hub_dataset`` with the ``datasets`` library (needs ``pip install
            'dllm-gym[datasets]'`` and a network or a filled cache).
    """

    label: str = "task"
    hub_dataset: str = ""
    hub_config: str | None = None
    lines: str = "JSON lines"  # what a file holds
    record: str = "a JSON object"  # what a line is

    def __init__(self, data_files: DataFiles | None = None) -> None:
        self.data_files = data_files
        self._cache: dict[str, list[Problem]] = {}
        if data_files is not None:
            for split in self._files():
                self._path(split)  # fail now on a missing file, not at the first reset

    def parse(self, record: Mapping[str, Any]) -> Problem:
        """The problem of one record (a line of a file, or a row of the dataset)."""
        raise NotImplementedError

    def problems(self, split: str) -> Sequence[Problem]:
        self.check_split(split)
        if split not in self._cache:
            if self.data_files is None:
                self._cache[split] = self._load_hub_split(split)
            else:
                self._cache[split] = self._load_jsonl(self._path(split))
        return self._cache[split]

    def _files(self) -> dict[str, Path]:
        files = self.data_files
        if isinstance(files, Mapping):
            unknown = sorted(set(files) - set(self.splits))
            if unknown:
                raise ValueError(
                    f"data_files: unknown split(s) {unknown}; "
                    f"expected keys among {list(self.splits)}"
                )
            return {split: Path(path).expanduser() for split, path in files.items()}
        if not isinstance(files, (str, os.PathLike)):
            raise TypeError(
                f"data_files={files!r}: expected a path, a folder or a mapping {{split: path}}"
            )
        path = Path(files).expanduser()
        if path.is_dir():
            return {split: path / f"{split}.jsonl" for split in self.splits}
        return {split: path for split in self.splits}

    def _path(self, split: str) -> Path:
        files = self._files()
        if split not in files:
            raise ValueError(
                f"data_files has no file for split {split!r}; it lists {sorted(files)}"
            )
        path = files[split]
        if not path.is_file():
            raise FileNotFoundError(
                f"data_files: no file {str(path)!r} for {self.label} split {split!r}; "
                f"expected {self.lines}"
            )
        return path

    def _load_jsonl(self, path: Path) -> list[Problem]:
        problems = []
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    problems.append(self.parse(json.loads(line)))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
                    raise ValueError(
                        f"data_files: {path}:{number} is not {self.record} "
                        f"({e.__class__.__name__}: {e})"
                    ) from e
        if not problems:
            raise ValueError(f"data_files: {path} holds no problems")
        return problems

    def _load_hub_split(self, split: str) -> list[Problem]:
        try:
            import datasets
        except ImportError as error:
            raise ImportError(
                f"{self.label} without data_files loads the Hugging Face dataset "
                f"{self.hub_dataset} and needs the datasets extra: pip install "
                "'dllm-gym[datasets]'; or pass data_files= a local copy of the JSON-lines files"
            ) from error
        try:
            rows = datasets.load_dataset(self.hub_dataset, self.hub_config, split=split)
        except Exception as error:  # datasets raises many kinds for a missing network
            raise RuntimeError(
                f"could not load the Hugging Face dataset {self.hub_dataset!r} "
                f"({error.__class__.__name__}: {error}); pass data_files= a local copy of the "
                "JSON-lines files instead"
            ) from error
        return [self.parse(row) for row in rows]
