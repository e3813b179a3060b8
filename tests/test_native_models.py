"""The native LLaDA and Dream backend: published layouts load by name mapping and compute what
the published code computes; batching stays exact on every backend; bad checkpoints and
arguments fail clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from published_layouts import (
    dream_config,
    dream_state,
    llada_config,
    llada_state,
    reference_dream_logits,
    reference_llada_logits,
    write_checkpoint,
)
from safetensors.torch import load_file, save_file

from dllm_gym.models.checkpoint_tokenizer import TokenizerLoadError, load_checkpoint_tokenizer
from dllm_gym.models.loading import DREAM, LLADA, load_model, padding_leak
from dllm_gym.models.native import CheckpointError

LAYOUTS = {
    "llada": (llada_config, llada_state, reference_llada_logits),
    "dream": (dream_config, dream_state, reference_dream_logits),
}
STANDIN_CODE = Path(__file__).with_name("standin_remote_llada.py")


def make_checkpoint(folder: Path, family: str, tokenizer, **overrides) -> tuple[dict, dict]:
    """A tiny published-layout checkpoint of ``family`` with ``tokenizer``; (config, state)."""
    config_of, state_of, _ = LAYOUTS[family]
    ids = {"mask_token_id": tokenizer.mask_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = config_of(len(tokenizer), **(ids | overrides))
    state = state_of(config)
    write_checkpoint(folder, config, state)
    tokenizer.save_pretrained(folder)
    if family == "dream":  # as published: the tokenizer class is remote code
        tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
        tokenizer_config["tokenizer_class"] = "DreamTokenizer"
        tokenizer_config["auto_map"] = {
            "AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]
        }
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return config, state


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, word_tokenizer) -> dict[str, tuple[Path, dict, dict]]:
    root = tmp_path_factory.mktemp("published")
    return {
        family: (root / family, *make_checkpoint(root / family, family, word_tokenizer))
        for family in LAYOUTS
    }


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_native_backend_computes_the_published_forward(checkpoints, family):
    folder, config, state = checkpoints[family]
    lm = load_model(folder, device="cpu")
    assert lm.backend == "native" and lm.family is {"llada": LLADA, "dream": DREAM}[family]
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, config["vocab_size"], (3, 17), generator=generator)
    expected = LAYOUTS[family][2](state, config, ids)
    got = lm.model(ids).logits
    relative = (got - expected).abs().max() / expected.abs().max()
    assert relative <= 1e-5, f"{family}: relative logit difference {relative:.2e}"
    assert expected.abs().max() > 3  # sharp weights: the comparison is not of near-zeros


def test_dream_logits_are_aligned_as_dream_generation_aligns_them(checkpoints):
    folder, config, state = checkpoints["dream"]
    lm = load_model(folder, device="cpu")
    assert lm.shifted_logits
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(0, config["vocab_size"], (2, 12), generator=generator)
    mask = torch.ones_like(ids, dtype=torch.bool)
    positions = torch.arange(12).expand(2, 12)
    got = lm.generation_logits(ids, mask, positions, start=5, length=7)
    reference = reference_dream_logits(state, config, ids)
    # Dream's generation: logits = cat([logits[:, :1], logits[:, :-1]]), position i <- i - 1.
    torch.testing.assert_close(got, reference[:, 4:11], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_native_backend_batches_padded_rows_exactly(checkpoints, family):
    lm = load_model(checkpoints[family][0], device="cpu")
    assert padding_leak(lm) < 1e-5


def test_model_type_is_case_insensitive_and_special_ids_come_from_the_config(
    tmp_path, word_tokenizer
):
    # A derivative that moved its mask token: the config's id wins over the family constant.
    moved_mask = word_tokenizer.convert_tokens_to_ids("<|user|>")
    folder = tmp_path / "derivative"
    make_checkpoint(folder, "dream", word_tokenizer, model_type="DREAM", mask_token_id=moved_mask)
    lm = load_model(folder, device="cpu")
    assert lm.family is DREAM and lm.mask_token_id == moved_mask != DREAM.mask_token_id
    assert lm.eos_token_id == word_tokenizer.eos_token_id
    # The word tokenizer has no "<|im_end|>", and the family's id is outside its vocabulary.
    assert lm.eot_token_id is None


def test_checkpoint_with_a_missing_tensor_names_it_and_the_index(checkpoints, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(checkpoints["llada"][0], folder)
    name = "model.transformer.blocks.1.up_proj.weight"
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard = folder / index["weight_map"][name]
    tensors = load_file(shard)
    del tensors[name]
    save_file(tensors, shard)
    with pytest.raises(
        CheckpointError, match=rf"lacks the tensor '{name}': {shard.name}, where .*index\.json"
    ):
        load_model(folder, device="cpu")
    # Dropped from the index too: still named.
    del index["weight_map"][name]
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=rf"lacks the tensor '{name}': neither"):
        load_model(folder, device="cpu")


def test_checkpoint_with_a_misshaped_tensor_names_it_and_its_file(checkpoints, tmp_path):
    folder = tmp_path / "misshaped"
    shutil.copytree(checkpoints["dream"][0], folder)
    name = "model.layers.0.self_attn.k_proj.bias"
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard = folder / index["weight_map"][name]
    tensors = load_file(shard)
    tensors[name] = torch.zeros(5)
    save_file(tensors, shard)
    with pytest.raises(CheckpointError, match=rf"'{name}' in {shard.name} has shape \(5,\)"):
        load_model(folder, device="cpu")


def test_unsupported_published_options_are_refused_by_name(tmp_path, word_tokenizer):
    folder = tmp_path / "biased"
    make_checkpoint(folder, "llada", word_tokenizer, include_bias=True)
    with pytest.raises(CheckpointError, match=r"include_bias=True.*backend='remote'"):
        load_model(folder, device="cpu")


def test_bad_backend_arguments_fail_clearly(checkpoints, tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match=r"backend='fast' is not valid.*'native', 'remote'"):
        load_model(checkpoints["llada"][0], backend="fast")
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match=r"backend='native' runs LLaDA, Dream"):
        load_model(other, backend="native")
    with pytest.raises(ValueError, match=r"backend='remote'.*own architecture"):
        load_model(tiny_model_dir, backend="remote")
    with pytest.raises(ValueError, match=r"backend='remote'.*trust_remote_code=True"):
        load_model(checkpoints["llada"][0], backend="remote")
    with pytest.raises(ValueError, match="backend='fast'"):
        gym.make("DLLMUnmask-Arith-v0", backend="fast")


def test_folder_without_a_tokenizer_fails_clearly(checkpoints, tmp_path):
    folder = tmp_path / "no_tokenizer"
    folder.mkdir()
    for file in checkpoints["llada"][0].glob("model*"):
        shutil.copy(file, folder)
    shutil.copy(checkpoints["llada"][0] / "config.json", folder)
    with pytest.raises(TokenizerLoadError, match="has no tokenizer"):
        load_model(folder, device="cpu")


def test_dream_byte_level_bpe_is_rebuilt_without_its_remote_code(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    corpus = ["Janet's ducks lay 16 eggs per day.", "She eats 3 for breakfast!\n", "1,250 + 7.5"]
    trainer_tokenizer = Tokenizer(models.BPE())
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    trainer_tokenizer.train_from_iterator(corpus * 20, trainer)
    plain = tmp_path / "plain"
    plain.mkdir()
    trainer_tokenizer.model.save(str(plain))  # vocab.json and merges.txt
    size = trainer_tokenizer.get_vocab_size()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"]
    dream = tmp_path / "dream"
    shutil.copytree(plain, dream)
    (dream / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "added_tokens_decoder": {
                    str(size + i): {"content": token, "special": True}
                    for i, token in enumerate(specials)
                },
                "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
                "tokenizer_class": "DreamTokenizer",
                "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "mask_token": "<|mask|>",
                "chat_template": "{% for m in messages %}<|im_start|>{{ m['content'] }}"
                "<|im_end|>{% endfor %}",
            }
        )
    )
    ours = load_checkpoint_tokenizer(dream)
    reference = Qwen2Tokenizer.from_pretrained(plain)
    reference.add_special_tokens({"additional_special_tokens": specials[1:]})
    for text in [*corpus, "Ünïcode  spaces\n\n and 12345 digits", "<|im_start|>hi<|im_end|>"]:
        expected = reference(text, add_special_tokens=False)["input_ids"]
        assert ours(text, add_special_tokens=False)["input_ids"] == expected, text
        assert ours.decode(expected) == reference.decode(expected)
    assert ours.mask_token_id == size + 3 and ours.eos_token_id == size
    assert "<|im_start|>" in ours.chat_template


def test_dream_added_tokens_at_the_wrong_ids_are_refused(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(["abc abd"] * 5, trainers.BpeTrainer(vocab_size=300))
    tokenizer.model.save(str(tmp_path))
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "added_tokens_decoder": {"9999": {"content": "<|mask|>", "special": True}},
                "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
            }
        )
    )
    with pytest.raises(TokenizerLoadError, match=r"'<\|mask\|>' is declared at id 9999"):
        load_checkpoint_tokenizer(tmp_path)


# ------------------------------------------------------------------ the remote backend
def left_padded_batch(seed: int, length: int, pads: tuple[int, ...]):
    """Random tokens of ``len(pads)`` rows with ``pads[r]`` left-padding columns in row
    ``r``: tokens, attention mask and position ids counting from each row's first token."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(5, 60, (len(pads), length), generator=generator)
    mask = torch.ones_like(tokens, dtype=torch.bool)
    for row, pad in enumerate(pads):
        mask[row, :pad] = False
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    return tokens, mask, positions


