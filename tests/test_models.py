import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

from dllm_gym.decoding import decode, top_k_rule
from dllm_gym.models.architecture import DiffusionTransformerConfig, DiffusionTransformerForMaskedLM
from dllm_gym.models.loading import (
    DREAM,
    OWN,
    DiffusionLM,
    ModelUnavailableError,
    load_model,
    resolve_dtype,
)


def test_saved_model_round_trips_through_from_pretrained(tiny_model_dir, tiny_lm):
    reloaded = AutoModelForMaskedLM.from_pretrained(tiny_model_dir)
    assert isinstance(reloaded, DiffusionTransformerForMaskedLM)
    assert AutoConfig.from_pretrained(tiny_model_dir).model_type == "dllm_gym_diffusion_transformer"
    ids = torch.tensor([[5, 30, 31, 9, 40, 3, 3]])
    assert torch.equal(reloaded(ids).logits, tiny_lm.model(ids).logits)
    for name, tensor in tiny_lm.model.state_dict().items():
        assert torch.equal(tensor, reloaded.state_dict()[name]), name


def test_wrapper_knows_the_model(tiny_lm, word_tokenizer):
    assert tiny_lm.family is OWN and not tiny_lm.shifted_logits
    assert tiny_lm.mask_token_id == word_tokenizer.mask_token_id
    assert tiny_lm.eos_token_id == word_tokenizer.eos_token_id
    assert tiny_lm.eot_token_id == word_tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert tiny_lm.max_length == 160
    assert tiny_lm.dtype == torch.float32 and tiny_lm.device.type == "cpu"
    assert "<|assistant|>" in tiny_lm.chat_template
    text_ids = word_tokenizer("Box 2 has 3 + 4 = 7.", add_special_tokens=False)["input_ids"]
    stop = [tiny_lm.eot_token_id, *word_tokenizer("Box", add_special_tokens=False)["input_ids"]]
    assert tiny_lm.decode_generation(text_ids + stop) == "Box 2 has 3 + 4 = 7."


def test_attention_is_bidirectional_and_padding_is_invisible(tiny_lm):
    model = tiny_lm.model
    ids = torch.tensor([[5, 30, 31, 9, 40, 3, 3, 3]])
    changed = ids.clone()
    changed[0, -1] = 41
    # A later token changes the logits of the first position: no causal mask.
    assert not torch.allclose(model(ids).logits[0, 0], model(changed).logits[0, 0])
    # Left padding with an attention mask leaves the real tokens' logits as they were.
    padded = torch.cat([torch.full((1, 3), 17), ids], dim=1)
    mask = torch.tensor([[0, 0, 0] + [1] * ids.shape[1]])
    expected = model(ids).logits
    scale = expected.abs().max().item()
    torch.testing.assert_close(
        model(padded, attention_mask=mask).logits[:, 3:], expected, rtol=0, atol=1e-5 * scale
    )


def test_loader_resolves_device_and_dtype(tiny_model_dir):
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    lm = load_model(tiny_model_dir, device="auto", dtype="bfloat16")
    assert lm.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype='float8'"):
        load_model(tiny_model_dir, dtype="float8")
    with pytest.raises(ValueError, match="device='gpu0'"):
        load_model(tiny_model_dir, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ModelUnavailableError, match="no CUDA GPU"):
            load_model(tiny_model_dir, device="cuda")


def test_unknown_model_names_fail_clearly(tmp_path):
    with pytest.raises(
        ValueError, match=r"model='embeded' is not a known model.*did you mean 'embedded'"
    ):
        load_model("embeded")
    with pytest.raises(
        ValueError, match=r"model='GSAI-ML/LLaDA-8B-Instrct'.*'GSAI-ML/LLaDA-8B-Instruct'"
    ):
        load_model("GSAI-ML/LLaDA-8B-Instrct")
    with pytest.raises(ValueError, match="model='llada'"):
        load_model("llada")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"has no config\.json"):
        load_model(empty)


