"""The embedded model's training objective (scripts/train_embedded_model.py): LLaDA's SFT
masking, and the semi-autoregressive rows it can mix in."""

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_embedded_model.py"
MASK = 3
WIDTH = 5  # prompt tokens before the response
LENGTH = 48  # response tokens


@pytest.fixture(scope="module")
def train():
    spec = importlib.util.spec_from_file_location("train_embedded_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


class RecordingModel(torch.nn.Module):
    """Logits from an embedding; keeps the noisy input it was given."""

    device = torch.device("cpu")

    def __init__(self, vocab: int = 16) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, vocab)

    def forward(self, ids, attention_mask=None):
        self.seen = ids.clone()
        return type("Output", (), {"logits": self.embedding(ids)})()


def batch(rows: int = 64) -> dict:
    ids = torch.randint(4, 16, (rows, WIDTH + LENGTH), generator=torch.Generator().manual_seed(1))
    return {
        "ids": ids,
        "width": WIDTH,
        "length": LENGTH,
        "attention": torch.ones_like(ids, dtype=torch.bool),
        "kind": torch.zeros(rows, LENGTH, dtype=torch.long),
    }


def masks(train, fraction: float, block: int = 8, seed: int = 0) -> torch.Tensor:
    model = RecordingModel()
    generator = torch.Generator().manual_seed(seed)
    train.masked_diffusion_loss(model, batch(), generator, 1e-3, MASK, fraction, block)
    assert (model.seen[:, :WIDTH] != MASK).all(), "the prompt is never masked"
    return model.seen[:, WIDTH:] == MASK


def test_without_semi_autoregressive_rows_the_masks_are_llada_sft(train):
    masked = masks(train, 0.0)
    # Each row is masked i.i.d. at its own rate t: rows differ in rate, and a masked
    # position is followed by a visible one somewhere in most rows.
    rates = masked.float().mean(1)
    assert rates.min() < 0.2 and rates.max() > 0.8
    gaps = (masked[:, :-1] & ~masked[:, 1:]).any(1).float().mean()
    assert gaps > 0.7


def test_semi_autoregressive_rows_are_a_visible_prefix_a_partly_masked_block_and_a_masked_tail(
    train,
):
    block = 8
    masked = masks(train, 1.0, block)
    for row in masked:
        cut = int(row.nonzero()[0]) if row.any() else LENGTH
        assert not row[:cut].any(), "nothing before the cut is masked"
        assert row[cut + block :].all(), "everything after the partly masked block is masked"
    # The block itself is partly masked in some rows (its rate is the row's t).
    partly = [
        not row[int(row.nonzero()[0]) : int(row.nonzero()[0]) + block].all()
        for row in masked
        if row.any()
    ]
    assert any(partly)


def test_the_fraction_of_semi_autoregressive_rows_follows_the_setting(train):
    def is_semi(row: torch.Tensor) -> bool:
        if not row.any():
            return True
        first = int(row.nonzero()[0])
        return bool(row[first + 8 :].all())

    rows = torch.cat([masks(train, 0.5, seed=seed) for seed in range(8)])
    semi = sum(is_semi(row) for row in rows) / len(rows)
    # Half the rows by construction, and few LLaDA rows look semi-autoregressive by chance.
    assert 0.4 < semi < 0.7


def save_tiny_warm_start(folder: Path, tokenizer, layers: int):
    """A tiny seeded model over ``tokenizer``'s words with ``layers`` blocks, saved with the
    tokenizer in ``folder`` as a warm start for ``--init-from``; returns the model."""
    from dllm_gym.models.architecture import (
        DiffusionTransformerConfig,
        DiffusionTransformerForMaskedLM,
    )

    torch.manual_seed(0)
    model = DiffusionTransformerForMaskedLM(
        DiffusionTransformerConfig(
            vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
            num_hidden_layers=layers, num_attention_heads=2, max_position_embeddings=64,
        )
    )  # fmt: skip
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def test_a_warm_start_keeps_its_tokens_and_grows_rows_for_the_words_a_task_adds(train, tmp_path):
    from dllm_gym.models.tokenizer import build_word_tokenizer
    from dllm_gym.tasks import arith, arith_v1

    v0 = build_word_tokenizer(arith.vocabulary())
    start = save_tiny_warm_start(tmp_path, v0, layers=1)
    v1 = build_word_tokenizer(arith_v1.vocabulary())
    config = train.TrainConfig(task="arith-v1", init_from=str(tmp_path), max_length=272)
    model = train.build_model(config, v1)
    assert model.config.vocab_size == len(v1) == len(v0) + len(arith_v1.QUESTION_WORDS)
    assert model.config.max_position_embeddings == 272
    for old, new in (
        (start.get_input_embeddings(), model.get_input_embeddings()),
        (start.get_output_embeddings(), model.get_output_embeddings()),
    ):
        assert new.weight.shape[0] == len(v1)
        assert torch.equal(new.weight[: len(v0)], old.weight)
    # A vocabulary that renumbers the warm start's tokens is refused, naming the argument.
    shuffled = build_word_tokenizer(list(reversed(arith_v1.vocabulary())))
    with pytest.raises(SystemExit, match=r"--init-from .* the first 68 tokens of the task's"):
        train.build_model(config, shuffled)