@pytest.fixture(scope="module")
def standin_folder(checkpoints, tmp_path_factory) -> Path:
    """LLaDA's published layout with a stand-in of its remote code (ignores attention_mask)."""
    folder = tmp_path_factory.mktemp("standin") / "llada_remote"
    shutil.copytree(checkpoints["llada"][0], folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "modeling_llada.LLaDAConfig",
        "AutoModel": "modeling_llada.LLaDAModelLM",
    }
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copy(STANDIN_CODE, folder / "modeling_llada.py")
    return folder


def test_remote_code_that_ignores_the_mask_is_detected_and_batched_exactly(standin_folder):
    with pytest.warns(UserWarning, match=r"ignores attention_mask.*separate forward passes"):
        remote = load_model(standin_folder, device="cpu", backend="remote", trust_remote_code=True)
    native = load_model(standin_folder, device="cpu")
    assert remote.backend == "remote" and not remote.honours_attention_mask
    assert padding_leak(remote) > 1e-2 and padding_leak(native) < 1e-5

    tokens, mask, positions = left_padded_batch(seed=3, length=10, pads=(4, 1, 0))
    batched = remote.generation_logits(tokens, mask, positions, start=6, length=4)
    for row in range(3):
        pad = int((~mask[row]).sum())
        alone = remote.model(tokens[row : row + 1, pad:]).logits[0, 6 - pad : 10 - pad]
        torch.testing.assert_close(batched[row], alone, rtol=1e-5, atol=1e-5)
        expected_native = native.generation_logits(tokens, mask, positions, start=6, length=4)
        torch.testing.assert_close(batched[row], expected_native[row], rtol=1e-4, atol=1e-4)
    # Without the grouping, the padded rows would be wrong: the check above can fail.
    ungrouped = remote.call_model(tokens, mask, positions)[:, 6:10]
    assert (ungrouped[0] - batched[0]).abs().max() > 1e-2