def test_model_not_in_cache_and_offline_says_how_to_point_at_a_local_copy(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(
        ModelUnavailableError, match=r"not in the Hugging Face cache.*model='/path/to/copy'"
    ):
        load_model("someone/masked-lm-not-here", device="cpu")
    with pytest.raises(ModelUnavailableError, match=r"not in the Hugging Face cache"):
        load_model("GSAI-ML/LLaDA-8B-Instruct", device="cpu")


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message shown when no GPU is present"
)
def test_known_8b_model_without_a_gpu_fails_before_loading():
    with pytest.raises(
        ModelUnavailableError, match=r"8B parameters and needs a CUDA GPU.*device='cpu'"
    ):
        load_model("GSAI-ML/LLaDA-8B-Instruct")
    with pytest.raises(ModelUnavailableError, match="Dream-org/Dream-v0-Instruct-7B"):
        load_model("Dream-org/Dream-v0-Instruct-7B")


def test_local_checkpoint_needs_permission_to_run_its_code(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llada", "auto_map": {}}))
    with pytest.raises(ValueError, match=r"backend='remote'.*trust_remote_code=True"):
        load_model(tmp_path, backend="remote")


class OracleModel(torch.nn.Module):
    """Predicts a fixed target sequence with certainty; ``shift`` emits position i's logits
    at i - 1, as Dream does. Called the way Dream's own generation code calls it."""

    def __init__(self, targets: torch.Tensor, vocab: int, shift: bool) -> None:
        super().__init__()
        self.targets, self.vocab, self.shift = targets, vocab, shift
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        logits = torch.nn.functional.one_hot(self.targets, self.vocab).float() * 20.0
        logits = logits[: input_ids.shape[1]].expand(input_ids.shape[0], -1, -1)
        if self.shift:
            logits = torch.cat([logits[:, 1:], logits[:, -1:]], dim=1)
        return type("Output", (), {"logits": logits})()


def test_shifted_logit_models_reveal_the_right_positions(word_tokenizer):
    prompt = [5, 30, 31]
    answer = [40, 41, 42, 43, 44, 45]
    targets = torch.tensor(prompt + answer)

    def wrapper(shift: bool, family) -> DiffusionLM:
        return DiffusionLM(
            name="oracle",
            model=OracleModel(targets, len(word_tokenizer), shift),
            tokenizer=word_tokenizer,
            family=family,
            mask_token_id=3,
            eos_token_id=1,
            eot_token_id=None,
            pad_token_id=1,
            max_length=None,
            backend="remote",
        )

    aligned = decode(wrapper(True, DREAM), [prompt], top_k_rule(2), gen_length=6, block_length=6)
    assert aligned.generations[0].tolist() == answer
    # Read without the shift, the same model would write every token one position early.
    misread = decode(wrapper(True, OWN), [prompt], top_k_rule(2), gen_length=6, block_length=6)
    assert misread.generations[0].tolist()[:5] == answer[1:]
    unshifted = decode(wrapper(False, OWN), [prompt], top_k_rule(2), gen_length=6, block_length=6)
    assert unshifted.generations[0].tolist() == answer


def test_config_validates_head_sizes():
    with pytest.raises(ValueError, match="not divisible"):
        DiffusionTransformerConfig(hidden_size=30, num_attention_heads=4)


def test_saved_tokenizer_config_is_readable_by_transformers_4_and_5(tmp_path, word_tokenizer):
    from dllm_gym.models.loading import EMBEDDED_MODEL_DIR
    from dllm_gym.models.tokenizer import save_portable_tokenizer

    save_portable_tokenizer(word_tokenizer, tmp_path)
    for folder in (tmp_path, EMBEDDED_MODEL_DIR):
        config = json.loads((folder / "tokenizer_config.json").read_text())
        # transformers 4.x knows neither TokenizersBackend nor a list of extra_special_tokens.
        assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
        assert "extra_special_tokens" not in config
        assert "<|eot_id|>" in config["additional_special_tokens"]
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "Box 1 has 17 + 2 = 19. #### 5"
    assert reloaded(text)["input_ids"] == word_tokenizer(text)["input_ids"]
    assert reloaded.convert_tokens_to_ids("<|eot_id|>") == word_tokenizer.convert_tokens_to_ids(
        "<|eot_id|>"
    )
    assert reloaded.chat_template == word_tokenizer.chat_template