def test_a_warm_start_can_keep_only_its_first_blocks(train, tmp_path):
    from dllm_gym.models.architecture import DiffusionTransformerForMaskedLM
    from dllm_gym.models.tokenizer import build_word_tokenizer
    from dllm_gym.tasks import arith_v1

    tokenizer = build_word_tokenizer(arith_v1.vocabulary())
    start = save_tiny_warm_start(tmp_path / "start", tokenizer, layers=3)
    config = train.TrainConfig(task="arith-v1", init_from=str(tmp_path / "start"), init_layers=2)
    model = train.build_model(config, tokenizer)
    assert len(model.layers) == model.config.num_hidden_layers == 2
    kept, original = model.state_dict(), start.state_dict()
    assert not any(name.startswith("layers.2.") for name in kept)
    assert all(torch.equal(value, original[name]) for name, value in kept.items())
    # The shallower model saves, reloads with two blocks and computes what it computed.
    model.save_pretrained(tmp_path / "shallow")
    reloaded = DiffusionTransformerForMaskedLM.from_pretrained(tmp_path / "shallow").eval()
    tokens = torch.randint(4, len(tokenizer), (2, 10))
    with torch.no_grad():
        assert torch.allclose(reloaded(tokens).logits, model.eval()(tokens).logits)
    assert len(reloaded.layers) == 2
    # More blocks than the warm start has is refused, naming the argument.
    with pytest.raises(SystemExit, match=r"--init-layers 4: expected 1 to 3"):
        train.build_model(dataclasses.replace(config, init_layers=4), tokenizer)


def test_trailing_masks_follow_the_padded_responses_attended_but_outside_the_loss(train):
    from dllm_gym.models.tokenizer import build_word_tokenizer
    from dllm_gym.tasks import arith_v1, make_task

    tokenizer = build_word_tokenizer(arith_v1.vocabulary())
    task = make_task("arith-v1")
    config = train.TrainConfig(task="arith-v1", gen_lengths=(64,), batch_size=8)
    plain = train.Batches(task, tokenizer, config).sample(np.random.default_rng(3))
    with_tail = train.Batches(
        task, tokenizer, dataclasses.replace(config, trailing_masks=40)
    ).sample(np.random.default_rng(3))
    end = plain["width"] + plain["length"]
    tail = with_tail["ids"].shape[1] - end
    assert 0 < tail <= 40  # drawn per batch from 0..40 (this seed draws a tail)
    # The same problems and padding, then only mask tokens, which the rows attend to.
    assert torch.equal(with_tail["ids"][:, :end], plain["ids"])
    assert (with_tail["ids"][:, end:] == tokenizer.mask_token_id).all()
    assert with_tail["attention"][:, end:].all()
    assert torch.equal(with_tail["kind"], plain["kind"])
    # A model whose logits ignore context scores both batches alike: the tail is not in the
    # loss, and the response's noise does not depend on it.
    model = RecordingModel(vocab=len(tokenizer))
    mask = tokenizer.mask_token_id
    losses = []
    for batch in (plain, with_tail):
        generator = torch.Generator().manual_seed(0)
        loss, _ = train.masked_diffusion_loss(model, batch, generator, 1e-3, mask, 0.5, 16)
        losses.append(loss)
        assert (model.seen[:, end:] == mask).all()
    assert torch.allclose(losses[0], losses[1])


def test_a_run_resumes_when_only_bookkeeping_or_a_later_setting_at_its_default_differs(train):
    config = train.TrainConfig(task="arith-v1", trailing_masks=0)
    saved = dataclasses.asdict(config) | {"threads": 1, "out": "elsewhere"}
    assert train.changed_settings(saved, config) == []
    del saved["trailing_masks"]  # a state written before the setting existed
    assert train.changed_settings(saved, config) == []
    assert train.changed_settings(saved, dataclasses.replace(config, trailing_masks=128)) == [
        "trailing_masks"
    ]
    assert train.changed_settings(
        saved, dataclasses.replace(config, learning_rate=5e-4, seed=1)
    ) == ["learning_rate", "seed"]
