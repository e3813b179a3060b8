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
