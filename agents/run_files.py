"""The files of a resumable evaluation run: ``run.json`` (settings), ``episodes.jsonl`` (one
line per finished episode, flushed as it ends) and ``summary.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents.files import write_atomic

EPISODES_FILE = "episodes.jsonl"
SUMMARY_FILE = "summary.json"
RUN_FILE = "run.json"
RUN_KEYS = ("env_id", "overrides", "label")  # what must match for a run to resume


class RunFolder:
    """``run.json``, ``episodes.jsonl`` and ``summary.json`` of one run: created, checked and
    loaded (a torn last line removed) before any env work; records appended and flushed."""

    def __init__(self, path: Path, run: dict[str, Any], resume: bool) -> None:
        self.path = path
        self.records: dict[int, dict[str, Any]] = {}
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OSError(
                error.errno, f"out_dir {str(path)!r} cannot be created: {error.strerror or error}"
            ) from error
        episodes, run_file = path / EPISODES_FILE, path / RUN_FILE
        if resume and episodes.exists() and episodes.stat().st_size > 0:
            self._check_settings(run_file, run)
            self.records = read_episodes(episodes)
        else:
            for name in (EPISODES_FILE, SUMMARY_FILE):
                (path / name).unlink(missing_ok=True)
        write_json_atomic(run_file, {"format": 1, **run})
        try:
            self._file = episodes.open("a", encoding="utf-8")
        except OSError as error:
            raise OSError(
                error.errno, f"{str(episodes)!r} cannot be written: {error.strerror or error}"
            ) from error

    def _check_settings(self, run_file: Path, run: Mapping[str, Any]) -> None:
        advice = "use another out_dir, or resume=False to start it again"
        if not run_file.exists():
            raise ValueError(
                f"{str(self.path)!r} holds {EPISODES_FILE} but no {RUN_FILE}, so its settings "
                f"are unknown; {advice}"
            )
        try:
            stored = json.loads(run_file.read_text(encoding="utf-8"))
        except ValueError as error:
            raise ValueError(f"{str(run_file)!r} is not valid JSON ({error}); {advice}") from None
        differences = [
            f"{key} is {stored.get(key)!r} there, {run[key]!r} here"
            for key in RUN_KEYS
            if stored.get(key) != run[key]
        ]
        if differences:
            raise ValueError(
                f"{str(self.path)!r} holds a run with other settings: {'; '.join(differences)}; "
                f"{advice}"
            )

    def append(self, record: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_episodes(path: str | Path) -> dict[int, dict[str, Any]]:
    """Records of an ``episodes.jsonl`` by index. A torn last line (no newline, or not valid
    JSON) is cut from the file; an invalid line elsewhere or a repeated index is a ValueError."""
    path = Path(path)
    data = path.read_bytes()
    records: dict[int, dict[str, Any]] = {}
    offset = 0
    lines = data.split(b"\n")
    for number, line in enumerate(lines[:-1], start=1):  # lines[-1]: after the last newline
        end = offset + len(line) + 1
        if line.strip():
            try:
                record = json.loads(line)
            except ValueError:
                if end == len(data):  # the last line: torn by an interruption
                    break
                raise ValueError(f"{str(path)!r}, line {number}: not valid JSON") from None
            if not isinstance(record, dict) or not isinstance(record.get("index"), int):
                raise ValueError(f"{str(path)!r}, line {number}: not an episode record")
            if record["index"] in records:
                raise ValueError(f"{str(path)!r}, line {number}: index {record['index']} repeated")
            records[record["index"]] = record
        offset = end
    if offset < len(data):
        with path.open("r+b") as file:
            file.truncate(offset)
    return records


def write_json_atomic(path: Path, value: Any) -> None:
    """Write ``value`` as JSON so that a reader never sees half of it."""
    try:
        write_atomic(path, (json.dumps(value, indent=2) + "\n").encode("utf-8"))
    except OSError as error:
        raise OSError(
            error.errno, f"{str(path.parent)!r} cannot be written: {error.strerror or error}"
        ) from error
