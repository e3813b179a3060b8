"""Train the embedded dLLM on Arith with the masked-diffusion objective.

The objective is LLaDA's supervised fine-tuning loss: the prompt stays visible; the response,
padded with end-of-text tokens up to the generation length, is masked token by token with
probability ``t ~ U(0, 1)``; the loss is the cross-entropy on masked positions weighted by
``1 / t``. ``--semi-ar-fraction`` mixes in rows masked as semi-autoregressive decoding sees
them (a visible prefix, a partly masked block, a masked tail), which teaches the conditionals
that decoding block by block asks for (block diffusion training). Training is seeded and
resumable: ``--work-dir`` holds the training state, written atomically every
``--checkpoint-every`` steps; running the same command again continues.

    python scripts/train_embedded_model.py --steps 5000 --out dllm_gym/models/embedded

At the end the checkpoint (config, safetensors weights, tokenizer) is written to ``--out``
together with ``training.json`` (the settings, the time taken and the validation curve).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerFast

from agents.arguments import parse_dataclass
from dllm_gym.decoding import decode, threshold_rule, top_k_rule
from dllm_gym.models.architecture import DiffusionTransformerConfig, DiffusionTransformerForMaskedLM
from dllm_gym.models.loading import OWN, wrap_model
from dllm_gym.models.tokenizer import EOT_TOKEN, build_word_tokenizer, save_portable_tokenizer
from dllm_gym.tasks import arith, arith_v1, make_task
from dllm_gym.tasks.arith import ArithTask


@dataclass
class TrainConfig:
    """Hyperparameters of the embedded model's training run."""

    out: str = "dllm_gym/models/embedded"
    """folder the final checkpoint (config, weights, tokenizer, training.json) is written to"""
    work_dir: str = "runs/embedded"
    """folder of the resumable training state and the CSV log"""
    seed: int = 0
    """seed of the data order, the masks and the initialisation"""
    task: str = "arith"
    """the task trained on: "arith" (v0) or "arith-v1" """
    task_seed: int = 0
    """seed of the Arith generator (problem i of a split depends only on it)"""
    task_options: str = ""
    """more keyword arguments of the task, as JSON (for the training and validation problems
    alike), e.g. '{"links": 6, "long_forms": false}' for an Arith-v1 draft"""
    init_from: str = ""
    """warm start: a saved model folder whose weights (and shape) the run starts from"""
    init_layers: int = 0
    """keep only the warm start's first this many transformer blocks (0: all of them); a
    shallower model must write intermediate results down instead of composing them in one
    forward pass"""
    min_steps: int = 2
    """fewest operations of a training problem (shorter chains than the task's make a
    curriculum; validation always decodes the task's own problems, as its ids do)"""
    max_steps: int = 4
    """most operations of a training problem"""
    hidden_size: int = 192
    """model width"""
    num_layers: int = 4
    """transformer blocks"""
    num_heads: int = 4
    """attention heads"""
    intermediate_size: int = 512
    """SwiGLU width"""
    max_length: int = 192
    """longest prompt plus generation the model accepts"""
    gen_lengths: tuple[int, ...] = (32, 48, 64)
    """responses are padded with end-of-text to one of these lengths, drawn per batch"""
    batch_size: int = 64
    """problems per optimisation step"""
    steps: int = 5000
    """optimisation steps"""
    learning_rate: float = 1e-3
    """peak AdamW learning rate"""
    final_learning_rate_ratio: float = 0.05
    """the cosine schedule decays to this fraction of the peak"""
    warmup_steps: int = 200
    """linear warm-up steps"""
    weight_decay: float = 0.01
    """AdamW weight decay (not on norms and embeddings)"""
    grad_clip: float = 1.0
    """gradient-norm clip"""
    mask_eps: float = 1e-3
    """mask probability is (1 - eps) * t + eps, as in LLaDA"""
    semi_ar_fraction: float = 0.0
    """fraction of rows masked as semi-autoregressive decoding sees them: the response before
    a random cut is visible, the ``semi_ar_block`` tokens from the cut are masked with
    probability t, everything after them is masked (0: LLaDA's SFT masking only)"""
    semi_ar_block: int = 16
    """length of the partly masked block of a semi-autoregressive row"""
    trailing_masks: int = 0
    """each batch gets 0 to this many extra masked positions after its padded responses
    (drawn per batch), attended to but outside the loss: long masked tails without a target
    in them, as a generation longer than the training length shows the model (0: none)"""
    eval_every: int = 500
    """steps between validation decodes"""
    eval_problems: int = 200
    """validation problems per evaluation"""
    eval_gen_length: int = 32
    """generation length of the validation decode"""
    eval_block_length: int = 8
    """block length of the validation decode"""
    checkpoint_every: int = 250
    """steps between resumable training states"""
    threads: int = 2
    """torch CPU threads"""
    device: str = "cpu"
    """device to train on (the shipped checkpoint is trained on the CPU)"""
    precision: str = "auto"
    """"fp32", "bf16" (forward and backward under bfloat16 autocast, weights float32), or
    "auto": time both on a training batch at the start and take the faster"""
    extra: dict = field(default_factory=dict)
    """free-form notes stored in training.json"""


