import pytest
import torch
from reference_decoders import fast_dllm_threshold, llada_low_confidence

from dllm_gym.decoding import (
    NOT_REVEALED,
    DecodingState,
    decode,
    llada_transfer_counts,
    most_confident,
    threshold_rule,
    top_k_rule,
)

PROMPTS = [[5, 30, 31, 9, 40], [5, 33, 7], [5, 41, 42, 43, 44, 45, 46, 12]]


def start(lm, prompts=PROMPTS, gen_length=12, block_length=4, **kwargs) -> DecodingState:
    return DecodingState.start(
        prompts,
        gen_length=gen_length,
        block_length=block_length,
        mask_token_id=lm.mask_token_id,
        pad_token_id=lm.pad_token_id,
        max_length=lm.max_length,
        **kwargs,
    )


def run_with_checks(lm, rule, gen_length, block_length):
    """Drive a state step by step, checking the core's invariants after every step."""
    state = start(lm, gen_length=gen_length, block_length=block_length)
    width = state.prompt_width
    initial = state.tokens.clone()
    state.forward(lm)
    forwards = torch.ones(len(PROMPTS), dtype=torch.long)
    while True:
        before_tokens, before_steps = state.tokens.clone(), state.unmask_step.clone()
        before_active = state.active.clone()
        revealed = state.reveal(rule(state))
        newly = (before_steps == NOT_REVEALED) & (state.unmask_step != NOT_REVEALED)
        # The prompt and padding never change.
        assert torch.equal(state.tokens[:, :width], initial[:, :width])
        # Revealed tokens never change; only active positions are revealed.
        was_revealed = before_steps != NOT_REVEALED
        assert torch.equal(state.generation[was_revealed], before_tokens[:, width:][was_revealed])
        assert not (newly & ~before_active).any()
        assert torch.equal(newly.sum(1), revealed)
        # A position is revealed with the last forward's token, at the current step number.
        assert torch.equal(state.generation[newly], state.predicted[newly])
        assert torch.equal(state.unmask_step[newly], state.nfe[:, None].expand_as(newly)[newly])
        pending = ~state.done
        if not pending.any():
            break
        state.forward(lm, rows=pending)
        forwards += pending.long()
    return state, forwards


