"""The checkpoint shipped in ``dllm_gym/models/embedded``: what it is and how well it decodes.

The floors sit a few points under what this checkpoint measures on the first 100 test problems
(93% with one token per step, 92% at threshold 0.9 with 7.7 forward passes, 85% at 4 tokens
per step; the model card has the full 1000-problem table), so a regression in the decoding
core, the tokenizer or the task shows here while the test stays fast.
"""

from __future__ import annotations

import pytest
import torch

from dllm_gym.decoding import decode, threshold_rule, top_k_rule
from dllm_gym.models.loading import EMBEDDED_MODEL_DIR, OWN, load_model
from dllm_gym.models.tokenizer import EOT_TOKEN
from dllm_gym.tasks import make_task

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


def accuracy_and_nfe(lm, task, rule) -> tuple[float, float]:
    problems = task.problems("test")[:PROBLEMS]
    prompts = [task.format_prompt(p.question, lm.tokenizer) for p in problems]
    out = decode(lm, prompts, rule, gen_length=GEN_LENGTH, block_length=BLOCK_LENGTH)
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
