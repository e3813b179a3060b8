"""Loading a masked diffusion LM: one entry point, one wrapper that hides model differences.

:func:`load_model` takes ``"embedded"`` (the tiny model shipped with the package), a known
Hugging Face id (LLaDA, Dream), any local folder saved by ``save_pretrained``, or the id of
any ``AutoModelForMaskedLM``, and returns a :class:`DiffusionLM` that knows the model's mask
id, its end-of-sequence ids, tokenizer and chat template, and whether its logits are shifted
(Dream predicts position ``i`` at logits ``i - 1``). :meth:`DiffusionLM.generation_logits`
returns logits aligned with the positions they predict, whatever the model.

Two backends run LLaDA and Dream. ``"native"`` (the default) maps the published safetensors
onto the project's own architecture (:mod:`dllm_gym.models.native`): one SDPA attention with
a key-padding mask and per-row positions, no code from the checkpoint. ``"remote"`` runs the
code published with the weights (``trust_remote_code``); the loader checks once whether that
code honours ``attention_mask`` and, where it does not (LLaDA's), runs rows of different
prompt lengths in separate forwards so that batching stays exact, and warns what it costs.
"""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, PreTrainedTokenizerBase

from dllm_gym.models.architecture import (
    DiffusionTransformerConfig,
    DiffusionTransformerForMaskedLM,
    KVCache,
    register,
)
from dllm_gym.models.checkpoint_tokenizer import load_checkpoint_tokenizer
from dllm_gym.models.native import load_native_model

logger = logging.getLogger(__name__)

EMBEDDED_MODEL = "embedded"
EMBEDDED_MODEL_DIR = Path(__file__).resolve().parent / "embedded"
# The embedded checkpoints by name: v0's model (Arith-v0) and v1's (Arith-v1).
EMBEDDED_MODELS: dict[str, Path] = {
    EMBEDDED_MODEL: EMBEDDED_MODEL_DIR,
    "embedded-v1": Path(__file__).resolve().parent / "embedded_v1",
}
OWN_MODEL_TYPE = DiffusionTransformerConfig.model_type
BACKENDS = ("auto", "native", "remote")
# Files the native backend needs from a hub repository: no code.
NATIVE_FILE_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model"]


class ModelUnavailableError(RuntimeError):
    """The requested model cannot be had here: says what is missing and what to do."""


@dataclass(frozen=True)
class ModelFamily:
    """How to load and call one kind of dLLM.

    The token ids are fallbacks used only where the checkpoint's config and tokenizer say
    nothing (a derivative may move them).
    """

    name: str
    auto_class: str  # "AutoModel" or "AutoModelForMaskedLM": the remote backend's class
    shifted_logits: bool
    mask_token_id: int | None = None
    eot_token: str | None = None
    eot_token_id: int | None = None
    has_native: bool = False


LLADA = ModelFamily("llada", "AutoModel", False, 126336, "<|eot_id|>", 126348, has_native=True)
DREAM = ModelFamily("dream", "AutoModel", True, 151666, "<|im_end|>", 151645, has_native=True)
OWN = ModelFamily("dllm_gym", "AutoModelForMaskedLM", False, None, "<|eot_id|>", has_native=True)
MASKED_LM = ModelFamily("masked_lm", "AutoModelForMaskedLM", False)

# Keys are lower case: configs write "llada", "Dream", ...
FAMILIES_BY_MODEL_TYPE = {"llada": LLADA, "dream": DREAM, OWN_MODEL_TYPE: OWN}


@dataclass(frozen=True)
class KnownModel:
    family: ModelFamily
    billions_of_parameters: float


# Known hub ids: the registry allows their remote code.
KNOWN_MODELS: dict[str, KnownModel] = {
    "GSAI-ML/LLaDA-8B-Instruct": KnownModel(LLADA, 8.0),
    "GSAI-ML/LLaDA-8B-Base": KnownModel(LLADA, 8.0),
    "Dream-org/Dream-v0-Instruct-7B": KnownModel(DREAM, 7.6),
    "Dream-org/Dream-v0-Base-7B": KnownModel(DREAM, 7.6),
}


