"""Loading a masked diffusion LM: one entry point, one wrapper that hides model differences.

:func:`load_model` takes ``"embedded"`` (the tiny model shipped with the package), a known
Hugging Face id (LLaDA, Dream), any local folder saved by ``save_pretrained``, or the id of
any ``AutoModelForMaskedLM``, and returns a :class:`DiffusionLM` that knows the model's mask
id, its end-of-sequence ids, tokenizer and chat template, and whether its logits are shifted
(Dream predicts position ``i`` at logits ``i - 1``). :meth:`DiffusionLM.generation_logits`
returns logits aligned with the positions they predict, whatever the model.
"""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, PreTrainedTokenizerBase

from dllm_gym.models.architecture import DiffusionTransformerConfig, register

logger = logging.getLogger(__name__)

EMBEDDED_MODEL = "embedded"
EMBEDDED_MODEL_DIR = Path(__file__).resolve().parent / "embedded"
OWN_MODEL_TYPE = DiffusionTransformerConfig.model_type


class ModelUnavailableError(RuntimeError):
    """The requested model cannot be had here: says what is missing and what to do."""


@dataclass(frozen=True)
class ModelFamily:
    """How to load and call one kind of dLLM."""

    name: str
    auto_class: str  # "AutoModel" or "AutoModelForMaskedLM"
    shifted_logits: bool
    mask_token_id: int | None = None  # None: from the tokenizer or config
    eot_token: str | None = None
    needs_remote_code: bool = False


LLADA = ModelFamily("llada", "AutoModel", False, 126336, "<|eot_id|>", needs_remote_code=True)
DREAM = ModelFamily("dream", "AutoModel", True, 151666, "<|im_end|>", needs_remote_code=True)
OWN = ModelFamily("dllm_gym", "AutoModelForMaskedLM", False, None, "<|eot_id|>")
MASKED_LM = ModelFamily("masked_lm", "AutoModelForMaskedLM", False)

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
        logits = self._forward(tokens, attention_mask, position_ids)
        offset = start - 1 if self.shifted_logits else start
        return logits[:, offset : offset + length]

    def _forward(self, tokens, attention_mask, position_ids) -> torch.Tensor:
        padded = not bool(attention_mask.all())
        if self.family is OWN:
            return self.model(
                tokens, attention_mask=attention_mask, position_ids=position_ids
            ).logits
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
        f"--local-dir /path/to/copy`) and pass model='/path/to/copy' (with "
        f"trust_remote_code=True if it ships its own code), or fill the Hugging Face cache "
        f"(HF_HOME) and run with HF_HUB_OFFLINE=1."
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


