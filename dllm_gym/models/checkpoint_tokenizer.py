"""Tokenizers of checkpoint folders, loaded without running code that ships with them.

LLaDA's tokenizer is a plain ``tokenizer.json`` that any ``transformers`` release reads.
Dream's names a ``DreamTokenizer`` in remote code, which is a copy of Qwen2's byte-level BPE:
its ``vocab.json`` and ``merges.txt`` rebuilt here with the ``tokenizers`` library (the
pre-tokenizer regex, NFC normalisation and byte-level decoding of Qwen2), its special tokens
added at the ids its ``tokenizer_config.json`` declares. Both come back as a
``PreTrainedTokenizerFast``, which every supported ``transformers`` release has.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

# Qwen2's pre-tokenizer split (as in its tokenizer and Dream's copy of it).
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_NAMED_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token")


class TokenizerLoadError(ValueError):
    """A folder whose tokenizer files cannot be read without its own code."""


def _content(token: Any) -> str | None:
    """A special token as ``tokenizer_config.json`` writes it: a string or an AddedToken dict."""
    if isinstance(token, dict):
        return token.get("content")
    return token


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _chat_template(path: Path, config: dict[str, Any]) -> str | None:
    template = config.get("chat_template")
    if template is None and (path / "chat_template.jinja").is_file():
        template = (path / "chat_template.jinja").read_text(encoding="utf-8")
    if template is None and (path / "chat_template.json").is_file():
        template = _read_json(path / "chat_template.json").get("chat_template")
    return template


def byte_level_bpe(path: Path, added_tokens: dict[int, dict[str, Any]]) -> Tokenizer:
    """Qwen2's byte-level BPE from ``vocab.json`` and ``merges.txt``, with ``added_tokens``
    (id -> AddedToken fields) placed at their declared ids."""
    vocab, merges = models.BPE.read_file(str(path / "vocab.json"), str(path / "merges.txt"))
    core = Tokenizer(models.BPE(vocab, merges, fuse_unk=False, byte_fallback=False))
    core.normalizer = normalizers.NFC()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    core.decoder = decoders.ByteLevel()
    for token_id in sorted(added_tokens):
        fields = added_tokens[token_id]
        token = AddedToken(
            fields["content"],
            single_word=fields.get("single_word", False),
            lstrip=fields.get("lstrip", False),
            rstrip=fields.get("rstrip", False),
            normalized=fields.get("normalized", False),
            special=fields.get("special", True),
        )
        if fields.get("special", True):
            core.add_special_tokens([token])
        else:
            core.add_tokens([token])
        placed = core.token_to_id(fields["content"])
        if placed != token_id:
            raise TokenizerLoadError(
                f"{path / 'tokenizer_config.json'}: the added token {fields['content']!r} is "
                f"declared at id {token_id} but lands at id {placed} after vocab.json's "
                f"{len(vocab)} entries"
            )
    return core


def load_checkpoint_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    """The tokenizer of a checkpoint folder, without running any code shipped in it."""
    config = _read_json(path / "tokenizer_config.json")
    names = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
    if not any((path / name).is_file() for name in names):
        raise TokenizerLoadError(
            f"model={str(path)!r}: the folder has no tokenizer (none of {list(names)})"
        )
    if "auto_map" not in config:  # a tokenizer class transformers knows: its own loader
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    added = {
        int(token_id): fields
        for token_id, fields in (config.get("added_tokens_decoder") or {}).items()
    }
    if (path / "tokenizer.json").is_file():
        core = Tokenizer.from_file(str(path / "tokenizer.json"))
    elif (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
        core = byte_level_bpe(path, added)
    else:
        raise TokenizerLoadError(
            f"model={str(path)!r}: its tokenizer ({config.get('tokenizer_class')}) is remote "
            "code, and the folder has neither tokenizer.json nor vocab.json + merges.txt to "
            "rebuild it from"
        )
    specials = {key: _content(config[key]) for key in _NAMED_SPECIAL_TOKENS if config.get(key)}
    extra = config.get("additional_special_tokens") or config.get("extra_special_tokens") or []
    extra = [_content(t) for t in extra] if isinstance(extra, list) else []
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        model_max_length=config.get("model_max_length", int(1e30)),
        padding_side=config.get("padding_side", "left"),
        **specials,
    )
    if extra:
        tokenizer.add_special_tokens({"additional_special_tokens": extra})
    tokenizer.chat_template = _chat_template(path, config)
    return tokenizer
