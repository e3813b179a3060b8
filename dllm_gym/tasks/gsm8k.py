"""GSM8K: grade-school math word problems (Cobbe et al., 2021).

Problems come from local JSON-lines files (one ``{"question": ..., "answer": ...}`` object a
line, as published in openai/grade-school-math) or, with the ``datasets`` extra and a network,
from the Hugging Face dataset ``openai/gsm8k``. The reference answer is the number after
``####`` in the published solution.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from dllm_gym.tasks.answers import normalize_number
from dllm_gym.tasks.base import Problem, Task

DataFiles = str | os.PathLike | Mapping[str, str | os.PathLike]
HF_DATASET = "openai/gsm8k"


class GSM8KTask(Task):
    """GSM8K word problems.

    Args:
        data_files: where the problems are. A mapping ``{split: path}``; a folder holding
            ``train.jsonl`` and ``test.jsonl``; or one file, used for every split. None loads
            ``openai/gsm8k`` with the ``datasets`` library (needs ``pip install
            dllm-gym[datasets]`` and a network or a filled cache).
    """

    name = "gsm8k"
    splits = ("train", "test")

    def __init__(self, data_files: DataFiles | None = None) -> None:
        self.data_files = data_files
        self._cache: dict[str, list[Problem]] = {}
        if data_files is not None:
            for split in self._files():
                self._path(split)  # fail now on a missing file, not at the first reset

    def problems(self, split: str) -> Sequence[Problem]:
        self.check_split(split)
        if split not in self._cache:
            if self.data_files is None:
                self._cache[split] = _load_hub_split(split)
            else:
                self._cache[split] = _load_jsonl(self._path(split))
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
        path = Path(files).expanduser()  # type: ignore[arg-type]
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
                f"data_files: no file {str(path)!r} for GSM8K split {split!r}; expected JSON "
                f"lines with 'question' and 'answer' (as in openai/grade-school-math)"
            )
        return path


def reference_answer(solution: str) -> str:
    """The number after ``####`` in a GSM8K solution, normalised (``"1,000"`` -> ``"1000"``)."""
    if "####" not in solution:
        raise ValueError("the solution has no '#### answer' line")
    tail = solution.rsplit("####", 1)[1].strip()
    number = normalize_number(tail)
    if number is None:
        raise ValueError(f"the answer line '#### {tail}' is not a number")
    return number


def _problem(record: Mapping[str, str]) -> Problem:
    return Problem(
        question=record["question"],
        reference=reference_answer(record["answer"]),
        solution=record["answer"],
    )


def _load_jsonl(path: Path) -> list[Problem]:
    problems = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                problems.append(_problem(record))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                raise ValueError(
                    f"data_files: {path}:{number} is not a GSM8K record with 'question' and "
                    f"'answer' ending in '#### N' ({error})"
                ) from error
    if not problems:
        raise ValueError(f"data_files: {path} holds no problems")
    return problems


def _load_hub_split(split: str) -> list[Problem]:
    try:
        import datasets
    except ImportError as error:
        raise ImportError(
            "GSM8K without data_files loads the Hugging Face dataset openai/gsm8k and needs the "
            "datasets extra: pip install 'dllm-gym[datasets]'; or pass data_files= a local "
            "copy of the JSON-lines files"
        ) from error
    try:
        rows = datasets.load_dataset(HF_DATASET, "main", split=split)
    except Exception as error:  # datasets raises many kinds for a missing network
        raise RuntimeError(
            f"could not load the Hugging Face dataset {HF_DATASET!r} ({error.__class__.__name__}: "
            f"{error}); pass data_files= a local copy of the JSON-lines files instead"
        ) from error
    return [_problem(row) for row in rows]
