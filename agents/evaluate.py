"""Evaluate unmasking policies: accuracy against forward passes, sweeps, Pareto plots, tables.

A policy maps a batch of observations to a batch of reveal decisions (see :class:`Policy`).
:func:`evaluate` runs it over problems ``0 .. episodes - 1`` of an id's split on the
registered vector env, one batched forward pass per step for every busy row, refilling rows as
their episodes end, and returns a summary: accuracy with a 95% Wilson interval, mean NFE,
tokens per NFE, throughput. Given an ``out_dir`` it keeps ``run.json`` (the settings),
``episodes.jsonl`` (one line per finished episode, flushed as it ends) and ``summary.json``;
run again with the same settings and it resumes where it stopped.

    import dllm_gym  # registers the ids
    from agents.evaluate import evaluate, plot_accuracy_vs_nfe, sweep, write_tables
    from agents.heuristics import make_policy

    summary = evaluate(make_policy("threshold", tau=0.9), "DLLMUnmask-Arith-v0",
                       episodes=200, out_dir="runs/threshold-0.9")
    policies = [make_policy("threshold", tau=t) for t in (0.5, 0.7, 0.9, 0.99)]
    summaries = sweep(policies, "DLLMUnmask-Arith-v0", episodes=200, out_dir="runs/sweep")
    plot_accuracy_vs_nfe(summaries, "runs/sweep/pareto", "Arith: accuracy against NFE")
    write_tables(summaries, "runs/sweep/pareto")

Uses only the public Gymnasium API and the registered ids. Plots need matplotlib
(``pip install "dllm-gym[plot]"``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from tqdm import tqdm

import dllm_gym  # noqa: F401  (registers the ids)
from agents.files import write_atomic

EPISODES_FILE = "episodes.jsonl"
SUMMARY_FILE = "summary.json"
RUN_FILE = "run.json"
RUN_KEYS = ("env_id", "overrides", "label")  # what must match for a run to resume
Z_95 = 1.959963984540054


class Policy(Protocol):
    """What :func:`evaluate` drives: a dataclass whose fields are its hyperparameters."""

    name: ClassVar[str]
    required_features: ClassVar[tuple[str, ...]]

    def configure(self, *, gen_length: int, block_length: int) -> None: ...

    def __call__(self, obs: Mapping[str, np.ndarray]) -> np.ndarray: ...


# -- policies: hyperparameters and labels ----------------------------------------------------


def hyperparameters(policy: Policy) -> dict[str, Any]:
    """The policy's constructor fields (dataclass fields with ``init=True``) as JSON values."""
    if not dataclasses.is_dataclass(policy):
        return {}
    return {
        f.name: _jsonable(getattr(policy, f.name))
        for f in dataclasses.fields(policy)
        if f.init and not f.name.startswith("_")
    }


def policy_label(policy: Policy) -> str:
    """``name(field=value, ...)``, e.g. ``threshold(tau=0.9)``."""
    return f"{policy.name}({_format_hyperparameters(hyperparameters(policy))})"


def _format_hyperparameters(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v if isinstance(v, str) else repr(v)}" for k, v in values.items())


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (numpy scalars, tuples, paths converted)."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


# -- statistics ------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% by default)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarize(records: Sequence[Mapping[str, Any]], run: Mapping[str, Any]) -> dict[str, Any]:
    """The summary of episode ``records`` of a run described by ``run`` (see ``run.json``).

    ``total_seconds`` is the run's wall time (over all resumed sessions) when its last
    episode ended; ``tokens_per_second`` is ``gen_length * episodes / total_seconds``.
    """
    n = len(records)
    correct = sum(bool(r["correct"]) for r in records)
    total = max((float(r["run_seconds"]) for r in records), default=0.0)
    low, high = wilson_interval(correct, n)
    return {
        **{key: run[key] for key in ("env_id", "overrides", "policy", "hyperparameters")},
        "label": run["label"],
        "gen_length": run["gen_length"],
        "block_length": run["block_length"],
        "episodes": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "accuracy_ci95": [low, high],
        "mean_nfe": _mean(r["nfe"] for r in records),
        "tokens_per_nfe": _mean(r["tokens_per_nfe"] for r in records),
        "mean_reward": _mean(r["reward"] for r in records),
        "tokens_per_second": run["gen_length"] * n / total if total > 0 else None,
        "seconds_per_episode": total / n if n else None,
        "total_seconds": total,
    }


def _mean(values: Iterator[Any] | Sequence[Any]) -> float:
    values = [float(v) for v in values]
    return math.fsum(values) / len(values) if values else 0.0


# -- evaluation ------------------------------------------------------------------------------


