"""GSM8K: grade-school math word problems (Cobbe et al., 2021).

Problems come from local JSON-lines files (one ``{"question": ..., "answer": ...}`` object a
line, as published in openai/grade-school-math) or, with the ``datasets`` extra and a network,
from the Hugging Face dataset ``openai/gsm8k``. The reference answer is the number after
``####`` in the published solution.
"""

from __future__ import annotations

from collections.abc import Mapping

from dllm_gym.tasks.answers import normalize_number
from dllm_gym.tasks.base import Problem
from dllm_gym.tasks.json_lines import JsonLinesTask

HF_DATASET = "openai/gsm8k"


class GSM8KTask(JsonLinesTask):
    """GSM8K word problems.

    Args:
        data_files: where the problems are. A mapping ``{split: path}``; a folder holding
            ``train.jsonl`` and ``test.jsonl``; or one file, used for every split. None loads
            ``openai/gsm8k`` with the ``datasets`` library (needs ``pip install
            dllm-gym[datasets]`` and a network or a filled cache).
    """

    name = "gsm8k"
    splits = ("train", "test")
    label = "GSM8K"
    hub_dataset, hub_config = HF_DATASET, "main"
    lines = "JSON lines with 'question' and 'answer' (as in openai/grade-school-math)"
    record = "a GSM8K record with 'question' and 'answer' ending in '#### N'"

    def parse(self, record: Mapping[str, str]) -> Problem:
        return Problem(
            question=record["question"],
            reference=reference_answer(record["answer"]),
            solution=record["answer"],
        )


def reference_answer(solution: str) -> str:
    """The number after ``####`` in a GSM8K solution, normalised (``"1,000"`` -> ``"1000"``)."""
    if "####" not in solution:
        raise ValueError("the solution has no '#### answer' line")
    tail = solution.rsplit("####", 1)[1].strip()
    number = normalize_number(tail)
    if number is None:
        raise ValueError(f"the answer line '#### {tail}' is not a number")
    return number