def load_model(
    name_or_path: str | os.PathLike = EMBEDDED_MODEL,
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    trust_remote_code: bool | None = None,
) -> DiffusionLM:
    """Load a dLLM and its tokenizer.

    Args:
        name_or_path: ``"embedded"``, a known id (``GSAI-ML/LLaDA-8B-Instruct``,
            ``Dream-org/Dream-v0-Instruct-7B``, ...), a local folder, or the hub id of any
            ``AutoModelForMaskedLM``.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        dtype: ``"auto"`` (bfloat16 on GPU, float32 on CPU), ``"bfloat16"``, ``"float16"``,
            ``"float32"`` or a ``torch.dtype``.
        trust_remote_code: whether code shipped with the model may run. ``None`` allows it
            only for the known ids; a local copy of LLaDA or Dream needs ``True``.

    Raises:
        ModelUnavailableError: the model is not cached and cannot be downloaded, or needs a
            GPU that is not there; the message says how to point at a local copy.
        ValueError: an unknown model name, device or dtype.
    """
    register()
    name = str(name_or_path)
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    known = KNOWN_MODELS.get(name)
    path = EMBEDDED_MODEL_DIR if name == EMBEDDED_MODEL else Path(name).expanduser()

    if name == EMBEDDED_MODEL and not (path / "config.json").is_file():
        raise ModelUnavailableError(
            f"model='embedded': the embedded checkpoint is missing from {path}; reinstall "
            "dllm-gym or train it with scripts/train_embedded_model.py"
        )
    if known is not None:
        if resolved_device.type == "cpu" and str(device) == "auto":
            raise ModelUnavailableError(
                f"model={name!r} has {known.billions_of_parameters:g}B parameters and needs a "
                f"CUDA GPU (about {2 * known.billions_of_parameters:.0f} GB in bfloat16); none "
                f"is visible. Pass device='cpu' to run it on the CPU anyway (about "
                f"{4 * known.billions_of_parameters:.0f} GB of RAM, minutes per forward), or "
                f"use model='embedded' for the tiny CPU model."
            )
        family = known.family
        allow_code = True if trust_remote_code is None else trust_remote_code
        if family.needs_remote_code and not allow_code:
            raise ValueError(
                f"model={name!r} needs its own code; trust_remote_code=False forbids it"
            )
        source = name
    elif path.is_dir():
        family = _family_of_folder(path)
        allow_code = bool(trust_remote_code)
        if family.needs_remote_code and not allow_code:
            raise ValueError(
                f"model={name!r} is a local {family.name} checkpoint whose code ships in the "
                f"folder; pass trust_remote_code=True to allow running it"
            )
        source = str(path)
    elif path.exists():
        raise ValueError(f"model={name!r} is a file; expected a folder saved by save_pretrained")
    else:
        _reject_near_miss(name)
        family, source, allow_code = MASKED_LM, name, bool(trust_remote_code)

    auto_class = AutoModel if family.auto_class == "AutoModel" else AutoModelForMaskedLM
    load_kwargs = {"trust_remote_code": allow_code}
    if source == name and not path.is_dir():
        tokenizer = _from_hub_or_cache(AutoTokenizer, name, "tokenizer", **load_kwargs)
        model = _from_hub_or_cache(
            auto_class, name, "model weights", dtype=resolved_dtype, **load_kwargs
        )
    else:
        tokenizer = AutoTokenizer.from_pretrained(source, **load_kwargs)
        model = auto_class.from_pretrained(source, dtype=resolved_dtype, **load_kwargs)
    model = model.to(resolved_device).eval()
    return wrap_model(name, model, tokenizer, family)


def _family_of_folder(path: Path) -> ModelFamily:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"model={str(path)!r}: the folder has no config.json")
    model_type = json.loads(config_file.read_text()).get("model_type", "")
    return FAMILIES_BY_MODEL_TYPE.get(model_type, MASKED_LM)


def _reject_near_miss(name: str) -> None:
    """A name close to a known one is a typo, not a hub id worth a network round trip."""
    choices = [EMBEDDED_MODEL, *KNOWN_MODELS]
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.75)
    if close or "/" not in name:
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"model={name!r} is not a known model, a local folder or a hub id (owner/name); "
            f"{hint}known models: {choices}"
        )


def wrap_model(
    name: str, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, family: ModelFamily
) -> DiffusionLM:
    """Wrap a loaded ``model`` and ``tokenizer`` of ``family`` as a :class:`DiffusionLM`."""
    config = model.config
    mask_token_id = family.mask_token_id
    if mask_token_id is None:
        mask_token_id = getattr(config, "mask_token_id", None) or tokenizer.mask_token_id
    if mask_token_id is None:
        raise ValueError(f"model={name!r} has no mask token (neither its config nor its tokenizer)")
    eot_token_id = None
    if family.eot_token is not None:
        token_id = tokenizer.convert_tokens_to_ids(family.eot_token)
        if token_id is not None and token_id != tokenizer.unk_token_id:
            eot_token_id = token_id
    eos_token_id = tokenizer.eos_token_id
    if eos_token_id is None and tokenizer.sep_token_id is not None:
        eos_token_id = tokenizer.sep_token_id  # BERT-style masked LMs
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_token_id
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
    )


_SHARED: dict[tuple, DiffusionLM] = {}


def shared_model(
    name_or_path: str | os.PathLike = EMBEDDED_MODEL,
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    trust_remote_code: bool | None = None,
) -> DiffusionLM:
    """:func:`load_model`, loaded once per process for the same arguments.

    Environments use it so that many of them (a ``SyncVectorEnv`` of single envs, say) share
    one copy of the weights; the model is frozen, so sharing it is safe.
    """
    key = (str(name_or_path), str(device), str(dtype), trust_remote_code)
    if key not in _SHARED:
        _SHARED[key] = load_model(
            name_or_path, device=device, dtype=dtype, trust_remote_code=trust_remote_code
        )
    return _SHARED[key]