# Settings that do not change the training trajectory: a run may resume with other values.
BOOKKEEPING = {
    "out", "work_dir", "eval_every", "eval_problems", "checkpoint_every", "extra", "device",
    "threads",
}  # fmt: skip


def changed_settings(saved: dict, config: TrainConfig) -> list[str]:
    """The settings of ``config`` that change the trajectory of the run ``saved`` (a state's
    settings) was training. A setting missing from ``saved`` was added to the script after it
    was written and counts as its default, the behaviour the script had before it existed."""
    defaults = dataclasses.asdict(TrainConfig())
    return sorted(
        name
        for name, value in dataclasses.asdict(config).items()
        if name not in BOOKKEEPING and saved.get(name, defaults[name]) != value
    )


# The words each trainable task writes; a later version's list extends the earlier one's.
VOCABULARIES = {"arith": arith.vocabulary, "arith-v1": arith_v1.vocabulary}


def build_model(config: TrainConfig, tokenizer) -> DiffusionTransformerForMaskedLM:
    if config.init_from:  # the warm start's shape and weights; the new position limit
        model = DiffusionTransformerForMaskedLM.from_pretrained(config.init_from)
        start = PreTrainedTokenizerFast.from_pretrained(config.init_from).get_vocab()
        vocab = tokenizer.get_vocab()
        if model.config.vocab_size != len(start) or any(
            vocab.get(w) != i for w, i in start.items()
        ):
            raise SystemExit(
                f"--init-from {config.init_from}: expected its vocabulary to be the first "
                f"{len(start)} tokens of the task's {config.task!r} ({len(vocab)} tokens)"
            )
        if len(vocab) > len(start):  # words the task adds: new rows, the others kept
            model.resize_token_embeddings(len(vocab), mean_resizing=True)
        if config.init_layers:
            if not 0 < config.init_layers <= len(model.layers):
                raise SystemExit(
                    f"--init-layers {config.init_layers}: expected 1 to {len(model.layers)} "
                    f"(the blocks of --init-from {config.init_from})"
                )
            model.layers = model.layers[: config.init_layers]
            model.config.num_hidden_layers = config.init_layers
        model.config.max_position_embeddings = config.max_length
        return model
    model_config = DiffusionTransformerConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        max_position_embeddings=config.max_length,
        mask_token_id=tokenizer.mask_token_id,
        eot_token_id=tokenizer.convert_tokens_to_ids(EOT_TOKEN),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return DiffusionTransformerForMaskedLM(model_config)


