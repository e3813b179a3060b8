"""MATH-500: the 500-problem test subset of MATH (Hendrycks et al., 2021) used by PRM800K.

Problems come from a local JSON-lines file (one ``{"problem": ..., "answer": ...}`` object a
line, as published in ``HuggingFaceH4/MATH-500``; ``solution``, ``subject``, ``level`` and
``unique_id`` are optional) or, with the ``datasets`` extra and a network, from the Hugging Face
dataset ``HuggingFaceH4/MATH-500``.

The question shown to the model is the problem followed by :data:`INSTRUCTION`, which asks for
the final answer in ``\\boxed{}``. The reference string is the published ``answer`` field
verbatim: a LaTeX expression without ``\\boxed{}`` or ``$`` delimiters, such as
``\\frac{14}{3}`` or ``\\left( 3, \\frac{\\pi}{2} \\right)``.

The answer of a generation is the content of its last ``\\boxed{...}`` (see :func:`last_boxed`).
Answers are compared with the optional ``math-verify`` package when it is installed (scorer
``"math-verify"``), else by :func:`answers_equivalent` (scorer ``"normalized-string"``): a
conservative LaTeX normalisation followed by string equality, or by exact equality of the
values when both sides are rational numbers. Math-verify mode also accepts what the
normalised comparison accepts.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from dllm_gym.tasks.base import Problem
from dllm_gym.tasks.json_lines import DataFiles, JsonLinesTask

HF_DATASET = "HuggingFaceH4/MATH-500"
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
MATH_VERIFY_TIMEOUT_S = 5  # per parse and per comparison; enforced only in the main thread

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _closing_brace(text: str, start: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``start``; escaped braces do not count."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """The content of the last top-level ``\\boxed{...}`` (or ``\\boxed {...}``, ``\\fbox{...}``).

    Nested braces are matched (``\\boxed{\\frac{1}{\\sqrt{2}}}`` -> ``\\frac{1}{\\sqrt{2}}``).
    None when the text has no box, the last box is never closed, or it is empty.
    """
    answer, position = None, 0
    while (match := _BOX_RE.search(text, position)) is not None:
        end = _closing_brace(text, match.end() - 1)
        if end is None:
            return None
        answer, position = text[match.end() : end], end + 1
    if answer is None or not answer.strip():
        return None
    return answer.strip()


# --- the normalised comparison -------------------------------------------------------------

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_NUMBER_RE = re.compile(_NUMBER)
_THOUSANDS_RE = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_FRAC_RE = re.compile(r"([-+]?)\\frac\{(" + _NUMBER + r")\}\{(" + _NUMBER + r")\}")
_SLASH_RE = re.compile(r"(" + _NUMBER + r")/(" + _NUMBER + r")")
_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right)(?:\.|(?![A-Za-z]))")
_SPACING_RE = re.compile(r"\\[!,;: ]")
_DEGREES_RE = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![A-Za-z])|°")
_TEXT_WRAPPER_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
_UNIT_RE = re.compile(r"(" + _NUMBER + r")\s*\\(?:text|mbox|mathrm)\s*\{\s*[A-Za-z][A-Za-z ]*\}")
_ASSIGNMENT_RE = re.compile(r"(?:[A-Za-z]|\\[A-Za-z]+)\s*=\s*([^=]+)")
_DELIMITERS = (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_BRACED_COMMANDS_RE = re.compile(r"\\(frac|sqrt)(?![A-Za-z])")
_COMMAND_SPACE_RE = re.compile(r"(\\[A-Za-z]+)?\s+(?=([A-Za-z])?)")


def _read_argument(text: str, i: int) -> tuple[str, int] | None:
    """The argument of a command at ``text[i:]`` braced (``"{...}"``) and the index after it."""
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text):
        return None
    if text[i] == "{":
        end = _closing_brace(text, i)
        if end is None:
            return None
        return "{" + _brace_arguments(text[i + 1 : end]) + "}", end + 1
    if text[i] == "\\":
        name = re.match(r"\\[A-Za-z]+", text[i:])
        if name is None:
            return None
        return "{" + name.group() + "}", i + len(name.group())
    if text[i] in "}[":
        return None
    return "{" + text[i] + "}", i + 1


def _brace_arguments(text: str) -> str:
    """Brace the arguments of ``\\frac`` and ``\\sqrt``: ``\\frac12`` -> ``\\frac{1}{2}``."""
    out, position = [], 0
    while (match := _BRACED_COMMANDS_RE.search(text, position)) is not None:
        out.append(text[position : match.end()])
        position = match.end()
        for _ in range(2 if match.group(1) == "frac" else 1):
            argument = _read_argument(text, position)
            if argument is None:
                break
            out.append(argument[0])
            position = argument[1]
    out.append(text[position:])
    return "".join(out)


def normalize_answer(text: str) -> str:
    """A LaTeX answer in a canonical spelling, for string comparison.

    Conservative on purpose; in order it: strips ``$...$``, ``\\(...\\)`` and ``\\[...\\]``
    delimiters; drops ``\\left`` and ``\\right``, the spacing commands ``\\!``, ``\\,``,
    ``\\;``, ``\\:`` and ``\\ ``, dollar signs, percent signs and degree marks (``^\\circ``,
    ``^{\\circ}``, ``°``); turns ``\\dfrac`` and ``\\tfrac`` into ``\\frac`` and braces the
    arguments of ``\\frac`` and ``\\sqrt`` (``\\frac12`` -> ``\\frac{1}{2}``); drops a unit
    written as ``\\text{...}`` (or ``\\mbox``, ``\\mathrm``) right after a number
    (``5\\text{ cm}`` -> ``5``) and a ``\\text{...}`` wrapper around the whole answer; drops a
    single-variable assignment (``x = 5`` -> ``5``) and one trailing period; removes
    whitespace (keeping one space where it ends a command before a letter, as in ``\\pi r``).
    """
    s = text.strip()
    for opening, closing in _DELIMITERS:
        if len(s) >= len(opening) + len(closing) and s.startswith(opening) and s.endswith(closing):
            s = s[len(opening) : len(s) - len(closing)].strip()
    s = _LEFT_RIGHT_RE.sub("", s)
    s = _SPACING_RE.sub(" ", s)
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    s = _DEGREES_RE.sub("", s)
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = _brace_arguments(s)
    s = s.replace("{,}", ",").strip()
    unit = _UNIT_RE.fullmatch(s)
    if unit is not None:
        s = unit.group(1)
    while (wrapper := _TEXT_WRAPPER_RE.fullmatch(s)) is not None:
        s = wrapper.group(1).strip()
    assignment = _ASSIGNMENT_RE.fullmatch(s)
    if assignment is not None:
        s = assignment.group(1).strip()
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1]
    return _COMMAND_SPACE_RE.sub(_drop_space, s)


def _drop_space(match: re.Match[str]) -> str:
    """A run of whitespace removed, but one space kept between a command and a letter."""
    command, letter = match.group(1), match.group(2)
    if command is None:
        return ""
    return command + " " if letter is not None else command


def as_rational(text: str) -> Fraction | None:
    """The value of a normalised answer that is a rational number, else None.

    Accepts integers, decimals (``0.5``, ``.5``, ``1,000``), ``a/b`` and ``\\frac{a}{b}``
    with an optional sign in front (``-\\frac{1}{2}``).
    """
    try:
        if _NUMBER_RE.fullmatch(text):
            return Fraction(text)
        if _THOUSANDS_RE.fullmatch(text):
            return Fraction(text.replace(",", ""))
        if (match := _FRAC_RE.fullmatch(text)) is not None:
            value = Fraction(match.group(2)) / Fraction(match.group(3))
            return -value if match.group(1) == "-" else value
        if (match := _SLASH_RE.fullmatch(text)) is not None:
            return Fraction(match.group(1)) / Fraction(match.group(2))
    except (ValueError, ZeroDivisionError):
        return None
    return None


def answers_equivalent(predicted: str | None, reference: str) -> bool:
    """Normalised string equality (:func:`normalize_answer`), or equal rational values."""
    if predicted is None:
        return False
    left, right = normalize_answer(predicted), normalize_answer(reference)
    if not left or not right:
        return False
    if left == right:
        return True
    left_value, right_value = as_rational(left), as_rational(right)
    return left_value is not None and left_value == right_value


def math_verify_equivalent(predicted: str, reference: str) -> bool:
    """Whether math-verify finds ``predicted`` equal to ``reference`` (False on any error).

    Both are parsed as ``$\\boxed{...}$``. Math-verify's timeouts use ``signal.alarm``, which
    only works in the main thread; elsewhere it runs without a timeout.
    """
    import math_verify
    from math_verify.errors import TimeoutException

    seconds = (
        MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    )
    try:
        gold = math_verify.parse(f"$\\boxed{{{reference}}}$", parsing_timeout=seconds)
        answer = math_verify.parse(f"$\\boxed{{{predicted}}}$", parsing_timeout=seconds)
        if not gold or not answer:
            return False
        return bool(math_verify.verify(gold, answer, timeout_seconds=seconds))
    except (Exception, TimeoutException):  # math-verify's timeout is a BaseException
        return False


@functools.cache
def math_verify_available() -> bool:
    """Whether the optional ``math-verify`` package can be imported."""
    try:
        import math_verify  # noqa: F401
    except ImportError:
        return False
    return True


# --- the task -------------------------------------------------------------------------------


class MATH500Task(JsonLinesTask):
    """MATH-500 competition problems with LaTeX answers (see the module docstring).

    Args:
        data_files: where the problems are. A mapping ``{"test": path}``; a folder holding
            ``test.jsonl``; or one JSON-lines file. None loads ``HuggingFaceH4/MATH-500`` with
            the ``datasets`` library (needs ``pip install 'dllm-gym[datasets]'`` and a network
            or a filled cache).
        use_math_verify: compare answers with the ``math-verify`` package. None uses it when
            it is installed; True requires it; False never uses it.
    """

    name = "math500"
    splits = ("test",)
    label = "MATH-500"
    hub_dataset = HF_DATASET
    lines = f"JSON lines with 'problem' and 'answer' (as in {HF_DATASET})"
    record = "a MATH-500 record, a JSON object with string fields 'problem' and 'answer'"

    def __init__(
        self, data_files: DataFiles | None = None, use_math_verify: bool | None = None
    ) -> None:
        if use_math_verify not in (None, True, False):
            raise TypeError(f"use_math_verify={use_math_verify!r}: expected True, False or None")
        if use_math_verify and not math_verify_available():
            raise ImportError(
                "use_math_verify=True needs the math-verify package: pip install math-verify; "
                "or pass use_math_verify=None to fall back to the normalised string comparison"
            )
        self.use_math_verify = (
            math_verify_available() if use_math_verify is None else bool(use_math_verify)
        )
        super().__init__(data_files)

    @property
    def scorer(self) -> str:
        """How answers are compared: ``"math-verify"`` or ``"normalized-string"``."""
        return "math-verify" if self.use_math_verify else "normalized-string"

    def parse(self, record: Mapping[str, Any]) -> Problem:
        problem, answer = record["problem"], record["answer"]
        solution = record.get("solution")
        if not isinstance(problem, str) or not problem.strip():
            raise ValueError(f"'problem' must be a non-empty string, got {problem!r}")
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError(f"'answer' must be a non-empty string, got {answer!r}")
        if solution is not None and not isinstance(solution, str):
            raise ValueError(f"'solution' must be a string, got {type(solution).__name__}")
        return Problem(question=prompt_text(problem), reference=answer.strip(), solution=solution)

    def extract_answer(self, text: str) -> str | None:
        """The content of the last ``\\boxed{...}`` of ``text`` (:func:`last_boxed`)."""
        return last_boxed(text)

    def is_correct(self, text: str, reference: str) -> bool:
        """Whether the last box of ``text`` holds an answer equivalent to ``reference``."""
        predicted = self.extract_answer(text)
        if predicted is None:
            return False
        if answers_equivalent(predicted, reference):
            return True
        return self.use_math_verify and math_verify_equivalent(predicted, reference)


def prompt_text(problem: str) -> str:
    """The question shown to the model: the problem, a blank line and :data:`INSTRUCTION`."""
    return f"{problem.strip()}\n\n{INSTRUCTION}"