@pytest.mark.parametrize(
    ("rule", "gen_length", "block_length"),
    [
        (top_k_rule(1), 12, 4),  # 1 step per block: k = 4
        (top_k_rule(4), 12, 4),  # one token per step
        (top_k_rule(3), 12, 12),  # full diffusion, schedule 4, 4, 4
        (top_k_rule(5), 16, 8),  # schedule 2, 2, 2, 1, 1
        (threshold_rule(0.2), 12, 6),
    ],
)
def test_decoding_invariants(tiny_lm, rule, gen_length, block_length):
    state, forwards = run_with_checks(tiny_lm, rule, gen_length, block_length)
    steps = state.unmask_step
    # Every position is revealed exactly once, and NFE counts the forward passes.
    assert (steps >= 1).all()
    assert torch.equal(state.nfe, forwards)
    assert torch.equal(steps.max(dim=1).values, state.nfe)
    # Blocks open in order: every step of a block comes before every step of the next one.
    blocks = steps.view(len(PROMPTS), -1, block_length)
    assert (blocks.max(dim=2).values[:, :-1] < blocks.min(dim=2).values[:, 1:]).all()
    assert state.done.all() and (state.current_block == gen_length // block_length).all()


def test_llada_schedule_counts():
    assert llada_transfer_counts(8, 5) == [2, 2, 2, 1, 1]
    assert llada_transfer_counts(32, 32) == [1] * 32
    assert llada_transfer_counts(32, 4) == [8, 8, 8, 8]
    assert sum(llada_transfer_counts(13, 6)) == 13


@pytest.mark.parametrize(("steps_per_block", "block_length"), [(5, 8), (8, 8), (2, 8), (3, 16)])
def test_top_k_reveals_the_schedule_and_takes_the_most_confident(
    tiny_lm, steps_per_block, block_length
):
    rule = top_k_rule(steps_per_block)
    state = start(tiny_lm, gen_length=16, block_length=block_length)
    schedule = llada_transfer_counts(block_length, steps_per_block)
    state.forward(tiny_lm)
    for step in range(16 // block_length * steps_per_block):
        confidence, active = state.confidence.clone(), state.active.clone()
        select = rule(state)
        assert (select.sum(1) == schedule[step % steps_per_block]).all()
        # Nothing left unselected is more confident than something selected.
        lowest_chosen = torch.where(select, confidence, torch.full_like(confidence, 2.0)).amin(1)
        highest_left = torch.where(
            active & ~select, confidence, torch.full_like(confidence, -1.0)
        ).amax(1)
        assert (lowest_chosen >= highest_left).all()
        state.reveal(select)
        if not state.done.all():
            state.forward(tiny_lm)
    assert state.done.all() and (state.nfe == 16 // block_length * steps_per_block).all()


def test_threshold_rule():
    state = DecodingState.start([[1, 2]], gen_length=4, block_length=4, mask_token_id=0)
    state.confidence = torch.tensor([[0.2, 0.95, 0.5, 0.91]])
    assert threshold_rule(0.9)(state).tolist() == [[False, True, False, True]]
    # Nothing above the threshold: the most confident position alone.
    assert threshold_rule(0.99)(state).tolist() == [[False, True, False, False]]
    # Ties are broken towards the leftmost position.
    state.confidence = torch.tensor([[0.5, 0.7, 0.7, 0.1]])
    assert most_confident(state, torch.tensor([1])).tolist() == [[False, True, False, False]]


@pytest.mark.parametrize(
    ("steps", "gen_length", "block_length"), [(12, 12, 4), (6, 12, 4), (4, 12, 12)]
)
def test_decode_matches_llada_reference(tiny_lm, steps, gen_length, block_length):
    for prompt in PROMPTS:
        expected, _ = llada_low_confidence(tiny_lm, prompt, steps, gen_length, block_length)
        steps_per_block = steps // (gen_length // block_length)
        out = decode(
            tiny_lm,
            [prompt],
            top_k_rule(steps_per_block),
            gen_length=gen_length,
            block_length=block_length,
        )
        assert torch.equal(out.generations[0], expected)
        assert out.nfe.item() == steps


@pytest.mark.parametrize(("threshold", "block_length"), [(0.3, 4), (0.4, 12), (0.5, 12)])
def test_decode_matches_fast_dllm_threshold_reference(tiny_lm, threshold, block_length):
    for prompt in PROMPTS:
        expected, order, nfe = fast_dllm_threshold(tiny_lm, prompt, threshold, 12, block_length)
        out = decode(
            tiny_lm, [prompt], threshold_rule(threshold), gen_length=12, block_length=block_length
        )
        assert torch.equal(out.generations[0], expected)
        assert torch.equal(out.unmask_step[0], order)
        assert out.nfe.item() == nfe


def test_batched_decode_equals_decoding_each_prompt_alone(tiny_lm):
    """Left padding with position ids that start at each prompt: neighbours do not matter."""
    batched = decode(tiny_lm, PROMPTS, threshold_rule(0.3), gen_length=12, block_length=4)
    for row, prompt in enumerate(PROMPTS):
        alone = decode(tiny_lm, [prompt], threshold_rule(0.3), gen_length=12, block_length=4)
        assert torch.equal(batched.generations[row], alone.generations[0])
        assert torch.equal(batched.unmask_step[row], alone.unmask_step[0])
        assert batched.nfe[row] == alone.nfe[0]


def test_sampling_is_seeded(tiny_lm):
    def sample(seed):
        generator = torch.Generator().manual_seed(seed)
        return decode(
            tiny_lm,
            PROMPTS,
            top_k_rule(2),
            gen_length=12,
            block_length=4,
            temperature=1.0,
            generator=generator,
        ).generations

    assert torch.equal(sample(0), sample(0))
    assert not torch.equal(sample(0), sample(1))


def test_optional_features_are_tracked(tiny_lm):
    state = start(tiny_lm, features=("margin", "entropy", "kl"))
    state.forward(tiny_lm)
    assert torch.equal(state.extra["kl"], torch.zeros_like(state.confidence))
    assert (state.extra["margin"] <= state.confidence).all() and (state.extra["entropy"] > 0).all()
    state.reveal(top_k_rule(4)(state))
    state.forward(tiny_lm, rows=torch.tensor([True, False, True]))
    assert (state.extra["kl"][[0, 2]] > 0).all() and (state.extra["kl"][1] == 0).all()
    assert state.nfe.tolist() == [2, 1, 2]


def test_bad_input_is_rejected(tiny_lm):
    with pytest.raises(ValueError, match="block_length=5 does not divide gen_length=12"):
        start(tiny_lm, block_length=5)
    with pytest.raises(ValueError, match="gen_length must be a positive integer"):
        start(tiny_lm, gen_length=0)
    with pytest.raises(ValueError, match=r"exceeds the model's limit of 160 tokens"):
        start(tiny_lm, prompts=[[5] * 150], gen_length=12)
    with pytest.raises(ValueError, match="every prompt needs at least one token"):
        start(tiny_lm, prompts=[[5], []])
    with pytest.raises(ValueError, match="temperature"):
        start(tiny_lm, temperature=-1.0)
    state = start(tiny_lm)
    with pytest.raises(ValueError, match=r"select: expected a bool tensor of shape \(3, 12\)"):
        state.reveal(torch.ones(3, 11, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"steps_per_block must be in \[1, block_length=4\]"):
        decode(tiny_lm, PROMPTS, top_k_rule(5), gen_length=12, block_length=4)


def test_restarted_rows_decode_as_a_fresh_state_and_leave_the_others_alone(tiny_lm):
    """Restarting a row on a longer prompt widens the buffer for every row; the restarted row
    then predicts as a fresh buffer would, and the other rows keep their tokens, steps and
    predictions (and their next forward is unchanged too)."""
    features = ("margin", "entropy", "kl")
    state = start(tiny_lm, prompts=PROMPTS[:2], features=features)
    state.forward(tiny_lm)
    state.reveal(threshold_rule(0.2)(state))
    state.forward(tiny_lm)
    kept = {name: getattr(state, name)[0].clone() for name in ("unmask_step", "predicted")}
    kept_generation = state.generation[0].clone()
    longer = PROMPTS[2]
    assert len(longer) > state.prompt_width

    state.restart(torch.tensor([False, True]), [longer], max_length=tiny_lm.max_length)
    assert state.prompt_width == len(longer)
    assert state.nfe.tolist() == [2, 0] and state.masked[1].all()
    assert torch.equal(state.generation[0], kept_generation)
    for name, value in kept.items():
        assert torch.equal(getattr(state, name)[0], value)

    state.forward(tiny_lm, rows=torch.tensor([False, True]))
    fresh = start(tiny_lm, prompts=[longer], features=features)
    fresh.forward(tiny_lm)
    assert torch.equal(state.predicted[1], fresh.predicted[0])
    torch.testing.assert_close(state.confidence[1], fresh.confidence[0])
    for name in features:  # the KL of a first forward is 0, as in a fresh state
        torch.testing.assert_close(state.extra[name][1], fresh.extra[name][0])

    # Row 0 carries on as if nothing had happened: same next forward as an untouched copy.
    twin = start(tiny_lm, prompts=PROMPTS[:2], features=features)
    twin.forward(tiny_lm)
    twin.reveal(threshold_rule(0.2)(twin))
    twin.forward(tiny_lm)
    for s in (state, twin):
        s.reveal(threshold_rule(0.2)(s) & torch.tensor([[True], [False]]))
        s.forward(tiny_lm, rows=torch.tensor([True, False]))
    assert torch.equal(state.generation[0], twin.generation[0])
    assert torch.equal(state.predicted[0], twin.predicted[0])
    torch.testing.assert_close(state.extra["kl"][0], twin.extra["kl"][0])


def test_restart_rejects_bad_rows_and_prompts(tiny_lm):
    state = start(tiny_lm)
    state.forward(tiny_lm)
    before = state.tokens.clone()
    with pytest.raises(ValueError, match=r"rows: expected a bool tensor of shape \(3,\)"):
        state.restart(torch.tensor([True, False]), [[5, 6]])
    with pytest.raises(ValueError, match=r"one prompt per restarted row \(2\), got 1"):
        state.restart(torch.tensor([True, False, True]), [[5, 6]])
    with pytest.raises(ValueError, match="every prompt needs at least one token"):
        state.restart(torch.tensor([True, False, False]), [[]])
    with pytest.raises(ValueError, match="exceeds the model's limit"):
        state.restart(torch.tensor([True, False, False]), [[5] * 1000], max_length=64)
    assert torch.equal(state.tokens, before) and state.nfe.tolist() == [1, 1, 1]