@pytest.mark.parametrize("family", ["llada", "dream", "embedded"])
@torch.no_grad()
def test_cached_windows_predict_what_the_full_forward_predicts(checkpoints, family):
    """DiffusionLM's cache API on an unchanged batch: rows filled at different times, then a
    window per row (a dual-cache block, and a prefix-cache window running to the end, whose
    columns past the end are clamped). Dream's logits are shifted by one: its window also
    recomputes the column before."""
    lm = load_model("embedded" if family == "embedded" else checkpoints[family][0], device="cpu")
    assert lm.supports_cache
    tokens, mask, positions = left_padded_batch(seed=4, length=24, pads=(5, 0, 2))
    start, length = 8, 16  # the generation: columns 8..23
    expected = lm.generation_logits(tokens, mask, positions, start=start, length=length)
    cache = lm.new_cache(3, 24)
    for rows in (torch.tensor([2, 0]), torch.tensor([1])):
        filled = lm.fill_cache(
            cache, rows, tokens[rows], mask[rows], positions[rows], start=start, length=length
        )
        torch.testing.assert_close(filled, expected[rows], rtol=1e-5, atol=1e-5)
    rows = torch.tensor([0, 1, 2])
    block = torch.tensor([8, 16, 12])  # each row's block starts at its own column
    window = lm.window_logits(cache, rows, tokens, positions, block, width=4)
    gathered = (block - start)[:, None] + torch.arange(4)
    torch.testing.assert_close(window, expected[rows[:, None], gathered], rtol=1e-4, atol=1e-4)
    to_end = lm.window_logits(cache, rows, tokens, positions, block, width=24 - 8)
    inside = (block - start)[:, None] + torch.arange(16) < length
    clamped = ((block - start)[:, None] + torch.arange(16)).clamp(max=length - 1)
    torch.testing.assert_close(
        to_end[inside], expected[rows[:, None], clamped][inside], rtol=1e-4, atol=1e-4
    )


