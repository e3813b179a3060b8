"""The architecture's key/value cache: a full forward fills it, a window forward recomputes
some columns against it. Checked against the uncached forward on the embedded layout and on
a Dream-like layout (grouped-query attention, q/k/v biases), with left padding."""

import pytest
import torch

from dllm_gym.models.architecture import (
    DiffusionTransformerConfig,
    DiffusionTransformerForMaskedLM,
    KVCache,
)

LAYOUTS = {
    "multi-head": {"num_attention_heads": 4},
    "grouped-query with biases": {
        "num_attention_heads": 4, "num_key_value_heads": 2, "attention_bias": True
    },
}  # fmt: skip
ROWS, COLUMNS, PAD = 3, 20, (0, 4, 7)  # row r has PAD[r] columns of left padding


def build(layout: dict) -> DiffusionTransformerForMaskedLM:
    torch.manual_seed(0)
    config = DiffusionTransformerConfig(
        vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        max_position_embeddings=64, initializer_range=0.2, **layout,
    )  # fmt: skip
    return DiffusionTransformerForMaskedLM(config).eval()


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(1, 50, (ROWS, COLUMNS), generator=generator)
    attention = torch.ones(ROWS, COLUMNS, dtype=torch.bool)
    for row, pad in enumerate(PAD):
        attention[row, :pad] = False
        tokens[row, :pad] = 0
    positions = (attention.long().cumsum(-1) - 1).clamp(min=0)
    return tokens, attention, positions


