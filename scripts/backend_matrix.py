"""Which model family runs on which backend under the installed transformers, and exactly.

For LLaDA and Dream, builds tiny random-weight checkpoints in the published layouts (config
keys and tensor names of LLaDA-8B-Instruct and Dream-v0-Instruct-7B, with the embedded
model's word tokenizer), then for each backend prints one markdown row:

- loads: whether ``load_model`` succeeds (else the error, shortened);
- padding leak: max |logit difference| between a left-padded row in a batch and the same row
  alone, relative to the largest logit, of the raw model call (what the model itself does);
- vector == single: whether ``gym.make_vec`` (4 rows, prompts of different lengths) and 4
  ``gym.make`` envs stepped with the same seeds and actions give the same tokens, confidences
  and masks at every step (and how many of the compared tokens differ).

The remote backend needs the published code, which the project does not contain: pass
``--code-dir`` with ``llada/`` (``modeling_llada.py``, ``configuration_llada.py``) and
``dream/`` (``modeling_dream.py``, ``configuration_dream.py``) copied from the model repos.

    python scripts/backend_matrix.py --code-dir /path/to/published
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import transformers

import dllm_gym  # noqa: F401  (registers the ids)
from dllm_gym.models.loading import load_model, padding_leak
from dllm_gym.models.tokenizer import build_word_tokenizer, save_portable_tokenizer
from dllm_gym.tasks.arith import vocabulary

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from published_layouts import (  # the test helpers that write the published layouts
    dream_config,
    dream_state,
    llada_config,
    llada_state,
    write_checkpoint,
)

LAYOUTS = {"llada": (llada_config, llada_state), "dream": (dream_config, dream_state)}
ENV = "DLLMUnmask-Arith-v0"


def build(folder: Path, family: str, code_dir: Path | None) -> None:
    tokenizer = build_word_tokenizer(vocabulary())
    config_of, state_of = LAYOUTS[family]
    ids = {"mask_token_id": tokenizer.mask_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = config_of(len(tokenizer), **ids)
    write_checkpoint(folder, config, state_of(config))
    save_portable_tokenizer(tokenizer, folder)
    if family == "dream":  # Dream's from_pretrained reads its generation config too
        generation = {"bos_token_id": ids["eos_token_id"], "eos_token_id": ids["eos_token_id"]}
        (folder / "generation_config.json").write_text(json.dumps(generation))
    if code_dir is not None and (code_dir / family).is_dir():
        for file in (code_dir / family).glob("*.py"):
            shutil.copy(file, folder / file.name)


def rollout(envs, seed: int = 5, steps: int = 12) -> list[np.ndarray]:
    obs, _ = envs.reset(seed=seed)
    seen = []
    taus = np.linspace(0.3, 0.95, envs.num_envs)[:, None]
    for _ in range(steps):
        obs, *_ = envs.step(obs["active"] * (obs["confidence"] >= taus))
        seen.append(obs)
    return seen


def compare_envs(kwargs: dict) -> str:
    vector = gym.make_vec(ENV, num_envs=4, **kwargs)
    single = gym.vector.SyncVectorEnv([lambda: gym.make(ENV, **kwargs)] * 4)
    a, b = rollout(vector), rollout(single)
    tokens = sum(int((x["token"] != y["token"]).sum()) for x, y in zip(a, b, strict=True))
    total = sum(x["token"].size for x in a)
    pairs = list(zip(a, b, strict=True))
    confidence = max(float(np.abs(x["confidence"] - y["confidence"]).max()) for x, y in pairs)
    same = tokens == 0 and confidence <= 1e-5
    return f"{'yes' if same else 'NO'} ({tokens}/{total} tokens differ, conf {confidence:.1e})"


def row(family: str, backend: str, folder: Path) -> str:
    version = transformers.__version__
    kwargs = {"model": str(folder), "backend": backend, "device": "cpu", "trust_remote_code": True}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lm = load_model(folder, device="cpu", backend=backend, trust_remote_code=True)
    except Exception as error:  # the table reports any failure to load
        message = f"{type(error).__name__}: {error}".replace("\n", " ")[:90]
        return f"| {family} | {backend} | {version} | no: {message} | | |"
    grouped = any("ignores attention_mask" in str(w.message) for w in caught)
    leak = padding_leak(lm)
    note = " (ignores the mask: rows grouped by length)" if grouped else ""
    env = compare_envs({**kwargs, "gen_length": 16, "block_length": 8, "obs_features": ["token"]})
    return f"| {family} | {backend} | {version} | yes | {leak:.1e}{note} | {env} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code-dir", type=Path, default=None, help="published code, per family")
    parser.add_argument("--label", default="", help="appended to the family names of this run")
    args = parser.parse_args()
    print(
        "| family | backend | transformers | loads | padding leak (raw model) | vector == single |"
    )
    print("|---|---|---|---|---|---")
    with tempfile.TemporaryDirectory() as tmp:
        for family in LAYOUTS:
            folder = Path(tmp) / family
            build(folder, family, args.code_dir)
            has_code = any(folder.glob("modeling_*.py"))
            backends = ["native"] + (["remote"] if has_code else [])
            for backend in backends:
                print(row(family + args.label, backend, folder), flush=True)
        embedded = "embedded"
        lm = load_model(embedded, device="cpu")
        env = compare_envs(
            {"model": embedded, "device": "cpu", "gen_length": 16, "block_length": 8,
             "obs_features": ["token"]}
        )  # fmt: skip
        print(
            f"| embedded | native | {transformers.__version__} | yes | {padding_leak(lm):.1e} "
            f"| {env} |"
        )


if __name__ == "__main__":
    main()