def evaluate(
    policy: Policy,
    env_id: str,
    *,
    episodes: int | None = None,
    num_envs: int = 32,
    overrides: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    resume: bool = True,
) -> dict[str, Any]:
    """Run ``policy`` on problems ``0 .. episodes - 1`` of ``env_id``'s split; the summary.

    Args:
        policy: see :class:`Policy`; configured once with the env's ``gen_length`` and
            ``block_length`` (the id's settings with ``overrides`` applied).
        env_id: a registered id, e.g. ``"DLLMUnmask-Arith-v0"``.
        episodes: how many problems, from index 0; None: the whole split.
        num_envs: rows decoded together (one batched forward pass per step).
        overrides: settings passed to ``gym.make_vec`` (``gen_length``, ``model``, ...); the
            policy's ``required_features`` are added to ``obs_features``.
        out_dir: folder for ``run.json``, ``episodes.jsonl`` and ``summary.json``; None: no
            files.
        progress: show a progress bar (episodes done, running accuracy) on stderr.
        resume: continue the run found in ``out_dir`` (its settings must match: a ValueError
            says what differs; an empty ``episodes.jsonl`` is not checked); False: start
            again, overwriting it.

    Returns:
        The summary (see :func:`summarize`) of every recorded episode of ``0 .. episodes - 1``.
    """
    overrides = dict(overrides or {})
    _check_count("num_envs", num_envs)
    if episodes is not None:
        _check_count("episodes", episodes)
    settings = {**gym.spec(env_id).kwargs, **overrides}
    gen_length, block_length = int(settings["gen_length"]), int(settings["block_length"])
    run = {
        "env_id": env_id,
        "overrides": _jsonable(overrides),
        "policy": policy.name,
        "hyperparameters": hyperparameters(policy),
        "label": policy_label(policy),
        "gen_length": gen_length,
        "block_length": block_length,
    }
    folder = _RunFolder(Path(out_dir), run, resume) if out_dir is not None else None
    records: dict[int, dict[str, Any]] = dict(folder.records) if folder is not None else {}
    features = sorted(set(settings.get("obs_features") or ()) | set(policy.required_features))

    def make_envs(rows: int) -> gym.vector.VectorEnv:
        return gym.make_vec(
            env_id,
            num_envs=rows,
            autoreset_mode=AutoresetMode.DISABLED,
            **{**overrides, "obs_features": features},
        )

    envs: gym.vector.VectorEnv | None = None
    bar: tqdm | None = None
    try:
        policy.configure(gen_length=gen_length, block_length=block_length)
        if episodes is None or any(i not in records for i in range(episodes)):
            envs = make_envs(min(num_envs, episodes or num_envs))
            size = split_size(envs)
            if episodes is None:
                episodes = size
            elif episodes > size:
                raise ValueError(f"episodes={episodes} exceeds the {size} problems of the split")
        todo = [i for i in range(episodes) if i not in records]
        if envs is not None and 0 < len(todo) < envs.num_envs:  # no idle rows from the start
            envs.close()
            envs = make_envs(len(todo))
        done = [r for i, r in records.items() if i < episodes]
        bar = tqdm(
            total=episodes,
            initial=len(done),
            desc=run["label"],
            unit="ep",
            disable=not progress,
            dynamic_ncols=True,
        )
        correct = sum(bool(r["correct"]) for r in done)
        base = max((float(r["run_seconds"]) for r in records.values()), default=0.0)
        if todo:
            assert envs is not None
            for record in _episodes(policy, envs, todo, base):
                records[record["index"]] = record
                if folder is not None:
                    folder.append(record)
                correct += record["correct"]
                bar.set_postfix(accuracy=f"{100 * correct / (bar.n + 1):.1f}%", refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if envs is not None:
            envs.close()
        if folder is not None:
            folder.close()
    summary = summarize([records[i] for i in sorted(records) if i < episodes], run)
    if folder is not None:
        _write_json_atomic(folder.path / SUMMARY_FILE, summary)
    return summary


def split_size(envs: gym.vector.VectorEnv) -> int:
    """How many problems the env's split holds (its ``problems``, index i = problem i)."""
    return len(envs.unwrapped.problems)


def _episodes(
    policy: Policy, envs: gym.vector.VectorEnv, todo: Sequence[int], base_seconds: float
) -> Iterator[dict[str, Any]]:
    """Decode problems ``todo`` with ``policy``, refilling rows as they finish; yield one
    record per finished episode, in the order they end."""
    n = envs.num_envs
    queue = deque(todo)
    if len(queue) < n:
        raise ValueError(f"{len(todo)} problems for {n} rows: build the env with fewer rows")
    index = np.array([queue.popleft() for _ in range(n)], dtype=np.int64)
    start = time.perf_counter()
    started = np.full(n, start)
    busy = np.ones(n, dtype=bool)
    obs, _ = envs.reset(seed=0, options={"index": index.tolist()})
    while busy.any():
        obs, rewards, terminated, truncated, infos = envs.step(np.asarray(policy(obs)))
        ended = np.flatnonzero((terminated | truncated) & busy)
        if not len(ended):
            continue
        now = time.perf_counter()
        refill = np.zeros(n, dtype=bool)
        for row in ended:
            yield {
                "index": int(index[row]),
                "correct": bool(infos["correct"][row]),
                "nfe": int(infos["nfe"][row]),
                "tokens_per_nfe": float(infos["tokens_per_nfe"][row]),
                "reward": float(rewards[row]),
                "truncated": bool(truncated[row]),
                "seconds": float(now - started[row]),
                "answer": _text(infos["answer"][row]),
                "reference": _text(infos["reference"][row]),
                "run_seconds": base_seconds + now - start,
            }
            if queue:
                index[row] = queue.popleft()
                refill[row] = True
            else:
                busy[row] = False
        if refill.any():
            started[refill] = time.perf_counter()
            obs, _ = envs.reset(options={"index": index.tolist(), "reset_mask": refill})


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


# -- files -----------------------------------------------------------------------------------


class _RunFolder:
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
        _write_json_atomic(run_file, {"format": 1, **run})
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


def _write_json_atomic(path: Path, value: Any) -> None:
    """Write ``value`` as JSON so that a reader never sees half of it."""
    try:
        write_atomic(path, (json.dumps(value, indent=2) + "\n").encode("utf-8"))
    except OSError as error:
        raise OSError(
            error.errno, f"{str(path.parent)!r} cannot be written: {error.strerror or error}"
        ) from error


# -- sweeps ----------------------------------------------------------------------------------


def sweep(
    runs: Sequence[Policy],
    env_id: str,
    *,
    episodes: int | None = None,
    num_envs: int = 32,
    overrides: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    resume: bool = True,
) -> list[dict[str, Any]]:
    """:func:`evaluate` each policy of ``runs``; their summaries, in order. Each run keeps its
    files in ``out_dir/<label>`` (the label made a folder name), so a sweep resumes too."""
    folders = [folder_name(policy_label(policy)) for policy in runs]
    repeated = sorted({name for name in folders if folders.count(name) > 1})
    if repeated:
        raise ValueError(f"sweep: policies repeated (or with clashing labels): {repeated}")
    return [
        evaluate(
            policy,
            env_id,
            episodes=episodes,
            num_envs=num_envs,
            overrides=overrides,
            out_dir=None if out_dir is None else Path(out_dir) / name,
            progress=progress,
            resume=resume,
        )
        for policy, name in zip(runs, folders, strict=True)
    ]


def folder_name(label: str) -> str:
    """A folder name for a policy label: ``threshold(tau=0.9)`` -> ``threshold_tau=0.9``."""
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", label).strip("_") or "policy"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the ``(mean NFE, accuracy)`` points no other point dominates (lower NFE and
    higher accuracy are better; dominating means at least as good in both and better in one).

    Exact duplicates of a front point are all on the front. Points with a NaN are never on
    it. The indices come in the order of the front: NFE ascending, then index.
    """
    values = [(float(x), float(y)) for x, y in points]
    valid = [i for i, (x, y) in enumerate(values) if not (math.isnan(x) or math.isnan(y))]
    front = [
        i
        for i in valid
        if not any(
            values[j][0] <= values[i][0] and values[j][1] >= values[i][1] and values[j] != values[i]
            for j in valid
        )
    ]
    return sorted(front, key=lambda i: (values[i][0], -values[i][1], i))


def _points(summaries: Sequence[Mapping[str, Any]]) -> list[tuple[float, float]]:
    return [(float(s["mean_nfe"]), float(s["accuracy"])) for s in summaries]


def _output_path(path_stem: str | Path, suffix: str) -> Path:
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    return stem.with_name(stem.name + suffix)


def plot_accuracy_vs_nfe(
    summaries: Sequence[Mapping[str, Any]], path_stem: str | Path, title: str
) -> tuple[Path, Path]:
    """Accuracy (%, with 95% CI bars) against mean NFE, one line per policy family, the
    Pareto front dashed with its points ringed and named (log NFE axis when NFE spans 8 times
    or more); written to ``path_stem.png`` and ``.svg``; returns both paths."""
    if not summaries:
        raise ValueError("plot_accuracy_vs_nfe: no summaries to plot")
    try:
        import matplotlib
        from matplotlib.figure import Figure
        from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError("plots need matplotlib: pip install 'dllm-gym[plot]'") from error

    families: dict[str, list[Mapping[str, Any]]] = {}
    for summary in summaries:
        families.setdefault(summary["policy"], []).append(summary)
    rc = {"font.size": 12, "axes.titlesize": 14, "legend.fontsize": 11, "svg.fonttype": "none"}
    on_front = {id(summaries[i]) for i in pareto_front(_points(summaries))}
    with matplotlib.rc_context(rc):
        figure = Figure(figsize=(9.5, 5.5), layout="constrained")
        ax = figure.add_subplot()
        for name, group in families.items():
            group = sorted(group, key=lambda s: float(s["mean_nfe"]))
            x = np.array([float(s["mean_nfe"]) for s in group])
            y = np.array([100 * float(s["accuracy"]) for s in group])
            low = np.array([100 * float(s["accuracy_ci95"][0]) for s in group])
            high = np.array([100 * float(s["accuracy_ci95"][1]) for s in group])
            ax.errorbar(
                x, y, yerr=[y - low, high - y], marker="o", markersize=6, linewidth=1.5,
                capsize=3, label=name,
            )  # fmt: skip
            for xi, yi, summary in zip(x, y, group, strict=True):
                # Only the front's points are named (the table names every point).
                text = _format_hyperparameters(summary.get("hyperparameters") or {})
                if text and id(summary) in on_front:
                    ax.annotate(
                        text, (xi, yi), xytext=(9, 3), textcoords="offset points", fontsize=8,
                        alpha=0.8,
                    )  # fmt: skip
        points = _points(summaries)
        front = pareto_front(points)
        fx = [points[i][0] for i in front]
        fy = [100 * points[i][1] for i in front]
        ax.step(
            fx, fy, where="post", linestyle="--", color="black", linewidth=1, marker="o",
            markersize=14, markerfacecolor="none", markeredgewidth=1.5, label="Pareto front",
            zorder=4,
        )  # fmt: skip
        nfe = [x for x, _ in points if x > 0]
        if nfe and max(nfe) >= 8 * min(nfe):  # a wide NFE range: log scale, plain numbers
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("mean NFE (forward passes)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over data
        png, svg = _output_path(path_stem, ".png"), _output_path(path_stem, ".svg")
        figure.savefig(png, dpi=150)
        figure.savefig(svg)
    return png, svg


TABLE_COLUMNS = (
    "policy",
    "hyperparameters",
    "episodes",
    "accuracy (%)",
    "95% CI (%)",
    "mean NFE",
    "tokens/NFE",
    "Pareto front",
)


def write_tables(
    summaries: Sequence[Mapping[str, Any]], path_stem: str | Path
) -> tuple[Path, Path]:
    """One row per summary, in order, to ``path_stem.md`` (Markdown) and ``path_stem.csv``:
    policy, hyperparameters, episodes, accuracy, 95% CI, mean NFE, tokens/NFE, on the front."""
    on_front = set(pareto_front(_points(summaries)))
    rows = []
    for i, s in enumerate(summaries):
        low, high = s["accuracy_ci95"]
        rows.append(
            {
                "policy": s["policy"],
                "hyperparameters": _format_hyperparameters(s.get("hyperparameters") or {}),
                "episodes": int(s["episodes"]),
                "accuracy": 100 * float(s["accuracy"]),
                "low": 100 * float(low),
                "high": 100 * float(high),
                "mean_nfe": float(s["mean_nfe"]),
                "tokens_per_nfe": float(s["tokens_per_nfe"]),
                "front": "yes" if i in on_front else "no",
            }
        )
    md = _output_path(path_stem, ".md")
    lines = [
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        cells = [
            r["policy"],
            r["hyperparameters"].replace("|", "\\|") or "-",
            str(r["episodes"]),
            f"{r['accuracy']:.1f}",
            f"{r['low']:.1f}-{r['high']:.1f}",
            f"{r['mean_nfe']:.2f}",
            f"{r['tokens_per_nfe']:.2f}",
            r["front"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")

    path = _output_path(path_stem, ".csv")
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["policy", "hyperparameters", "episodes", "accuracy_pct", "ci95_low_pct",
             "ci95_high_pct", "mean_nfe", "tokens_per_nfe", "pareto_front"]
        )  # fmt: skip
        for r in rows:
            writer.writerow(
                [r["policy"], r["hyperparameters"], r["episodes"], r["accuracy"], r["low"],
                 r["high"], r["mean_nfe"], r["tokens_per_nfe"], r["front"]]
            )  # fmt: skip
    return md, path
