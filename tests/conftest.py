"""Shared fixtures: a tiny random model saved to disk and GSM8K files written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dllm_gym.models.architecture import DiffusionTransformerConfig, DiffusionTransformerForMaskedLM
from dllm_gym.models.loading import DiffusionLM, load_model
from dllm_gym.models.tokenizer import EOT_TOKEN, build_word_tokenizer
from dllm_gym.tasks.arith import vocabulary

# Three problems written for these tests (GSM8K's format, not GSM8K's text).
GSM8K_FIXTURE = [
    {
        "question": "A baker makes 12 muffins and sells 5. How many muffins are left?",
        "answer": "The baker has 12 - 5 = <<12-5=7>>7 muffins left.\n#### 7",
    },
    {
        "question": "Tickets cost $1,250 each. How much do 2 tickets cost?",
        "answer": "Two tickets cost 2 * 1,250 = <<2*1250=2500>>2,500 dollars.\n#### 2,500",
    },
    {
        "question": "A rope of 7.5 meters is cut in half. How long is each piece?",
        "answer": "Each piece is 7.5 / 2 = <<7.5/2=3.75>>3.75 meters.\n#### 3.75",
    },
]


@pytest.fixture(scope="session")
def word_tokenizer():
    return build_word_tokenizer(vocabulary())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, word_tokenizer) -> Path:
    """A randomly initialised 2-layer model of the project's architecture, saved to disk."""
    torch.manual_seed(0)
    config = DiffusionTransformerConfig(
        vocab_size=len(word_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=160,
        mask_token_id=word_tokenizer.mask_token_id,
        eot_token_id=word_tokenizer.convert_tokens_to_ids(EOT_TOKEN),
        pad_token_id=word_tokenizer.pad_token_id,
        eos_token_id=word_tokenizer.eos_token_id,
        initializer_range=0.5,  # sharp, varied predictions make decoding tests informative
    )
    path = tmp_path_factory.mktemp("tiny_model")
    DiffusionTransformerForMaskedLM(config).save_pretrained(path)
    word_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir) -> DiffusionLM:
    return load_model(tiny_model_dir, device="cpu")


@pytest.fixture(scope="session")
def gsm8k_records() -> list[dict[str, str]]:
    return GSM8K_FIXTURE


@pytest.fixture()
def gsm8k_dir(tmp_path) -> Path:
    for split, records in (("train", GSM8K_FIXTURE[:2]), ("test", GSM8K_FIXTURE)):
        lines = "\n".join(json.dumps(r) for r in records) + "\n"
        (tmp_path / f"{split}.jsonl").write_text(lines, encoding="utf-8")
    return tmp_path


# Two MATH-500-style and two HumanEval-style problems written for these tests.
MATH500_FIXTURE = [
    {"problem": "What is $1 + \\frac{1}{2}$?", "answer": "\\frac{3}{2}"},
    {"problem": "Solve $2x = 10$ for $x$.", "answer": "5"},
]
HUMANEVAL_FIXTURE = [
    {
        "task_id": "Test/0",
        "prompt": 'def add(a, b):\n    """The sum of a and b."""\n',
        "canonical_solution": "    return a + b\n",
        "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n",
        "entry_point": "add",
    },
    {
        "task_id": "Test/1",
        "prompt": 'def double(x):\n    """Twice x."""\n',
        "canonical_solution": "    return 2 * x\n",
        "test": "def check(candidate):\n    assert candidate(4) == 8\n",
        "entry_point": "double",
    },
]


@pytest.fixture()
def task_data_files(tmp_path, gsm8k_dir) -> dict[str, Path]:
    """Local data of the tasks that read files (GSM8K, MATH-500, HumanEval)."""
    files = {"gsm8k": gsm8k_dir}
    for name, records in (("math500", MATH500_FIXTURE), ("humaneval", HUMANEVAL_FIXTURE)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
        files[name] = path
    return files
