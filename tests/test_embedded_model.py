"""The checkpoint shipped in ``dllm_gym/models/embedded``: what it is and how well it decodes.

The floors sit a few points under what this checkpoint measures on the first 100 test problems
(93% with one token per step, 92% at threshold 0.9 with 7.7 forward passes, 85% at 4 tokens
per step; the model card has the full 1000-problem table), so a regression in the decoding
core, the tokenizer or the task shows here while the test stays fast.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from dllm_gym.decoding import decode, threshold_rule, top_k_rule
from dllm_gym.models.loading import EMBEDDED_MODEL_DIR, EMBEDDED_MODELS, OWN, load_model
from dllm_gym.models.tokenizer import EOT_TOKEN
from dllm_gym.tasks import make_task
from dllm_gym.tasks.arith_v1 import QUESTION_WORDS

GEN_LENGTH, BLOCK_LENGTH = 48, 16  # DLLMUnmask-Arith-v0
PROBLEMS = 100


@pytest.fixture(scope="module")
def embedded():
    return load_model("embedded", device="cpu")


@pytest.fixture(scope="module")
def arith():
    return make_task("arith")


@pytest.fixture(scope="module")
def one_per_step(embedded, arith) -> tuple[float, float]:
    """Accuracy and mean NFE with one token revealed per step (LLaDA's top-k, k = 1)."""
    return accuracy_and_nfe(embedded, arith, top_k_rule(BLOCK_LENGTH))


def accuracy_and_nfe(
    lm, task, rule, gen_length: int = GEN_LENGTH, block_length: int = BLOCK_LENGTH
) -> tuple[float, float]:
    problems = task.problems("test")[:PROBLEMS]
    prompts = [task.format_prompt(p.question, lm.tokenizer) for p in problems]
    out = decode(lm, prompts, rule, gen_length=gen_length, block_length=block_length)
    correct = sum(
        task.is_correct(lm.decode_generation(g), p.reference)
        for g, p in zip(out.generations, problems, strict=True)
    )
    return correct / len(problems), float(out.nfe.float().mean())


def test_checkpoint_is_small_and_complete():
    files = {p.name: p.stat().st_size for p in EMBEDDED_MODEL_DIR.iterdir()}
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md"):
        assert name in files, f"{name} missing from the embedded checkpoint"
    assert sum(files.values()) < 20 * 2**20


def test_embedded_model_loads_as_the_projects_architecture(embedded):
    assert embedded.family is OWN
    assert embedded.dtype == torch.float32 and embedded.device.type == "cpu"
    assert not embedded.shifted_logits
    tokenizer = embedded.tokenizer
    assert embedded.mask_token_id == tokenizer.mask_token_id
    assert embedded.eot_token_id == tokenizer.convert_tokens_to_ids(EOT_TOKEN)
    assert embedded.eot_token_id in embedded.stop_token_ids
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Box 1 has 3 pens."}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert "Box 1 has 3 pens ." in prompt or "Box 1 has 3 pens." in prompt
    # Every word the Arith task writes is in the vocabulary: nothing decodes to unknown.
    problem = make_task("arith").problems("test")[0]
    ids = tokenizer(problem.question + " " + problem.solution)["input_ids"]
    assert tokenizer.unk_token_id not in ids


@pytest.mark.expensive
def test_one_token_per_step_solves_the_test_problems(one_per_step):
    accuracy, nfe = one_per_step
    assert nfe == GEN_LENGTH
    assert accuracy >= 0.90


@pytest.mark.expensive
def test_confidence_threshold_keeps_accuracy_with_fewer_forward_passes(
    embedded, arith, one_per_step
):
    top1, _ = one_per_step
    accuracy, nfe = accuracy_and_nfe(embedded, arith, threshold_rule(0.9))
    assert nfe <= GEN_LENGTH / 2
    assert accuracy >= top1 - 0.05


@pytest.mark.expensive
def test_revealing_many_tokens_per_step_costs_accuracy(embedded, arith, one_per_step):
    """The trade-off the environments exist for: 4 tokens per step loses accuracy."""
    top1, _ = one_per_step
    accuracy, nfe = accuracy_and_nfe(embedded, arith, top_k_rule(BLOCK_LENGTH // 4))
    assert nfe == GEN_LENGTH / 4
    assert accuracy <= top1 - 0.05


# The v1 checkpoint (dllm_gym/models/embedded_v1), the model of the Arith-v1 ids.
V1_GEN_LENGTH, V1_BLOCK_LENGTH, V1_FULL_LENGTH = 64, 16, 192
EOS_PRIOR_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "eos_prior.py"
# On the first 100 test problems the checkpoint measures 97% with one token per step (top-1
# confidence and left to right alike), 75% with four per step, and 98% with threshold 0.9
# (21% in one block of L = 192); at the first forward pass, end-of-text first passes 0.5 at
# the true length in 16% of them, with a mean probability there of 0.60. A model that reads
# the length off the prompt measures about 94% and 0.97 (the six-link draft with one form of
# step), far above these ceilings. The floors are issue 17's targets (a) and (b) and the
# 20-point loss of its target (c).
V1_ONE_PER_STEP_FLOOR = 0.95
V1_FOUR_PER_STEP_LOSS = 0.15
V1_FULL_DIFFUSION_LOSS = 0.20
V1_FIRST_PASS_AT_LENGTH_CEILING = 0.5
V1_P_EOS_AT_LENGTH_CEILING = 0.75


@pytest.fixture(scope="module")
def embedded_v1():
    return load_model("embedded-v1", device="cpu")


@pytest.fixture(scope="module")
def arith_v1():
    return make_task("arith-v1")


def test_v1_checkpoint_extends_v0s_vocabulary_and_reaches_the_full_diffusion_length(
    embedded, embedded_v1, arith_v1
):
    files = {p.name: p.stat().st_size for p in EMBEDDED_MODELS["embedded-v1"].iterdir()}
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md"):
        assert name in files, f"{name} missing from the embedded-v1 checkpoint"
    assert sum(files.values()) < 20 * 2**20
    assert embedded_v1.family is OWN
    v0, v1 = embedded.tokenizer.get_vocab(), embedded_v1.tokenizer.get_vocab()
    assert all(v1[word] == i for word, i in v0.items())
    assert sorted(set(v1) - set(v0), key=v1.get) == list(QUESTION_WORDS)
    # Every test prompt fits with the full-diffusion id's 192 generated tokens.
    longest = max(
        len(arith_v1.format_prompt(p.question, embedded_v1.tokenizer))
        for p in arith_v1.problems("test")
    )
    assert longest + V1_FULL_LENGTH <= embedded_v1.max_length
    problem = arith_v1.problems("test")[0]
    ids = embedded_v1.tokenizer(problem.question + " " + problem.solution)["input_ids"]
    assert embedded_v1.tokenizer.unk_token_id not in ids


@pytest.fixture(scope="module")
def v1_one_per_step(embedded_v1, arith_v1) -> tuple[float, float]:
    """Accuracy and mean NFE of the v1 model at one token per step (top-k, k = 1)."""
    return accuracy_and_nfe(
        embedded_v1, arith_v1, top_k_rule(V1_BLOCK_LENGTH), V1_GEN_LENGTH, V1_BLOCK_LENGTH
    )


@pytest.mark.expensive
def test_v1_one_token_per_step_solves_the_test_problems(v1_one_per_step):
    accuracy, nfe = v1_one_per_step
    assert nfe == V1_GEN_LENGTH
    assert accuracy >= V1_ONE_PER_STEP_FLOOR


@pytest.mark.expensive
def test_v1_costs_parallel_reveals_and_collapses_in_full_diffusion(
    embedded_v1, arith_v1, v1_one_per_step
):
    """The testbed's point: four tokens per step lose at least 15 points in the semi-AR
    setting, and threshold 0.9 in one block of 192 loses at least 20 against blocks of 16."""
    top1, _ = v1_one_per_step
    four, nfe = accuracy_and_nfe(
        embedded_v1, arith_v1, top_k_rule(V1_BLOCK_LENGTH // 4), V1_GEN_LENGTH, V1_BLOCK_LENGTH
    )
    assert nfe == V1_GEN_LENGTH / 4
    assert four <= top1 - V1_FOUR_PER_STEP_LOSS
    semi, _ = accuracy_and_nfe(
        embedded_v1, arith_v1, threshold_rule(0.9), V1_GEN_LENGTH, V1_BLOCK_LENGTH
    )
    full, _ = accuracy_and_nfe(
        embedded_v1, arith_v1, threshold_rule(0.9), V1_FULL_LENGTH, V1_FULL_LENGTH
    )
    assert full <= semi - V1_FULL_DIFFUSION_LOSS


def test_v1_first_pass_does_not_know_where_the_answer_ends(embedded_v1, arith_v1):
    """The issue's check: with every position masked, end-of-text is not confidently placed
    at the true answer length (the steps' forms are drawn at random, so it cannot be)."""
    spec = importlib.util.spec_from_file_location("eos_prior", EOS_PRIOR_SCRIPT)
    eos_prior = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(eos_prior)
    problems = arith_v1.problems("test")[:PROBLEMS]
    p_eos, lengths = eos_prior.first_pass_eos(embedded_v1, arith_v1, problems, V1_GEN_LENGTH)
    rows = np.arange(len(lengths))
    confident = p_eos > 0.5
    first = np.where(confident.any(1), confident.argmax(1), V1_GEN_LENGTH)
    assert np.mean(first == lengths) <= V1_FIRST_PASS_AT_LENGTH_CEILING
    assert p_eos[rows, lengths].mean() <= V1_P_EOS_AT_LENGTH_CEILING
    # What it does know: the answer is not over before its first step is written.
    assert p_eos[rows, lengths.min() - 1].max() < 0.5