class Batches:
    """Tokenised training batches: left-padded prompts followed by EOS-padded responses."""

    def __init__(self, task: ArithTask, tokenizer, config: TrainConfig) -> None:
        self.task, self.tokenizer, self.config = task, tokenizer, config
        self.train = task.problems("train")
        self.equals_id = tokenizer.convert_tokens_to_ids("=")
        self.answer_id = tokenizer.convert_tokens_to_ids("####")

    def encode(self, index: int) -> tuple[list[int], list[int]]:
        problem = self.train[index]
        prompt = self.task.format_prompt(problem.question, self.tokenizer)
        response = self.tokenizer(problem.solution, add_special_tokens=False)["input_ids"]
        return prompt, response

    def sample(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        length = int(rng.choice(self.config.gen_lengths))
        pairs = [
            self.encode(int(i)) for i in rng.integers(0, len(self.train), self.config.batch_size)
        ]
        width = max(len(p) for p, _ in pairs)
        tail = 0  # drawn only when set, so a run without trailing masks keeps its batches
        if self.config.trailing_masks:
            tail = int(rng.integers(0, self.config.trailing_masks + 1))
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        ids = torch.full((len(pairs), width + length + tail), pad, dtype=torch.long)
        attention = torch.zeros_like(ids, dtype=torch.bool)
        for row, (prompt, response) in enumerate(pairs):
            if len(response) > length:
                raise ValueError(
                    f"a response of {len(response)} tokens exceeds gen length {length}"
                )
            ids[row, width - len(prompt) : width] = torch.tensor(prompt)
            ids[row, width : width + len(response)] = torch.tensor(response)
            ids[row, width + len(response) : width + length] = eos
            attention[row, width - len(prompt) :] = True
        ids[:, width + length :] = self.tokenizer.mask_token_id
        response_ids = ids[:, width : width + length]
        previous = torch.cat([torch.full_like(response_ids[:, :1], -1), response_ids[:, :-1]], 1)
        kind = torch.zeros_like(response_ids)  # 0 other, 1 result after "=", 2 final answer
        kind[previous == self.equals_id] = 1
        kind[previous == self.answer_id] = 2
        return {"ids": ids, "attention": attention, "width": width, "length": length, "kind": kind}


def masked_diffusion_loss(
    model,
    batch,
    generator: torch.Generator,
    eps: float,
    mask_id: int,
    semi_ar_fraction: float = 0.0,
    semi_ar_block: int = 16,
):
    """LLaDA's SFT loss on ``batch``; a ``semi_ar_fraction`` of its rows is masked as
    semi-autoregressive decoding sees them (see ``TrainConfig.semi_ar_fraction``)."""
    ids, width = batch["ids"], batch["width"]
    end = width + batch["length"]  # trailing masks after the responses: outside the loss
    response = ids[:, width:end]
    # Noise is drawn on the CPU whatever the device, so a run is the same on any device.
    t = torch.rand(ids.shape[0], generator=generator)
    p_mask = ((1 - eps) * t + eps)[:, None].expand_as(response)
    masked = torch.rand(response.shape, generator=generator) < p_mask
    if semi_ar_fraction > 0:
        rows, length = response.shape
        semi = (torch.rand(rows, generator=generator) < semi_ar_fraction)[:, None]
        cut = torch.randint(0, length, (rows, 1), generator=generator)
        position = torch.arange(length)[None]
        after_block = position >= cut + semi_ar_block
        semi_masked = (position >= cut) & (masked | after_block)
        masked = torch.where(semi, semi_masked, masked)
        # A position masked for certain has mask probability 1 (loss weight 1).
        p_mask = torch.where(semi & after_block, torch.ones_like(p_mask), p_mask)
    noisy = ids.clone()
    noisy[:, width:end][masked] = mask_id
    device = model.device
    noisy, response = noisy.to(device), response.to(device)
    masked, p_mask = masked.to(device), p_mask.to(device)
    logits = model(noisy, attention_mask=batch["attention"].to(device)).logits[:, width:end]
    token_loss = F.cross_entropy(logits[masked].float(), response[masked], reduction="none")
    loss = (token_loss / p_mask[masked]).sum() / (response.shape[0] * response.shape[1])
    with torch.no_grad():
        correct = logits[masked].argmax(-1) == response[masked]
        kinds = batch["kind"].to(device)[masked]
        stats = {
            f"acc_{name}": correct[kinds == k].float().mean().item()
            if (kinds == k).any()
            else float("nan")
            for k, name in enumerate(("other", "result", "answer"))
        }
    return loss, stats


def learning_rate(config: TrainConfig, step: int) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    floor = config.final_learning_rate_ratio
    return config.learning_rate * (
        floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    )


@torch.no_grad()
def evaluate(model, tokenizer, task: ArithTask, config: TrainConfig) -> dict[str, float]:
    model.eval()
    lm = wrap_model("training", model, tokenizer, OWN)
    problems = task.problems("validation")[: config.eval_problems]
    prompts = [task.format_prompt(p.question, tokenizer) for p in problems]
    results = {}
    for label, rule, block_length in (
        ("top1", top_k_rule(config.eval_block_length), config.eval_block_length),
        ("thr0.9", threshold_rule(0.9), config.eval_block_length),
        ("l2r", top_k_rule(1), 1),  # left to right: blocks of one position
    ):
        out = decode(
            lm,
            prompts,
            rule,
            gen_length=config.eval_gen_length,
            block_length=block_length,
        )
        correct = [
            task.is_correct(lm.decode_generation(g), p.reference)
            for g, p in zip(out.generations, problems, strict=False)
        ]
        results[f"acc_{label}"] = float(np.mean(correct))
        results[f"nfe_{label}"] = float(out.nfe.float().mean())
    model.train()
    return results


def choose_precision(model, batch, generator, config: TrainConfig, mask_id: int) -> dict:
    """Seconds of a forward and backward pass on ``batch`` in float32 and under bfloat16
    autocast (median of 3 after a warm-up; the gradients are discarded), and the choice:
    ``config.precision``, or the faster where it is "auto"."""
    seconds = {}
    device_type = torch.device(config.device).type
    for name in ("fp32", "bf16"):
        times = []
        for repeat in range(4):
            start = time.perf_counter()
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=name == "bf16"):
                loss, _ = masked_diffusion_loss(
                    model,
                    batch,
                    torch.Generator().manual_seed(repeat),
                    config.mask_eps,
                    mask_id,
                    config.semi_ar_fraction,
                    config.semi_ar_block,
                )
            loss.backward()
            model.zero_grad(set_to_none=True)
            if repeat:
                times.append(time.perf_counter() - start)
        seconds[name] = float(np.median(times))
    chosen = config.precision
    if chosen == "auto":
        chosen = min(seconds, key=seconds.get)
    print(
        f"step time: fp32 {seconds['fp32']:.3f} s, bf16 autocast {seconds['bf16']:.3f} s; "
        f"training in {chosen}",
        flush=True,
    )
    return {"seconds": seconds, "chosen": chosen}


def atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(model, tokenizer, out: Path, summary: dict) -> None:
    """Write the model folder atomically: build it beside ``out``, then swap it in."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    save_portable_tokenizer(tokenizer, tmp)
    (tmp / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    keep = []
    if out.exists():
        keep = [p for p in out.iterdir() if p.name not in {q.name for q in tmp.iterdir()}]
        for extra in keep:  # files written by hand beside the checkpoint (the model card)
            shutil.copy2(extra, tmp / extra.name)
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def describe_hardware(config: TrainConfig) -> str:
    if config.device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(config.device)}, torch {torch.__version__}"
    return f"{config.threads} threads of {os.cpu_count()} CPU cores, torch {torch.__version__}"


def main(config: TrainConfig) -> None:
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    work = Path(config.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    if config.task not in VOCABULARIES:
        raise SystemExit(f"--task {config.task!r}: expected one of {sorted(VOCABULARIES)}")
    tokenizer = build_word_tokenizer(VOCABULARIES[config.task]())
    try:
        options = json.loads(config.task_options or "{}")
        task = make_task(
            config.task, seed=config.task_seed, min_steps=config.min_steps,
            max_steps=config.max_steps, **options,
        )  # fmt: skip
        validation_task = make_task(config.task, seed=config.task_seed, **options)
    except (ValueError, TypeError) as error:
        raise SystemExit(f"--task-options {config.task_options!r}: {error}") from None
    model = build_model(config, tokenizer).to(config.device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.learning_rate,
        betas=(0.9, 0.98),
    )
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    step, elapsed, curve = 0, 0.0, []
    state_path = work / "state.pt"
    if state_path.exists():
        state = torch.load(state_path, weights_only=False, map_location=config.device)
        changed = changed_settings(state["config"], config)
        if changed:
            raise SystemExit(
                f"{state_path} was written with other {changed}; use another --work-dir"
            )
        model.load_state_dict(state["model"])  # onto the model's device
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["numpy_rng"]
        generator.set_state(state["torch_rng"].cpu())
        step, elapsed, curve = state["step"], state["elapsed"], state["curve"]
        precision = state["precision"]
        print(f"resumed from {state_path} at step {step}")
    batches = Batches(task, tokenizer, config)
    if step == 0:
        precision = choose_precision(
            model, batches.sample(np.random.default_rng(config.seed + 1)), generator, config,
            tokenizer.mask_token_id,
        )  # fmt: skip
    log_path = work / "log.csv"
    log_fields = ["step", "seconds", "lr", "loss", "acc_other", "acc_result", "acc_answer"]
    if not log_path.exists():
        with log_path.open("w", newline="") as f:
            csv.writer(f).writerow(log_fields)
    model.train()
    started = time.time() - elapsed
    window: list[dict] = []
    while step < config.steps:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        batch = batches.sample(rng)
        with torch.autocast(
            torch.device(config.device).type,
            dtype=torch.bfloat16,
            enabled=precision["chosen"] == "bf16",
        ):
            loss, stats = masked_diffusion_loss(
                model,
                batch,
                generator,
                config.mask_eps,
                tokenizer.mask_token_id,
                config.semi_ar_fraction,
                config.semi_ar_block,
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        step += 1
        window.append({"loss": loss.item(), **stats})
        if step % 50 == 0:
            means = {k: float(np.nanmean([w[k] for w in window])) for k in window[0]}
            window = []
            row = [
                step,
                round(time.time() - started, 1),
                group["lr"],
                *(round(means[k], 4) for k in log_fields[3:]),
            ]
            with log_path.open("a", newline="") as f:
                csv.writer(f).writerow(row)
            print(dict(zip(log_fields, row, strict=False)), flush=True)
        if step % config.eval_every == 0 or step == config.steps:
            scores = evaluate(model, tokenizer, validation_task, config)
            curve.append(
                {"step": step, "minutes": round((time.time() - started) / 60, 1), **scores}
            )
            print("validation", curve[-1], flush=True)
        if step % config.checkpoint_every == 0 or step == config.steps:
            atomic_torch_save(
                {
                    "config": dataclasses.asdict(config),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "numpy_rng": rng.bit_generator.state,
                    "torch_rng": generator.get_state(),
                    "step": step,
                    "elapsed": time.time() - started,
                    "curve": curve,
                    "precision": precision,
                },
                state_path,
            )
    summary = {
        "settings": dataclasses.asdict(config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "minutes": round((time.time() - started) / 60, 1),
        "hardware": describe_hardware(config),
        "precision": precision,
        "validation_curve": curve,
    }
    save_checkpoint(model.cpu(), tokenizer, Path(config.out), summary)
    print(f"saved {config.out}")


if __name__ == "__main__":
    main(parse_dataclass(TrainConfig, description=__doc__))