@dataclass
class DiffusionLM:
    """A loaded dLLM with what decoding needs to know about it."""

    name: str
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    family: ModelFamily
    mask_token_id: int
    eos_token_id: int | None
    eot_token_id: int | None
    pad_token_id: int
    max_length: int | None
    backend: str = "native"
    honours_attention_mask: bool = True

    @property
    def shifted_logits(self) -> bool:
        return self.family.shifted_logits

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def chat_template(self) -> str | None:
        return getattr(self.tokenizer, "chat_template", None)

    @property
    def stop_token_ids(self) -> tuple[int, ...]:
        """Ids that end a generation (end of text, end of turn)."""
        return tuple(i for i in (self.eos_token_id, self.eot_token_id) if i is not None)

    @torch.no_grad()
    def generation_logits(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        *,
        start: int,
        length: int,
    ) -> torch.Tensor:
        """Logits predicting positions ``start .. start + length - 1``: (B, length, vocab).

        ``attention_mask`` is (B, T) bool with False on left padding; ``position_ids`` count
        from each row's first real token.
        """
        return self._generation_slice(
            self._forward(tokens, attention_mask, position_ids), start, length
        )

    def _generation_slice(self, logits: torch.Tensor, start: int, length: int) -> torch.Tensor:
        """The ``length`` logits predicting columns ``start ..`` (one column earlier for a
        model whose logits are shifted by one)."""
        offset = start - 1 if self.shifted_logits else start
        return logits[:, offset : offset + length]

    # ------------------------------------------------------------------ key/value cache
    @property
    def supports_cache(self) -> bool:
        """Whether the model can hold a :class:`KVCache`: the project's own architecture (the
        native backend of LLaDA, Dream and the embedded model) can; published remote code and
        other transformers classes cannot be asked to."""
        return isinstance(self.model, DiffusionTransformerForMaskedLM)

    def check_cache_support(self) -> None:
        """Raise a ValueError naming the backend when the model cannot hold a cache."""
        if not self.supports_cache:
            raise ValueError(
                f"cache: the {self.backend!r} backend of {self.name!r} cannot hold a key/value "
                "cache; load it with backend='native' or use cache='none'"
            )

    def new_cache(self, batch: int, length: int) -> KVCache:
        """An empty cache for ``batch`` sequences of ``length`` columns on the model's device
        and in its dtype."""
        self.check_cache_support()
        return KVCache(self.model.config, batch, length, device=self.device, dtype=self.dtype)

    def fill_cache(
        self,
        cache: KVCache,
        rows: torch.Tensor,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        *,
        start: int,
        length: int,
    ) -> torch.Tensor:
        """:meth:`generation_logits` of the (R, T) sequences, filling cache rows ``rows``."""
        logits = self.model(
            tokens, attention_mask=attention_mask, position_ids=position_ids, kv_cache=cache,
            cache_rows=rows,
        ).logits  # fmt: skip
        return self._generation_slice(logits, start, length)

    def window_logits(
        self,
        cache: KVCache,
        rows: torch.Tensor,
        tokens: torch.Tensor,
        position_ids: torch.Tensor,
        starts: torch.Tensor,
        width: int,
    ) -> torch.Tensor:
        """Logits predicting columns ``starts[r] .. starts[r] + width - 1`` of the (R, T)
        sequences of cache rows ``rows``, recomputing those columns against the cache
        (and the column before them for a model whose logits are shifted by one).
        Columns past the end are clamped to the last one (their logits repeat it)."""
        last = tokens.shape[1] - 1
        first = starts - 1 if self.shifted_logits else starts
        span = width + 1 if self.shifted_logits else width
        columns = (first[:, None] + torch.arange(span, device=starts.device)).clamp(max=last)
        logits = self.model(
            tokens.gather(1, columns), position_ids=position_ids.gather(1, columns),
            kv_cache=cache, cache_positions=columns, cache_rows=rows,
        ).logits  # fmt: skip
        if self.shifted_logits:
            logits = logits[:, :-1]
            # A clamped column's prediction is the last column's, as for the others.
            past = (starts[:, None] + torch.arange(width, device=starts.device)) > last
            logits = torch.where(past[..., None], logits[:, -1:].expand_as(logits), logits)
        return logits

    def _forward(self, tokens, attention_mask, position_ids) -> torch.Tensor:
        if not self.honours_attention_mask and not bool(attention_mask.all()):
            return self._forward_grouped_by_padding(tokens, attention_mask, position_ids)
        return self.call_model(tokens, attention_mask, position_ids)

    def call_model(self, tokens, attention_mask, position_ids) -> torch.Tensor:
        """One forward of the model on a batch as it is (no grouping by padding): logits."""
        if self.backend == "native":
            return self.model(
                tokens, attention_mask=attention_mask, position_ids=position_ids
            ).logits
        return self._remote_forward(tokens, attention_mask, position_ids)

    def _remote_forward(self, tokens, attention_mask, position_ids) -> torch.Tensor:
        """One forward of the published code, called as its own generation code calls it."""
        padded = not bool(attention_mask.all())
        if self.family is DREAM:  # as Dream's own diffusion_generate calls it
            if not padded:
                return self.model(tokens, "full", None).logits
            pairwise = attention_mask[:, None, None, :] & attention_mask[:, None, :, None]
            return self.model(tokens, pairwise, position_ids).logits
        if self.family is LLADA:  # LLaDA's rotary positions always count from column 0
            return self.model(
                tokens, attention_mask=attention_mask.long() if padded else None
            ).logits
        kwargs: dict[str, Any] = {"attention_mask": attention_mask.long()}
        if "position_ids" in inspect.signature(self.model.forward).parameters:
            kwargs["position_ids"] = position_ids
        return self.model(input_ids=tokens, **kwargs).logits

    def _forward_grouped_by_padding(self, tokens, attention_mask, position_ids) -> torch.Tensor:
        """For a model that ignores ``attention_mask``: one forward per amount of left
        padding, each on its rows with the padding cut off, so every row is computed exactly
        as it would be alone. Logits of padding columns are zero."""
        pads = (~attention_mask).sum(dim=1)
        logits: torch.Tensor | None = None
        for pad in pads.unique().tolist():
            rows = (pads == pad).nonzero().squeeze(1)
            part = self._remote_forward(
                tokens[rows, pad:], attention_mask[rows, pad:], position_ids[rows, pad:]
            )
            if logits is None:
                logits = part.new_zeros((tokens.shape[0], tokens.shape[1], part.shape[-1]))
            logits[rows, pad:] = part
        assert logits is not None
        return logits

    def decode_generation(self, generation: torch.Tensor | list[int]) -> str:
        """Text of one generation, cut at the first stop token, special tokens removed."""
        ids = generation.tolist() if isinstance(generation, torch.Tensor) else list(generation)
        stops = set(self.stop_token_ids)
        for i, token in enumerate(ids):
            if token in stops:
                ids = ids[:i]
                break
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` is CUDA when present, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"device={device!r} is not a device; expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailableError(f"device={device!r} was asked for but no CUDA GPU is visible")
    return resolved


_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}  # fmt: skip


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``"auto"`` is bfloat16 on a GPU (float16 where bf16 is unsupported), float32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in _DTYPES:
        raise ValueError(
            f"dtype={dtype!r} is not supported; expected 'auto' or one of {list(_DTYPES)}"
        )
    return _DTYPES[dtype]


def _offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "") or os.environ.get("TRANSFORMERS_OFFLINE", "")
    return flag.lower() in {"1", "true", "yes", "on"} or bool(constants.HF_HUB_OFFLINE)


def _how_to_point_at_a_local_copy(name: str) -> str:
    return (
        f"To use it, download it where there is a network (`hf download {name} "
        f"--local-dir /path/to/copy`) and pass model='/path/to/copy', or fill the Hugging "
        f"Face cache (HF_HOME) and run with HF_HUB_OFFLINE=1."
    )


