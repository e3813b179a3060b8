"""The batched decoding core shared by the single and the vector environment.

A :class:`DecodingState` holds ``B`` buffers ``[left padding | prompt | L generation
positions]`` being decoded by a masked diffusion LM, the bookkeeping of semi-autoregressive
blocks (the current block of each row, steps taken in it), the number of forward passes (NFE)
of each row, and the step at which each generation position was revealed. Two operations
drive it:

- :meth:`DecodingState.forward` runs one batched forward pass of the model for the rows that
  need one and stores, per generation position, the token a reveal would write and the
  features of the prediction (``confidence`` and optional ``margin``, ``entropy``, ``kl``);
- :meth:`DecodingState.reveal` writes the last forward's tokens at chosen positions (only
  *active* ones: masked and in the row's current block) and opens the next block of every row
  whose current block is complete.

Everything is a tensor operation over the batch: no Python loop over positions or rows. The
mask token is never a prediction (its logit is excluded before features are computed), so a
revealed position can never hold a mask again; LLaDA's reference code would leave such a
position masked, which a trained model never provokes.
:func:`decode` drives a state with a rule (LLaDA's top-k schedule, a confidence threshold) and
is the reference the environments are checked against.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from dllm_gym.models.features import check_feature_names, logit_features

if TYPE_CHECKING:
    from dllm_gym.models.architecture import KVCache
    from dllm_gym.models.loading import DiffusionLM

NOT_REVEALED = -1
CACHE_MODES = ("none", "prefix", "dual")


def check_lengths(gen_length: int, block_length: int) -> None:
    """Validate a generation length and a block length (a block must divide L)."""
    if not isinstance(gen_length, int) or gen_length <= 0:
        raise ValueError(f"gen_length must be a positive integer, got {gen_length!r}")
    if not isinstance(block_length, int) or block_length <= 0:
        raise ValueError(f"block_length must be a positive integer, got {block_length!r}")
    if gen_length % block_length:
        raise ValueError(
            f"block_length={block_length} does not divide gen_length={gen_length}; "
            f"choose a divisor of {gen_length}, such as {_divisors(gen_length)}"
        )


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _check_prompts(
    prompts: Sequence[Sequence[int]], gen_length: int, max_length: int | None
) -> int:
    """Validate prompts (token id lists); returns the longest prompt's length."""
    if len(prompts) == 0:
        raise ValueError("prompts: expected at least one prompt, got none")
    lengths = [len(p) for p in prompts]
    if min(lengths) == 0:
        raise ValueError("prompts: every prompt needs at least one token")
    width = max(lengths)
    if max_length is not None and width + gen_length > max_length:
        raise ValueError(
            f"prompt of {width} tokens plus gen_length={gen_length} exceeds the model's "
            f"limit of {max_length} tokens; shorten the prompt or lower gen_length"
        )
    return width


