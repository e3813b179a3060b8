"""Straightforward transcriptions of the reference decoding loops, written independently of
``dllm_gym.decoding``: one forward pass per step, the whole sequence recomputed, no batching.
Tests compare the decoding core and the environments against them token for token."""

from __future__ import annotations

import torch


def _masked_predictions(lm, x, end):
    """Argmax tokens and their probability (float64) at every position, as LLaDA computes
    them, with the mask token never predicted and positions from ``end`` on excluded."""
    logits = lm.model(x).logits
    logits[..., lm.mask_token_id] = torch.finfo(logits.dtype).min  # the core never predicts a mask
    x0 = logits.argmax(-1)
    p = torch.softmax(logits.double(), dim=-1)
    x0_p = torch.gather(p, -1, x0.unsqueeze(-1)).squeeze(-1)
    x0_p[:, end:] = -float("inf")
    mask_index = x == lm.mask_token_id
    x0 = torch.where(mask_index, x0, x)
    confidence = torch.where(mask_index, x0_p, torch.tensor(-float("inf"), dtype=x0_p.dtype))
    return x0, confidence


def llada_low_confidence(lm, prompt, steps, gen_length, block_length):
    """LLaDA's ``generate()`` (low-confidence remasking, temperature 0, no classifier-free
    guidance). Returns the generation and the step (1-based) at which each position was
    revealed."""
    mask_id = lm.mask_token_id
    x = torch.full((1, len(prompt) + gen_length), mask_id, dtype=torch.long)
    x[0, : len(prompt)] = torch.tensor(prompt)
    order = torch.full((gen_length,), -1, dtype=torch.long)
    num_blocks = gen_length // block_length
    steps_per_block = steps // num_blocks
    nfe = 0
    for block in range(num_blocks):
        start, end = len(prompt) + block * block_length, len(prompt) + (block + 1) * block_length
        mask_count = int((x[:, start:end] == mask_id).sum())
        base, remainder = divmod(mask_count, steps_per_block)
        for i in range(steps_per_block):
            x0, confidence = _masked_predictions(lm, x, end)
            nfe += 1
            k = base + (1 if i < remainder else 0)
            _, select = torch.topk(confidence[0], k=k)
            x[0, select] = x0[0, select]
            order[select - len(prompt)] = nfe
    return x[0, len(prompt) :], order


def fast_dllm_threshold(lm, prompt, threshold, gen_length, block_length):
    """Fast-dLLM's parallel decoding (``get_transfer_index`` with a threshold): per step, rank
    the masked positions of the current block by confidence and reveal the first always and
    every other one whose confidence is at least ``threshold``. Returns the generation, the
    decoding order and the NFE."""
    mask_id = lm.mask_token_id
    x = torch.full((1, len(prompt) + gen_length), mask_id, dtype=torch.long)
    x[0, : len(prompt)] = torch.tensor(prompt)
    order = torch.full((gen_length,), -1, dtype=torch.long)
    nfe = 0
    for block in range(gen_length // block_length):
        start, end = len(prompt) + block * block_length, len(prompt) + (block + 1) * block_length
        while (x[0, start:end] == mask_id).any():
            x0, confidence = _masked_predictions(lm, x, end)
            nfe += 1
            masked_count = int((x[0, start:end] == mask_id).sum())
            _, ranked = torch.topk(confidence[0], k=masked_count)
            keep = [ranked[0]] + [j for j in ranked[1:] if confidence[0, j] >= threshold]
            select = torch.stack(keep)
            x[0, select] = x0[0, select]
            order[select - len(prompt)] = nfe
    return x[0, len(prompt) :], order, nfe
