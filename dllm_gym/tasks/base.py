"""What a task is: problems for a split, prompt formatting, answer extraction and scoring."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dllm_gym.tasks.answers import answers_match, extract_answer


@dataclass(frozen=True)
class Problem:
    """One problem: the question shown to the model and the reference final answer.

    ``solution`` is a worked solution ending in ``#### answer`` when the task has one (used to
    train the embedded model); it is never shown to the model during decoding.
    """

    question: str
    reference: str
    solution: str | None = None


class Task(ABC):
    """A task gives problems for a split, formats prompts and scores generations."""

    name: str = "task"
    splits: tuple[str, ...] = ("train", "test")
    scorer: str = "number"  # how answers are compared (the env's info "scorer")

    @abstractmethod
    def problems(self, split: str) -> Sequence[Problem]:
        """The problems of ``split``, indexable and sized."""

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(
                f"split={split!r} is not a split of task {self.name!r}; "
                f"expected one of {list(self.splits)}"
            )

    def format_prompt(self, question: str, tokenizer: Any) -> list[int]:
        """Token ids of ``question`` as the model expects it.

        Uses the tokenizer's chat template (one user turn plus the generation prompt) where the
        tokenizer has one, else the plain text with the tokenizer's special tokens.
        """
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": question}],
                add_generation_prompt=True,
                tokenize=False,
            )
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(tokenizer(question, add_special_tokens=True)["input_ids"])

    def extract_answer(self, text: str) -> str | None:
        """The final answer in a generated text, or None."""
        return extract_answer(text)

    def is_correct(self, text: str, reference: str) -> bool:
        """Whether the generated ``text`` answers ``reference``."""
        return answers_match(self.extract_answer(text), reference)