def fill(model, tokens, attention, positions) -> tuple[KVCache, torch.Tensor]:
    cache = KVCache(model.config, ROWS, COLUMNS)
    logits = model(tokens, attention_mask=attention, position_ids=positions, kv_cache=cache)
    return cache, logits.logits


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
@torch.no_grad()
def test_filling_the_cache_changes_nothing_and_stores_every_layer(layout):
    model = build(layout)
    tokens, attention, positions = batch()
    plain = model(tokens, attention_mask=attention, position_ids=positions).logits
    cache, logits = fill(model, tokens, attention, positions)
    torch.testing.assert_close(logits, plain, rtol=0, atol=0)
    assert cache.filled.all() and cache.slab.abs().sum(dim=(1, 2, 3, 5)).gt(0).all()
    assert torch.equal(cache.attention, attention)


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
@torch.no_grad()
def test_a_window_on_an_unchanged_sequence_gives_the_uncached_logits(layout):
    """Each row recomputes its own columns (different starts, a ragged window padded by
    repeating the row's last column): the logits are those of the full forward there."""
    model = build(layout)
    tokens, attention, positions = batch()
    plain = model(tokens, attention_mask=attention, position_ids=positions).logits
    cache, _ = fill(model, tokens, attention, positions)
    starts = torch.tensor([12, 8, 15])  # prefix mode: from the row's block to the end
    width = COLUMNS - int(starts.min())
    columns = (starts[:, None] + torch.arange(width)).clamp(max=COLUMNS - 1)
    rows = torch.arange(ROWS)[:, None]
    window = model(
        tokens[rows, columns], position_ids=positions[rows, columns], kv_cache=cache,
        cache_positions=columns,
    ).logits  # fmt: skip
    torch.testing.assert_close(window, plain[rows, columns], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
@torch.no_grad()
def test_a_window_writes_its_keys_where_a_fresh_fill_puts_them(layout):
    """Revealing tokens inside the window: the first layer's cached keys and values (which
    depend on a column's own token only) equal a fresh fill's everywhere, and the window's
    logits are an approximation that a fresh forward would change (the deeper layers of
    the other columns still hold the old tokens' influence)."""
    model = build(layout)
    tokens, attention, positions = batch()
    cache, _ = fill(model, tokens, attention, positions)
    changed = tokens.clone()
    columns = torch.arange(10, 14).expand(ROWS, -1)
    rows = torch.arange(ROWS)[:, None]
    changed[rows, columns] = (changed[rows, columns] + 7) % 49 + 1
    window = model(
        changed[rows, columns], position_ids=positions[rows, columns], kv_cache=cache,
        cache_positions=columns,
    ).logits  # fmt: skip
    fresh, fresh_logits = fill(model, changed, attention, positions)
    torch.testing.assert_close(cache.slab[0], fresh.slab[0], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(cache.slab[1:], fresh.slab[1:], atol=1e-4)
    assert not torch.allclose(window, fresh_logits[rows, columns], atol=1e-4)


def test_bad_cache_use_is_refused_by_name():
    model = build(LAYOUTS["multi-head"])
    tokens, attention, positions = batch()
    cache = KVCache(model.config, ROWS, COLUMNS)
    columns = torch.arange(4).expand(ROWS, -1)
    with pytest.raises(ValueError, match="needs cache rows filled"):
        model(tokens[:, :4], position_ids=positions[:, :4], kv_cache=cache, cache_positions=columns)
    with pytest.raises(ValueError, match=r"kv_cache: holds 20 columns, the input has 10"):
        model(tokens[:, :10], attention_mask=attention[:, :10], kv_cache=cache)
    with pytest.raises(ValueError, match=r"kv_cache: holds 3 rows, the input has 2; pass"):
        model(tokens[:2], attention_mask=attention[:2], kv_cache=cache)
    with pytest.raises(ValueError, match=r"cache_rows: expected 2 row indices in 0\.\.2"):
        model(tokens[:2], kv_cache=cache, cache_rows=torch.tensor([0, 3]))
    model(tokens, attention_mask=attention, position_ids=positions, kv_cache=cache)
    with pytest.raises(ValueError, match="position_ids: a window forward needs"):
        model(tokens[:, :4], kv_cache=cache, cache_positions=columns)
    with pytest.raises(ValueError, match=r"cache_positions: expected shape \(3, 4\)"):
        model(
            tokens[:, :4], position_ids=positions[:, :4], kv_cache=cache,
            cache_positions=columns[:, :2],
        )  # fmt: skip


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
@torch.no_grad()
def test_rows_of_the_cache_fill_and_update_on_their_own(layout):
    """As the vector env uses it: row 2 is filled alone after rows 0 and 1, then rows 2 and 0
    run windows (in that order): every result is that row's uncached forward, and a row
    outside the call keeps its cache untouched."""
    model = build(layout)
    tokens, attention, positions = batch()
    plain = model(tokens, attention_mask=attention, position_ids=positions).logits
    cache = KVCache(model.config, ROWS, COLUMNS)
    first, second = torch.tensor([0, 1]), torch.tensor([2])
    for rows in (first, second):
        logits = model(
            tokens[rows], attention_mask=attention[rows], position_ids=positions[rows],
            kv_cache=cache, cache_rows=rows,
        ).logits  # fmt: skip
        torch.testing.assert_close(logits, plain[rows], rtol=1e-5, atol=1e-5)
    assert cache.filled.all() and torch.equal(cache.attention, attention)
    row_1 = cache.slab[:, :, 1].clone()
    rows = torch.tensor([2, 0])
    columns = torch.tensor([[14, 15, 16], [3, 4, 5]])
    window = model(
        tokens[rows[:, None], columns], position_ids=positions[rows[:, None], columns],
        kv_cache=cache, cache_positions=columns, cache_rows=rows,
    ).logits  # fmt: skip
    torch.testing.assert_close(window, plain[rows[:, None], columns], rtol=1e-5, atol=1e-5)
    assert torch.equal(cache.slab[:, :, 1], row_1)


# ------------------------------------------------------------------ the decoding core's cache
def reference_cached_decode(lm, prompt: list[int], gen_length: int, block_length: int,
                            steps: int, mode: str) -> list[int]:  # fmt: skip
    """Fast-dLLM's block loop for one prompt, written from the paper's description: at each
    block one forward over the whole sequence fills the cache; each further step recomputes
    only the window ("dual": the block; "prefix": the block and all after it) against it,
    and LLaDA's top-k schedule reveals the most confident masked positions of the block."""
    from dllm_gym.decoding import llada_transfer_counts

    mask, width = lm.mask_token_id, len(prompt)
    tokens = torch.tensor([prompt + [mask] * gen_length])
    positions = torch.arange(tokens.shape[1])[None]
    cache = lm.new_cache(1, tokens.shape[1])
    for block in range(gen_length // block_length):
        low, high = width + block * block_length, width + (block + 1) * block_length
        for step, count in enumerate(llada_transfer_counts(block_length, steps)):
            if step == 0:
                logits = lm.model(tokens, position_ids=positions, kv_cache=cache).logits[0]
                logits = logits[low:high]
            else:
                end = high if mode == "dual" else tokens.shape[1]
                columns = torch.arange(low, end)[None]
                logits = lm.model(
                    tokens[:, low:end], position_ids=positions[:, low:end], kv_cache=cache,
                    cache_positions=columns,
                ).logits[0, : high - low]  # fmt: skip
            logits[:, mask] = float("-inf")
            confidence, predicted = torch.softmax(logits.float(), -1).max(-1)
            masked = tokens[0, low:high] == mask
            confidence = torch.where(masked, confidence, torch.full_like(confidence, -1.0))
            chosen = torch.sort(confidence, descending=True, stable=True).indices[:count]
            tokens[0, low + chosen] = predicted[chosen]
    return tokens[0, width:].tolist()


@pytest.mark.parametrize("mode", ["prefix", "dual"])
@torch.no_grad()
def test_the_core_decodes_as_the_reference_cached_loop(mode):
    """Six prompts of different lengths decoded together (rows in different blocks at
    times, left padding) give the tokens of the one-prompt reference loop; each row ran one
    full forward per block and windows otherwise."""
    from dllm_gym.decoding import decode, top_k_rule
    from dllm_gym.models.loading import load_model
    from dllm_gym.tasks import make_task

    lm = load_model("embedded", device="cpu")
    task = make_task("arith")
    prompts = [task.format_prompt(p.question, lm.tokenizer) for p in task.problems("test")[:6]]
    assert len({len(p) for p in prompts}) > 1
    out = decode(lm, prompts, top_k_rule(4), gen_length=32, block_length=8, cache=mode)
    for row, prompt in enumerate(prompts):
        expected = reference_cached_decode(lm, prompt, 32, 8, 4, mode)
        assert out.generations[row].tolist() == expected, row
    assert out.nfe.tolist() == [16] * 6  # 4 blocks of 4 steps: the cache changes no count


@torch.no_grad()
def test_full_and_window_forwards_are_counted_and_refreshed():
    from dllm_gym.decoding import DecodingState, top_k_rule
    from dllm_gym.models.loading import load_model
    from dllm_gym.tasks import make_task

    lm = load_model("embedded", device="cpu")
    task = make_task("arith")
    prompts = [task.format_prompt(p.question, lm.tokenizer) for p in task.problems("test")[:3]]
    counts = {}
    for refresh in (0, 2):
        state = DecodingState.for_model(
            lm, prompts, gen_length=32, block_length=32, cache="dual", cache_refresh=refresh
        )
        rule = top_k_rule(8)
        state.forward(lm)
        for _ in range(7):
            state.reveal(rule(state))
            state.forward(lm)
        counts[refresh] = (state.full_forwards.tolist(), state.window_forwards.tolist())
        assert state.nfe.tolist() == [8] * 3
    assert counts[0] == ([1] * 3, [7] * 3)  # one block: filled once
    assert counts[2] == ([3] * 3, [5] * 3)  # F W W F W W F W: a fill after every 2 windows
    with pytest.raises(ValueError, match=r"cache must be one of \['none', 'prefix', 'dual'\]"):
        DecodingState.for_model(lm, prompts, gen_length=32, block_length=8, cache="full")
    with pytest.raises(ValueError, match="cache_refresh must be an integer >= 0"):
        DecodingState.for_model(lm, prompts, gen_length=32, block_length=8, cache_refresh=-1)
