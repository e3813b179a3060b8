"""Pictures of a decoding state: the buffer as text, and the decoding order as an image."""

from __future__ import annotations

import numpy as np

from dllm_gym.decoding import NOT_REVEALED, DecodingState

MASK_SYMBOL = "░"
CELL = 6  # pixels per position and per step in the decoding-order image

_BACKGROUND = np.array([255, 255, 255], dtype=np.uint8)
_OPEN_BLOCK = np.array([255, 243, 196], dtype=np.uint8)
_EARLIER = np.array([200, 210, 225], dtype=np.uint8)
_REVEALED = np.array([31, 78, 161], dtype=np.uint8)


def ansi(state: DecodingState, row: int, tokenizer, question: str) -> str:
    """The prompt, then the generation with masks as ``░`` and the open block in brackets."""
    tokens = tokenizer.convert_ids_to_tokens(state.generation[row].tolist())
    masked = state.masked[row].tolist()
    block = int(state.current_block[row])
    words = []
    for position, (token, is_masked) in enumerate(zip(tokens, masked, strict=True)):
        word = MASK_SYMBOL if is_masked else token
        if position % state.block_length == 0 and position // state.block_length == block:
            word = "[ " + word
        if (position + 1) % state.block_length == 0 and position // state.block_length == block:
            word = word + " ]"
        words.append(word)
    left = int(state.masked[row].sum())
    header = (
        f"NFE {int(state.nfe[row])} | block {min(block + 1, state.num_blocks)}/{state.num_blocks} "
        f"| {left} of {state.gen_length} masked"
    )
    return f"Prompt: {question}\n{header}\n{' '.join(words)}\n"


def decoding_order_image(state: DecodingState, row: int, max_steps: int) -> np.ndarray:
    """(steps x positions) RGB image: the cell of position p at step s is dark when p was
    revealed at step s, light when it was revealed before; the open block is tinted."""
    steps = state.unmask_step[row].cpu().numpy()
    length = steps.shape[0]
    grid = np.arange(1, max_steps + 1)[:, None]  # step numbers, one row each
    image = np.broadcast_to(_BACKGROUND, (max_steps, length, 3)).copy()
    block = int(state.current_block[row])
    if block < state.num_blocks:
        start = block * state.block_length
        image[:, start : start + state.block_length] = _OPEN_BLOCK
    revealed = steps != NOT_REVEALED
    image[revealed[None, :] & (steps[None, :] < grid)] = _EARLIER
    image[revealed[None, :] & (steps[None, :] == grid)] = _REVEALED
    return np.repeat(np.repeat(image, CELL, axis=0), CELL, axis=1)