def _padded_buffers(
    prompts: Sequence[Sequence[int]],
    width: int,
    gen_length: int,
    mask_token_id: int,
    pad_token_id: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CPU buffers ``[left padding | prompt | gen_length masks]`` of ``width + gen_length``
    columns: tokens, attention mask, position ids (0 at each row's first real token) and
    prompt lengths."""
    batch = len(prompts)
    tokens = torch.full((batch, width + gen_length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, width + gen_length), dtype=torch.bool)
    flat = torch.tensor([t for p in prompts for t in p], dtype=torch.long)
    prompt_lengths = torch.tensor([len(p) for p in prompts], dtype=torch.long)
    is_prompt = torch.arange(width) >= (width - prompt_lengths)[:, None]  # right-aligned
    tokens[:, :width][is_prompt] = flat
    attention_mask[:, :width] = is_prompt
    tokens[:, width:] = mask_token_id
    attention_mask[:, width:] = True
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    return tokens, attention_mask, position_ids, prompt_lengths


@dataclass
class DecodingState:
    """``B`` buffers being decoded; build one with :meth:`DecodingState.start`.

    Tensors live on the model's device. Generation tensors are (B, L); the generation of row
    ``b`` is ``tokens[b, prompt_width:]``.
    """

    tokens: torch.Tensor  # (B, P + L) int64: left padding, prompt, generation
    attention_mask: torch.Tensor  # (B, P + L) bool: False on left padding
    position_ids: torch.Tensor  # (B, P + L) int64: 0 at each row's first real token
    prompt_lengths: torch.Tensor  # (B,) int64: real prompt tokens per row
    gen_length: int
    block_length: int
    mask_token_id: int
    pad_token_id: int = 0
    features: tuple[str, ...] = ()
    temperature: float = 0.0
    generator: torch.Generator | None = None
    stop_token_ids: tuple[int, ...] = ()  # summed by the ``eos`` feature
    cache: str = "none"  # "none", "prefix" or "dual": see forward()
    cache_refresh: int = 0  # with a cache: a full forward after this many windows (0: never)
    nfe: torch.Tensor = field(init=False)  # (B,) forward passes of each row
    full_forwards: torch.Tensor = field(init=False)  # (B,) of them over the whole sequence
    window_forwards: torch.Tensor = field(init=False)  # (B,) of them over a cached window
    unmask_step: torch.Tensor = field(init=False)  # (B, L) step of reveal, -1 while masked
    current_block: torch.Tensor = field(init=False)  # (B,) index of the open block
    block_step: torch.Tensor = field(init=False)  # (B,) reveals done in the open block
    predicted: torch.Tensor = field(init=False)  # (B, L) tokens of the last forward
    confidence: torch.Tensor = field(init=False)  # (B, L) their probability
    extra: dict[str, torch.Tensor] = field(init=False)  # optional features, (B, L) each
    _log_probs: torch.Tensor | None = field(init=False, default=None)
    _kv: KVCache | None = field(init=False, default=None)
    _stale: torch.Tensor = field(init=False)  # (B,) the row's cache needs a full forward
    _since_fill: torch.Tensor = field(init=False)  # (B,) window forwards since the last fill

    def __post_init__(self) -> None:
        check_lengths(self.gen_length, self.block_length)
        check_feature_names(self.features)
        batch, device = self.tokens.shape[0], self.tokens.device
        gen_shape = (batch, self.gen_length)
        if self.cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {list(CACHE_MODES)}, got {self.cache!r}")
        if not isinstance(self.cache_refresh, int) or self.cache_refresh < 0:
            raise ValueError(f"cache_refresh must be an integer >= 0, got {self.cache_refresh!r}")
        self.nfe = torch.zeros(batch, dtype=torch.long, device=device)
        self.full_forwards = torch.zeros_like(self.nfe)
        self.window_forwards = torch.zeros_like(self.nfe)
        self._stale = torch.ones(batch, dtype=torch.bool, device=device)
        self._since_fill = torch.zeros_like(self.nfe)
        self.unmask_step = torch.full(gen_shape, NOT_REVEALED, dtype=torch.long, device=device)
        self.current_block = torch.zeros(batch, dtype=torch.long, device=device)
        self.block_step = torch.zeros(batch, dtype=torch.long, device=device)
        self.predicted = torch.full(gen_shape, self.mask_token_id, dtype=torch.long, device=device)
        self.confidence = torch.zeros(gen_shape, dtype=torch.float32, device=device)
        self.extra = {
            name: torch.zeros(gen_shape, dtype=torch.float32, device=device)
            for name in self.features
            if name != "token"
        }

    # ----------------------------------------------------------------------------- building
    @classmethod
    def start(
        cls,
        prompts: Sequence[Sequence[int]],
        *,
        gen_length: int,
        block_length: int,
        mask_token_id: int,
        pad_token_id: int = 0,
        device: torch.device | str = "cpu",
        max_length: int | None = None,
        features: Collection[str] = (),
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
        stop_token_ids: Sequence[int] = (),
        cache: str = "none",
        cache_refresh: int = 0,
    ) -> DecodingState:
        """Left-pad ``prompts`` (lists of token ids) and append ``gen_length`` mask tokens."""
        check_lengths(gen_length, block_length)
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        width = _check_prompts(prompts, gen_length, max_length)
        tokens, attention_mask, position_ids, prompt_lengths = _padded_buffers(
            prompts, width, gen_length, mask_token_id, pad_token_id
        )
        return cls(
            tokens=tokens.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=position_ids.to(device),
            prompt_lengths=prompt_lengths.to(device),
            gen_length=gen_length,
            block_length=block_length,
            mask_token_id=mask_token_id,
            pad_token_id=pad_token_id,
            features=tuple(features),
            temperature=temperature,
            generator=generator,
            stop_token_ids=tuple(stop_token_ids),
            cache=cache,
            cache_refresh=cache_refresh,
        )

    @classmethod
    def for_model(
        cls,
        model: DiffusionLM,
        prompts: Sequence[Sequence[int]],
        *,
        gen_length: int,
        block_length: int,
        features: Collection[str] = (),
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
        cache: str = "none",
        cache_refresh: int = 0,
    ) -> DecodingState:
        """:meth:`start` with the model's mask, padding and stop ids, device and length limit."""
        if cache != "none":
            model.check_cache_support()
        return cls.start(
            prompts,
            gen_length=gen_length,
            block_length=block_length,
            mask_token_id=model.mask_token_id,
            pad_token_id=model.pad_token_id,
            device=model.device,
            max_length=model.max_length,
            features=features,
            temperature=temperature,
            generator=generator,
            stop_token_ids=model.stop_token_ids,
            cache=cache,
            cache_refresh=cache_refresh,
        )

    def adopt_cache(self, previous: DecodingState | None) -> None:
        """Take over the key/value slab of ``previous`` (a state this one replaces) when it
        has this state's batch size and width, instead of allocating another. Only its
        memory is reused: every row of a new state is stale, so each fills its cache before
        a partial forward reads it."""
        old = None if previous is None else previous._kv
        if old is not None and (old.batch, old.length) == (self.batch_size, self.tokens.shape[1]):
            self._kv = old
            old.filled.zero_()
        if previous is not None:
            previous._kv = None

    def restart(
        self,
        rows: torch.Tensor,
        prompts: Sequence[Sequence[int]],
        max_length: int | None = None,
    ) -> None:
        """Start ``rows`` ((B,) bool, one True per prompt, in order) afresh on ``prompts``.

        Other rows are untouched. A prompt longer than the buffer's prompt columns gives every
        row more left padding (which changes none of its tokens, positions or predictions).
        No forward pass runs here: a restarted row needs one before its first reveal.
        """
        if rows.shape != (self.batch_size,) or rows.dtype != torch.bool:
            raise ValueError(
                f"rows: expected a bool tensor of shape ({self.batch_size},), "
                f"got {rows.dtype} of shape {tuple(rows.shape)}"
            )
        index = rows.nonzero().squeeze(1)
        if index.numel() != len(prompts):
            raise ValueError(
                f"prompts: expected one prompt per restarted row ({index.numel()}), "
                f"got {len(prompts)}"
            )
        if index.numel() == 0:
            return
        width = max(_check_prompts(prompts, self.gen_length, max_length), self.prompt_width)
        if width > self.prompt_width:
            self._add_left_padding(width - self.prompt_width)
        buffers = _padded_buffers(
            prompts, width, self.gen_length, self.mask_token_id, self.pad_token_id
        )
        device = self.tokens.device
        tokens, attention_mask, position_ids, prompt_lengths = (b.to(device) for b in buffers)
        self.tokens[index] = tokens
        self.attention_mask[index] = attention_mask
        self.position_ids[index] = position_ids
        self.prompt_lengths[index] = prompt_lengths
        self.nfe[index] = 0
        self.full_forwards[index] = 0
        self.window_forwards[index] = 0
        self._stale[index] = True  # never reuse a finished episode's cache
        self.unmask_step[index] = NOT_REVEALED
        self.current_block[index] = 0
        self.block_step[index] = 0
        self.predicted[index] = self.mask_token_id
        self.confidence[index] = 0.0
        for values in self.extra.values():
            values[index] = 0.0
        if self._log_probs is not None:
            self._log_probs[index] = 0.0

    def _add_left_padding(self, columns: int) -> None:
        if self._kv is not None:  # the cached keys and values move with their columns
            self._kv.add_left_padding(columns)
        batch, device = self.batch_size, self.tokens.device
        pad = torch.full((batch, columns), self.pad_token_id, dtype=torch.long, device=device)
        self.tokens = torch.cat([pad, self.tokens], dim=1)
        self.attention_mask = torch.cat(
            [torch.zeros((batch, columns), dtype=torch.bool, device=device), self.attention_mask],
            dim=1,
        )
        self.position_ids = torch.cat([torch.zeros_like(pad), self.position_ids], dim=1)

    # ----------------------------------------------------------------------------- views
    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    @property
    def prompt_width(self) -> int:
        """Columns before the generation: the longest prompt (shorter ones are left-padded)."""
        return self.tokens.shape[1] - self.gen_length

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length

    @property
    def generation(self) -> torch.Tensor:
        """(B, L) view of the generation positions of the buffer."""
        return self.tokens[:, self.prompt_width :]

    @property
    def masked(self) -> torch.Tensor:
        """(B, L) True where the position is still masked."""
        return self.unmask_step == NOT_REVEALED

    @property
    def in_current_block(self) -> torch.Tensor:
        """(B, L) True on the positions of each row's open block."""
        block_of_position = torch.arange(self.gen_length, device=self.tokens.device)
        block_of_position = block_of_position // self.block_length
        return block_of_position[None, :] == self.current_block[:, None]

    @property
    def active(self) -> torch.Tensor:
        """(B, L) True where a position may be revealed now: masked and in the open block."""
        return self.masked & self.in_current_block

    @property
    def done(self) -> torch.Tensor:
        """(B,) True for rows with no masked position left."""
        return ~self.masked.any(dim=1)

    # ----------------------------------------------------------------------------- operations
    @torch.no_grad()
    def forward(self, model: DiffusionLM, rows: torch.Tensor | None = None) -> None:
        """One forward pass for ``rows`` (a (B,) bool mask; all rows when None).

        Stores the predicted tokens and features at the generation positions of those rows
        and adds one to their NFE. Rows not selected keep their previous predictions.

        With ``cache="none"`` every forward runs over the whole sequence. With a cache
        (Fast-dLLM's block-wise approximate cache), a row's first forward in a block (and
        one after every ``cache_refresh`` windows, when that is > 0) runs over the whole
        sequence and fills the row's keys and values; the next ones run only a window
        against them: ``"prefix"`` the open block and everything after it (the prompt and
        finished blocks cached), ``"dual"`` the open block alone (prefix and suffix cached).
        Positions outside the window keep the predictions of the forward that last computed
        them.
        """
        if self.cache == "none":
            index = None if rows is None else rows.nonzero().squeeze(1)
            if index is not None and index.numel() == 0:
                return
            logits = model.generation_logits(
                *self._rows_of(index), start=self.prompt_width, length=self.gen_length
            )
            self._store(index, logits, None)
            self.full_forwards[slice(None) if index is None else index] += 1
            return
        selected = torch.ones_like(self._stale) if rows is None else rows
        if self._kv is None or self._kv.length != self.tokens.shape[1]:
            self._kv = model.new_cache(self.batch_size, self.tokens.shape[1])
            self._stale[:] = True
        fill = selected & self._stale
        if bool(fill.any()):
            index = fill.nonzero().squeeze(1)
            tokens, attention, positions = self._rows_of(index)
            logits = model.fill_cache(
                self._kv, index, tokens, attention, positions, start=self.prompt_width,
                length=self.gen_length,
            )  # fmt: skip
            self._store(index, logits, None)
            self._stale[index] = False
            self._since_fill[index] = 0
            self.full_forwards[index] += 1
        window = selected & ~fill
        if bool(window.any()):
            self._window_forward(model, window.nonzero().squeeze(1))

    def _window_forward(self, model: DiffusionLM, index: torch.Tensor) -> None:
        """A window forward of rows ``index`` against their cache (see :meth:`forward`)."""
        offsets = self.current_block.index_select(0, index) * self.block_length
        width = (
            self.block_length
            if self.cache == "dual"
            else self.gen_length - int(offsets.min())  # prefix: to the end of the longest
        )
        tokens = self.tokens.index_select(0, index)
        positions = self.position_ids.index_select(0, index)
        logits = model.window_logits(
            self._kv, index, tokens, positions, self.prompt_width + offsets, width
        )
        columns = offsets[:, None] + torch.arange(width, device=offsets.device)
        self._store(index, logits, columns)
        self._since_fill[index] += 1
        self.window_forwards[index] += 1
        if self.cache_refresh:
            self._stale[index] = self._since_fill.index_select(0, index) >= self.cache_refresh

    def _rows_of(self, index: torch.Tensor | None):
        """Tokens, attention mask and position ids of rows ``index`` (all when None)."""
        if index is None:
            return self.tokens, self.attention_mask, self.position_ids
        return (
            self.tokens.index_select(0, index),
            self.attention_mask.index_select(0, index),
            self.position_ids.index_select(0, index),
        )

    def _store(
        self, index: torch.Tensor | None, logits: torch.Tensor, columns: torch.Tensor | None
    ) -> None:
        """Predictions and features of ``logits`` ((R, W, V)) for rows ``index`` (all when
        None) at generation positions ``columns`` ((R, W); None: all L). Columns past the
        end (a ragged window's padding) are dropped. Adds one to the rows' NFE."""
        # Finite, so that 0 * log(0) terms of the entropy stay 0 rather than NaN.
        logits[..., self.mask_token_id] = torch.finfo(logits.dtype).min
        rows = slice(None) if index is None else index
        if columns is None:  # whole rows: the path of every uncached step, no gathers
            where: tuple = (rows,)
            select: tuple = (slice(None),)
        else:
            inside = columns < self.gen_length
            where, select = (index[:, None].expand_as(columns)[inside], columns[inside]), (inside,)
        previous = None
        if self._log_probs is not None:
            previous = (
                self._log_probs[rows]
                if columns is None
                else self._log_probs[index[:, None], columns.clamp(max=self.gen_length - 1)]
            )
        out = logit_features(
            logits,
            self.features,
            temperature=self.temperature,
            generator=self.generator,
            previous_log_probs=previous,
            stop_token_ids=self.stop_token_ids,
        )
        if out.kl is not None:  # a row's first forward has no previous step to compare with
            first = self.nfe[rows] == 0
            out.kl = torch.where(first[:, None], torch.zeros_like(out.kl), out.kl)
        if out.log_probs is not None and self._log_probs is None:
            self._log_probs = torch.zeros(
                (self.batch_size, self.gen_length, *out.log_probs.shape[2:]),
                dtype=out.log_probs.dtype,
                device=out.log_probs.device,
            )
        self.predicted[where] = out.tokens[select]
        self.confidence[where] = out.confidence[select]
        for name in self.extra:
            self.extra[name][where] = getattr(out, name)[select]
        if out.log_probs is not None:
            self._log_probs[where] = out.log_probs[select]
        self.nfe[rows] += 1

    def reveal(self, select: torch.Tensor) -> torch.Tensor:
        """Reveal the positions of ``select`` ((B, L) bool) that are active.

        Writes the last forward's tokens there, records the step (the row's NFE) in
        ``unmask_step``, counts the step in the open block and opens the next block of rows
        whose block is complete. Inactive positions in ``select`` are ignored. Returns the
        (B,) number of positions revealed per row.
        """
        if select.shape != self.unmask_step.shape or select.dtype != torch.bool:
            raise ValueError(
                f"select: expected a bool tensor of shape {tuple(self.unmask_step.shape)}, "
                f"got {select.dtype} of shape {tuple(select.shape)}"
            )
        select = select & self.active
        generation = self.generation
        generation.copy_(torch.where(select, self.predicted, generation))
        self.unmask_step.copy_(
            torch.where(select, self.nfe[:, None].expand_as(select), self.unmask_step)
        )
        revealed = select.sum(dim=1)
        self.block_step += (revealed > 0).long()
        self._open_next_blocks()
        return revealed

    def _open_next_blocks(self) -> None:
        # Blocks open in order and only the open block is ever revealed, so the open block is
        # the block of the first masked position (num_blocks once nothing is masked).
        masked = self.masked
        first_masked = torch.where(
            masked.any(dim=1),
            masked.long().argmax(dim=1),
            torch.full_like(self.current_block, self.gen_length),
        )
        new_block = first_masked // self.block_length
        self._stale |= new_block != self.current_block  # a new block: refill the cache
        self.block_step = torch.where(
            new_block != self.current_block, torch.zeros_like(self.block_step), self.block_step
        )
        self.current_block = new_block


# A rule maps a state to the (B, L) bool positions to reveal at this step.
Rule = Callable[[DecodingState], torch.Tensor]


def most_confident(state: DecodingState, counts: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: the ``counts[b]`` most confident active positions of each row.

    Ties are broken towards the leftmost position (a stable sort).
    """
    scores = torch.where(state.active, state.confidence, torch.full_like(state.confidence, -1.0))
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order).scatter_(
        1, order, torch.arange(state.gen_length, device=order.device).expand_as(order)
    )
    return (ranks < counts[:, None]) & state.active


def at_least_one(state: DecodingState, select: torch.Tensor) -> torch.Tensor:
    """``select`` ((B, L) bool) restricted to active positions, plus the most confident active
    position of every row that selects none, so every step makes progress."""
    chosen = select & state.active
    empty = ~chosen.any(dim=1, keepdim=True)
    return chosen | (most_confident(state, torch.ones_like(state.nfe)) & empty)


def llada_transfer_counts(block_length: int, steps_per_block: int) -> list[int]:
    """Tokens revealed at each step of a block by LLaDA's schedule.

    ``block_length // steps`` per step, the remainder spread one each over the first steps.
    """
    base, remainder = divmod(block_length, steps_per_block)
    return [base + (step < remainder) for step in range(steps_per_block)]


def top_k_rule(steps_per_block: int) -> Rule:
    """LLaDA's low-confidence remasking: the k most confident active positions, k by schedule."""

    def rule(state: DecodingState) -> torch.Tensor:
        if not 1 <= steps_per_block <= state.block_length:
            raise ValueError(
                f"steps_per_block must be in [1, block_length={state.block_length}], "
                f"got {steps_per_block}"
            )
        schedule = torch.tensor(
            llada_transfer_counts(state.block_length, steps_per_block),
            device=state.tokens.device,
        )
        counts = schedule[state.block_step.clamp(max=steps_per_block - 1)]
        return most_confident(state, counts)

    return rule


def threshold_rule(threshold: float) -> Rule:
    """Fast-dLLM's parallel decoding: the most confident active position, plus every active
    position whose confidence is at least ``threshold``."""

    def rule(state: DecodingState) -> torch.Tensor:
        best = most_confident(state, torch.ones_like(state.nfe))
        return best | (state.active & (state.confidence >= threshold))

    return rule


@dataclass
class DecodeResult:
    """What :func:`decode` returns: generations, NFE per row and the decoding order."""

    generations: torch.Tensor  # (B, L) int64
    nfe: torch.Tensor  # (B,) int64
    unmask_step: torch.Tensor  # (B, L) int64, step at which each position was revealed


@torch.no_grad()
def decode(
    model: DiffusionLM,
    prompts: Sequence[Sequence[int]],
    rule: Rule,
    *,
    gen_length: int,
    block_length: int,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    features: Collection[str] = (),
    cache: str = "none",
    cache_refresh: int = 0,
) -> DecodeResult:
    """Decode ``prompts`` (token ids) with ``rule`` choosing what to reveal at each step.

    Each step runs one batched forward for the rows still masked, then reveals what the rule
    selects (at least the most confident active position, so every step makes progress).
    ``cache`` and ``cache_refresh``: see :meth:`DecodingState.forward`.
    """
    state = DecodingState.for_model(
        model,
        prompts,
        gen_length=gen_length,
        block_length=block_length,
        features=features,
        temperature=temperature,
        generator=generator,
        cache=cache,
        cache_refresh=cache_refresh,
    )
    state.forward(model)
    while True:
        state.reveal(at_least_one(state, rule(state)))
        pending = ~state.done
        if not bool(pending.any()):
            break
        state.forward(model, rows=pending)
    return DecodeResult(
        generations=state.generation.clone(),
        nfe=state.nfe.clone(),
        unmask_step=state.unmask_step.clone(),
    )
