"""Tasks: problems for a split, prompt formatting, answer extraction and scoring."""

from dllm_gym.tasks.answers import answers_match, extract_answer, normalize_number
from dllm_gym.tasks.arith import ArithTask
from dllm_gym.tasks.arith_v1 import ArithV1Task
from dllm_gym.tasks.base import Problem, Task
from dllm_gym.tasks.countdown import CountdownTask
from dllm_gym.tasks.gsm8k import GSM8KTask
from dllm_gym.tasks.humaneval import HumanEvalTask
from dllm_gym.tasks.math500 import MATH500Task
from dllm_gym.tasks.sudoku import SudokuTask

TASKS: dict[str, type[Task]] = {
    "arith": ArithTask,
    "arith-v1": ArithV1Task,
    "gsm8k": GSM8KTask,
    "math500": MATH500Task,
    "humaneval": HumanEvalTask,
    "countdown": CountdownTask,
    "sudoku": SudokuTask,
}


def make_task(name: str, **kwargs) -> Task:
    """The task called ``name`` (a key of ``TASKS``) built with ``kwargs``."""
    if name not in TASKS:
        raise ValueError(f"task={name!r} is not a known task; expected one of {sorted(TASKS)}")
    return TASKS[name](**kwargs)


__all__ = [
    "TASKS",
    "ArithTask",
    "ArithV1Task",
    "CountdownTask",
    "GSM8KTask",
    "HumanEvalTask",
    "MATH500Task",
    "Problem",
    "SudokuTask",
    "Task",
    "answers_match",
    "extract_answer",
    "make_task",
    "normalize_number",
]