def _from_hub_or_cache(loader: Any, name: str, what: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` from the cache first, then (saying so) from the hub."""
    try:
        return loader.from_pretrained(name, local_files_only=True, **kwargs)
    except OSError as cache_error:
        if _offline():
            raise ModelUnavailableError(
                f"model={name!r}: the {what} is not in the Hugging Face cache and the hub is "
                f"offline (HF_HUB_OFFLINE). {_how_to_point_at_a_local_copy(name)}"
            ) from cache_error
    logger.warning(
        "dllm_gym: %s of %r is not cached; downloading it from the Hugging Face hub", what, name
    )
    try:
        return loader.from_pretrained(name, **kwargs)
    except OSError as error:
        raise ModelUnavailableError(
            f"model={name!r}: could not load the {what}: it is not in the Hugging Face cache "
            f"and the hub could not be reached or has no such model ({error.__class__.__name__}). "
            f"{_how_to_point_at_a_local_copy(name)}"
        ) from error


def _snapshot_folder(name: str) -> Path:
    """The local folder of hub id ``name`` with the files the native backend reads: the
    Hugging Face cache first, then (saying so) a download of those files (no code)."""
    from huggingface_hub import snapshot_download

    class _Folder:  # snapshot_download as a from_pretrained-style loader
        @staticmethod
        def from_pretrained(repo_id: str, local_files_only: bool = False) -> Path:
            try:
                return Path(
                    snapshot_download(
                        repo_id,
                        allow_patterns=NATIVE_FILE_PATTERNS,
                        local_files_only=local_files_only,
                    )
                )
            except Exception as error:  # the hub client raises many non-OSError kinds
                if isinstance(error, OSError):
                    raise
                raise OSError(str(error)) from error

    return _from_hub_or_cache(_Folder, name, "checkpoint")


def _check_backend(backend: str, family: ModelFamily, name: str) -> str:
    """The backend that will run ``family``: ``"native"`` or ``"remote"``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not valid; expected one of {list(BACKENDS)}")
    if backend == "auto":
        return "native" if family.has_native else "remote"
    if backend == "native" and not family.has_native:
        raise ValueError(
            f"backend='native' runs LLaDA, Dream and the embedded architecture; model={name!r} "
            f"is none of them (a generic masked LM): use backend='auto' or 'remote'"
        )
    if backend == "remote" and family is OWN:
        raise ValueError(
            f"backend='remote' runs code published with LLaDA, Dream or other Hugging Face "
            f"models; model={name!r} is the project's own architecture: use backend='native'"
        )
    return backend


def load_model(
    name_or_path: str | os.PathLike = EMBEDDED_MODEL,
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    trust_remote_code: bool | None = None,
    backend: str = "auto",
) -> DiffusionLM:
    """Load a dLLM and its tokenizer.

    Args:
        name_or_path: ``"embedded"`` (``"embedded-v1"``), a known id
            (``GSAI-ML/LLaDA-8B-Instruct``, ``Dream-org/Dream-v0-Instruct-7B``, ...), a local
            folder, or the hub id of any ``AutoModelForMaskedLM``.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        dtype: ``"auto"`` (bfloat16 on GPU, float32 on CPU), ``"bfloat16"``, ``"float16"``,
            ``"float32"`` or a ``torch.dtype``.
        trust_remote_code: whether code shipped with the model may run (``backend="remote"``
            only). ``None`` allows it only for the known ids; a local copy needs ``True``.
        backend: ``"auto"`` (native for LLaDA, Dream and the embedded model, ``transformers``
            for other masked LMs), ``"native"`` (the project's implementation, no code from the
            checkpoint), or ``"remote"`` (the code published with the weights).

    Raises:
        ModelUnavailableError: the model is not cached and cannot be downloaded, needs a GPU
            that is not there, or its published code does not run under this
            ``transformers``; the message says what to do.
        ValueError: an unknown model name, backend, device or dtype; a checkpoint with a
            missing, unexpected or mis-shaped tensor (names the tensor and the file).
    """
    register()
    name = str(name_or_path)
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not valid; expected one of {list(BACKENDS)}")
    family, path = _locate(name, resolved_device, explicit_device=str(device) != "auto")
    known = name in KNOWN_MODELS
    if _check_backend(backend, family, name) == "native":
        folder = _snapshot_folder(name) if known else path
        if family is OWN:
            tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForMaskedLM.from_pretrained(folder, dtype=resolved_dtype)
            model = model.to(resolved_device).eval()
        else:
            tokenizer = load_checkpoint_tokenizer(folder)
            model = load_native_model(
                folder, family.name, device=resolved_device, dtype=resolved_dtype
            )
        return wrap_model(name, model, tokenizer, family, backend="native")

    allow_code = bool(trust_remote_code) or (known and trust_remote_code is None)
    if family is not MASKED_LM and not allow_code:
        where = "" if known else "local "
        raise ValueError(
            f"model={name!r} is a {where}{family.name} checkpoint and backend='remote' runs the "
            f"code that ships with it; pass trust_remote_code=True to allow that, or use "
            f"backend='native' (no code from the checkpoint)"
        )
    model, tokenizer = _load_remote(name, path, family, resolved_dtype, allow_code)
    lm = wrap_model(name, model.to(resolved_device).eval(), tokenizer, family, backend="remote")
    _check_padding(lm)
    return lm


def _locate(name: str, device: torch.device, explicit_device: bool) -> tuple[ModelFamily, Path]:
    """The family of model ``name`` and its local path (an embedded checkpoint, a folder, or
    where a hub id would be if it were a folder); clear errors for what cannot be had."""
    known = KNOWN_MODELS.get(name)
    path = EMBEDDED_MODELS.get(name) or Path(name).expanduser()
    if name in EMBEDDED_MODELS and not (path / "config.json").is_file():
        raise ModelUnavailableError(
            f"model={name!r}: the embedded checkpoint is missing from {path}; reinstall "
            "dllm-gym or train it with scripts/train_embedded_model.py"
        )
    if known is not None:
        if device.type == "cpu" and not explicit_device:
            raise ModelUnavailableError(
                f"model={name!r} has {known.billions_of_parameters:g}B parameters and needs a "
                f"CUDA GPU (about {2 * known.billions_of_parameters:.0f} GB in bfloat16); none "
                f"is visible. Pass device='cpu' to run it on the CPU anyway (about "
                f"{4 * known.billions_of_parameters:.0f} GB of RAM, minutes per forward), or "
                f"use model='embedded' for the tiny CPU model."
            )
        return known.family, path
    if path.is_dir():
        return _family_of_folder(path), path
    if path.exists():
        raise ValueError(f"model={name!r} is a file; expected a folder saved by save_pretrained")
    _reject_near_miss(name)
    return MASKED_LM, path


def _check_padding(lm: DiffusionLM) -> None:
    """Probe once whether a remote model honours ``attention_mask``; if not, batch its rows
    grouped by padding (exact) and warn what that costs."""
    difference = padding_leak(lm)
    if difference > _padding_tolerance(lm.dtype):
        lm.honours_attention_mask = False
        warnings.warn(
            f"model={lm.name!r} (backend='remote') ignores attention_mask: a left-padded row's "
            f"logits differ from the same row alone by up to {difference:.3g}. Rows of "
            f"different prompt lengths therefore run in separate forward passes (one per "
            f"distinct amount of padding in a batch), which is exact but slower; "
            f"backend='native' batches them in one forward.",
            stacklevel=3,
        )


def _load_remote(
    name: str, path: Path, family: ModelFamily, dtype: torch.dtype, allow_code: bool
) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    auto_class = AutoModel if family.auto_class == "AutoModel" else AutoModelForMaskedLM
    load_kwargs = {"trust_remote_code": allow_code}
    try:
        if not path.is_dir():
            tokenizer = _from_hub_or_cache(AutoTokenizer, name, "tokenizer", **load_kwargs)
            model = _from_hub_or_cache(
                auto_class, name, "model weights", dtype=dtype, **load_kwargs
            )
        else:
            tokenizer = AutoTokenizer.from_pretrained(path, **load_kwargs)
            model = auto_class.from_pretrained(path, dtype=dtype, **load_kwargs)
    except (AttributeError, KeyError, ImportError, TypeError) as error:
        if family is MASKED_LM:
            raise
        raise ModelUnavailableError(
            f"model={name!r}: the code published with this {family.name} checkpoint does not "
            f"run under transformers {transformers.__version__} ({type(error).__name__}: "
            f"{error}). backend='native' (the default) runs it without that code."
        ) from error
    return model, tokenizer


def _padding_tolerance(dtype: torch.dtype) -> float:
    """Largest |logit difference| that still counts as "padding is invisible"."""
    return 1e-3 if dtype == torch.float32 else 0.1


@torch.no_grad()
def padding_leak(lm: DiffusionLM, length: int = 8, padding: int = 3) -> float:
    """Max |logit difference| between a row left-padded in a batch and the same row alone,
    relative to the largest logit (at least 1): about 1e-6 for a model that honours
    ``attention_mask``, order 1 for one that ignores it."""
    generator = torch.Generator().manual_seed(0)
    high = min(len(lm.tokenizer), lm.mask_token_id) if lm.mask_token_id > 0 else len(lm.tokenizer)
    tokens = torch.randint(0, max(high, 2), (2, length), generator=generator)
    attention_mask = torch.ones_like(tokens, dtype=torch.bool)
    tokens[1, :padding] = lm.pad_token_id
    attention_mask[1, :padding] = False
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    tokens, attention_mask, position_ids = (
        t.to(lm.device) for t in (tokens, attention_mask, position_ids)
    )
    batched = lm.call_model(tokens, attention_mask, position_ids)[1, padding:]
    alone = lm.call_model(
        tokens[1:, padding:], attention_mask[1:, padding:], position_ids[1:, padding:]
    )[0]
    scale = max(1.0, float(alone.abs().max()))
    return float((batched.float() - alone.float()).abs().max()) / scale


def _family_of_folder(path: Path) -> ModelFamily:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"model={str(path)!r}: the folder has no config.json")
    model_type = str(json.loads(config_file.read_text()).get("model_type", ""))
    return FAMILIES_BY_MODEL_TYPE.get(model_type.lower(), MASKED_LM)


def _reject_near_miss(name: str) -> None:
    """A name close to a known one is a typo, not a hub id worth a network round trip."""
    choices = [*EMBEDDED_MODELS, *KNOWN_MODELS]
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.75)
    if close or "/" not in name:
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"model={name!r} is not a known model, a local folder or a hub id (owner/name); "
            f"{hint}known models: {choices}"
        )


def _first_id(value: Any) -> int | None:
    """A token id from a config field that may hold one id or a list of them."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return int(value) if isinstance(value, int) else None


def wrap_model(
    name: str,
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    family: ModelFamily,
    backend: str = "native",
) -> DiffusionLM:
    """Wrap a loaded ``model`` and ``tokenizer`` of ``family`` as a :class:`DiffusionLM`.

    Special ids come from the model's config first, then its tokenizer; the family's
    constants only fill what both leave unsaid.
    """
    config = model.config
    vocab = len(tokenizer)
    mask_token_id = _first_id(getattr(config, "mask_token_id", None))
    if mask_token_id is None:
        mask_token_id = tokenizer.mask_token_id
    if mask_token_id is None:
        mask_token_id = family.mask_token_id
    if mask_token_id is None:
        raise ValueError(f"model={name!r} has no mask token (neither its config nor its tokenizer)")
    eot_token_id = _first_id(getattr(config, "eot_token_id", None))
    if eot_token_id is None and family.eot_token is not None:
        token_id = tokenizer.convert_tokens_to_ids(family.eot_token)
        if token_id is not None and token_id != tokenizer.unk_token_id:
            eot_token_id = token_id
    if eot_token_id is None and family.eot_token_id is not None and family.eot_token_id < vocab:
        eot_token_id = family.eot_token_id
    eos_token_id = tokenizer.eos_token_id
    if eos_token_id is None:
        eos_token_id = _first_id(getattr(config, "eos_token_id", None))
    if eos_token_id is None and tokenizer.sep_token_id is not None:
        eos_token_id = tokenizer.sep_token_id  # BERT-style masked LMs
    pad_token_id = tokenizer.pad_token_id
    if pad_token_id is None:
        pad_token_id = _first_id(getattr(config, "pad_token_id", None))
    if pad_token_id is None:
        pad_token_id = eos_token_id
    max_length = None
    for key in ("max_position_embeddings", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            max_length = value
            break
    return DiffusionLM(
        name=name,
        model=model,
        tokenizer=tokenizer,
        family=family,
        mask_token_id=int(mask_token_id),
        eos_token_id=eos_token_id,
        eot_token_id=eot_token_id,
        pad_token_id=int(pad_token_id if pad_token_id is not None else 0),
        max_length=max_length,
        backend=backend,
    )


_SHARED: dict[tuple, DiffusionLM] = {}


def shared_model(
    name_or_path: str | os.PathLike = EMBEDDED_MODEL,
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    trust_remote_code: bool | None = None,
    backend: str = "auto",
) -> DiffusionLM:
    """:func:`load_model`, loaded once per process for the same arguments.

    Environments use it so that many of them (a ``SyncVectorEnv`` of single envs, say) share
    one copy of the weights; the model is frozen, so sharing it is safe.
    """
    key = (str(name_or_path), str(device), str(dtype), trust_remote_code, backend)
    if key not in _SHARED:
        _SHARED[key] = load_model(
            name_or_path,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            backend=backend,
        )
    return _SHARED[key]