def test_a_backend_that_cannot_hold_a_cache_says_so(standin_folder):
    with pytest.warns(UserWarning):
        remote = load_model(standin_folder, device="cpu", backend="remote", trust_remote_code=True)
    assert not remote.supports_cache
    with pytest.raises(ValueError, match=r"cache: the 'remote' backend .* backend='native'"):
        remote.new_cache(2, 10)


ENV_SETTINGS = {"gen_length": 16, "block_length": 8, "obs_features": ["token"]}


def rollout(envs, seed: int, steps: int) -> list[np.ndarray]:
    """Observations of a vector env stepped with mixed densities of a confidence rule."""
    obs, _ = envs.reset(seed=seed)
    seen = [obs["confidence"].copy()]
    taus = np.linspace(0.3, 0.95, envs.num_envs)[:, None]
    for _ in range(steps):
        obs, _, _, _, _ = envs.step(obs["active"] * (obs["confidence"] >= taus))
        seen += [obs["confidence"].copy(), obs["mask"].copy(), obs["token"].copy()]
    return seen


@pytest.mark.filterwarnings("ignore:.*ignores attention_mask")
@pytest.mark.parametrize("model", ["llada", "dream", "embedded", "llada-remote"])
def test_vector_env_equals_single_envs_with_mixed_prompt_lengths(
    model, checkpoints, standin_folder
):
    kwargs = dict(ENV_SETTINGS, model="embedded", device="cpu")
    if model in LAYOUTS:
        kwargs["model"] = str(checkpoints[model][0])
    elif model == "llada-remote":
        kwargs |= {"model": str(standin_folder), "backend": "remote", "trust_remote_code": True}
    num_envs, env_id = 4, "DLLMUnmask-Arith-v0"
    vector = gym.make_vec(env_id, num_envs=num_envs, **kwargs)
    single = gym.vector.SyncVectorEnv([lambda: gym.make(env_id, **kwargs)] * num_envs)
    lengths = {len(p) for p in vector.unwrapped.workload.prompts(range(12))}
    assert len(lengths) > 1, "the test needs prompts of different lengths"
    a, b = rollout(vector, seed=5, steps=12), rollout(single, seed=5, steps=12)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
    vector.close()
    single.close()


def test_known_id_loads_natively_from_the_hugging_face_cache(checkpoints, tmp_path, monkeypatch):
    """A cached snapshot of a known id (the cache's own layout: refs/main names a snapshot
    folder) loads on the native backend without running code and without the network."""
    folder, config, state = checkpoints["llada"]
    hub = tmp_path / "hub"
    repo = hub / "models--GSAI-ML--LLaDA-8B-Instruct"
    revision = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(folder, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    lm = load_model("GSAI-ML/LLaDA-8B-Instruct", device="cpu")
    assert lm.backend == "native" and lm.family is LLADA
    ids = torch.randint(0, config["vocab_size"], (1, 9), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(
        lm.model(ids).logits, reference_llada_logits(state, config, ids), rtol=1e-5, atol=1e-4
    )
