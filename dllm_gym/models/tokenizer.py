"""The word-level tokenizer of the embedded model.

A ``tokenizers`` WordPiece tokenizer over the Arith vocabulary: every word and symbol is one
token, numbers are split into digits (``"10"`` -> ``"1"``, ``"@@0"``), anything else is
``[UNK]``. Decoding joins words with spaces and removes the space before punctuation, so
``"Box 4 has 7 + 2 = 9."`` round-trips. Special tokens follow LLaDA's conventions: a mask token,
an end-of-text token that pads the response, an end-of-turn token and a chat template.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
EOT_TOKEN = "<|eot_id|>"
MASK_TOKEN = "<|mdm_mask|>"
UNK_TOKEN = "[UNK]"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, EOT_TOKEN, MASK_TOKEN, UNK_TOKEN, *ROLE_TOKENS)
COMMON_PUNCTUATION = tuple(".,;:!?'\"()$%/+-*=")
# Prefix of a digit that continues a number; not "##", which would swallow GSM8K's "####".
CONTINUATION_PREFIX = "@@"

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}{{ message['content'] | trim }}{{ '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def build_word_tokenizer(words: Iterable[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``words`` plus digits and the special tokens."""
    digits = [str(d) for d in range(10)]
    vocab_list = [
        *SPECIAL_TOKENS,
        *digits,
        *(CONTINUATION_PREFIX + d for d in digits),
        *COMMON_PUNCTUATION,
    ]
    for word in words:
        if word not in vocab_list:
            vocab_list.append(word)
    vocab = {token: i for i, token in enumerate(vocab_list)}
    core = Tokenizer(
        models.WordPiece(
            vocab,
            unk_token=UNK_TOKEN,
            continuing_subword_prefix=CONTINUATION_PREFIX,
            max_input_chars_per_word=32,
        )
    )
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.decoder = decoders.WordPiece(prefix=CONTINUATION_PREFIX, cleanup=True)
    core.add_special_tokens(list(SPECIAL_TOKENS))
    # Symbols of several characters (such as "####") would be split by the pre-tokenizer.
    symbols = [w for w in vocab_list[len(SPECIAL_TOKENS) :] if len(w) > 1 and not w[0].isalnum()]
    core.add_tokens([w for w in symbols if not w.startswith(CONTINUATION_PREFIX)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        pad_token=EOS_TOKEN,
        mask_token=MASK_TOKEN,
        additional_special_tokens=[EOT_TOKEN, *ROLE_TOKENS],
        padding_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_portable_tokenizer(tokenizer: PreTrainedTokenizerFast, folder: str | os.PathLike) -> None:
    """``save_pretrained``, with a ``tokenizer_config.json`` every supported ``transformers``
    reads: transformers 5 writes its own class name (``TokenizersBackend``) and list of
    ``extra_special_tokens``, which 4.x does not know; both read ``PreTrainedTokenizerFast``
    with ``additional_special_tokens``."""
    tokenizer.save_pretrained(folder)
    config_file = Path(folder) / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config.pop("backend", None)
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    extra = config.pop("extra_special_tokens", None)
    if isinstance(extra, list):
        config["additional_special_tokens"] = extra
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
