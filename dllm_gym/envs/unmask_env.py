"""``UnmaskEnv``: decoding one prompt with a masked diffusion LM, one reveal decision a step."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from dllm_gym.decoding import DecodingState
from dllm_gym.envs import core, rendering
from dllm_gym.envs.settings import EnvSettings


class UnmaskEnv(gym.Env[dict, np.ndarray]):
    """
    ## Description

    A masked diffusion language model (dLLM) answers a problem by starting from a buffer of
    `L` mask tokens after the prompt and, at each step, running one forward pass (one NFE) and
    replacing some masked positions by its predicted tokens. The agent decides *which*
    positions to reveal at each step. Revealing one position per step costs `L` forward passes;
    revealing many at once is fast but reveals dependent tokens independently and breaks the
    answer. The reward pays a correct answer, discounted by the forward passes it took, as in
    "Learning Unmasking Policies for Diffusion Language Models" (arXiv 2512.09106).

    Decoding is semi-autoregressive: the `L` positions form blocks of `block_length`, only the
    current block may be revealed, and the next block opens when the current one is complete
    (`block_length == L` is full diffusion).

    ## Action Space

    `MultiBinary(L)`: 1 = reveal this position now, with the token predicted by the last
    forward pass (the argmax at temperature 0, a Gumbel-max draw in float64 above). Positions
    that are not `active` are ignored. An action that reveals no active position reveals the
    most confident active position (`empty_action="force_top1"`, default) or reveals nothing
    and still costs a forward pass (`empty_action="noop"`, as in the paper's training).

    ## Observation Space

    A flat `Dict`; every entry but `progress` has one value per generation position:

    | key          | space                          | meaning                                 |
    |--------------|--------------------------------|-----------------------------------------|
    | `confidence` | `Box(0, 1, (L,), float32)`     | probability of the token a reveal writes |
    | `mask`       | `MultiBinary(L)`               | 1 where the position is still masked    |
    | `active`     | `MultiBinary(L)`               | 1 where it may be revealed now          |
    | `progress`   | `Box(0, 1, (1,), float32)`     | NFE so far / L                          |
    | `margin`     | `Box(0, 1, (L,), float32)`     | top-1 minus top-2 probability           |
    | `entropy`    | `Box(0, log V, (L,), float32)` | entropy of the prediction, nats         |
    | `token`      | `MultiDiscrete([V] * L)`       | the predicted token ids                 |
    | `kl`         | `Box(0, max, (L,), float32)`   | KL(this prediction, the previous one)   |

    `active` is 1 on the masked positions of the current block. The last four entries are
    present only when `obs_features` asks for them.

    Features are computed from the logits on the model's device; only these arrays reach the
    host. They come from whichever forward pass last computed a position: without a cache,
    the last one, over the whole sequence; with a cache (below), a position outside the
    window of a partial forward keeps the values of the forward that last covered it.

    ## Key/value cache

    `cache="none"` (default) runs every forward over the prompt and all `L` positions.
    `"prefix"` and `"dual"` are Fast-dLLM's block-wise approximate cache (arXiv 2505.22618):
    when a block opens, one *full* forward runs over the whole sequence and stores every
    layer's keys and values; the next forwards in that block are *partial*: `"prefix"` runs
    the open block and everything after it against the cached prompt and finished blocks,
    `"dual"` runs the open block alone against the cached prefix *and* suffix. Cached keys
    and values of positions revealed since the fill are stale, which is the approximation.
    In full diffusion (one block) the cache is filled once per episode; `cache_refresh=k`
    (> 0) runs a full forward again after every `k` partial ones (as dLLM-Cache refreshes),
    in any block. `nfe` counts every forward, full or partial (the reward's cost); the last
    `info` of an episode reports `full_forwards` and `window_forwards` (partial) and the
    `cache` mode. The cache needs the native backend (`backend="remote"` is refused).

    ## Rewards

    0 on every step but the last. On the last step, with `correct` whether the extracted answer
    equals the reference: `multiplicative` (default) `correct * ((L - NFE + 1) / L) ** alpha`
    (NFE clamped to L), or `additive` `correct - alpha * NFE / L`. `alpha = 0` rewards accuracy
    alone.

    ## Starting State

    `reset` draws a problem of the task's split with the env's `np_random` (or takes problem
    `options["index"]`), builds `[prompt | L masks]` and runs the first forward pass (NFE = 1).

    ## Episode End

    1. Termination: no masked position is left.
    2. Truncation: NFE reaches `max_nfe` (default `L`) with masks left; the generation is scored
       as it stands. Under `force_top1` every step reveals a position, so episodes end within
       `L` steps. The registered ids set no `max_episode_steps`, because this cap follows a
       `gen_length` override and a registered `TimeLimit` would not; `gym.make(id,
       max_episode_steps=n)` still adds Gymnasium's `TimeLimit` (and `gym.make_vec(id,
       max_episode_steps=n)` gives the vector env the same cap, truncating at `n` steps).

    A finished episode of `n` steps has NFE = `n`. Its last `info` holds `correct`, `answer`
    (extracted), `reference`, `scorer` (how the task compared them: `number`, `math-verify`,
    `unit-tests`, ...), `text` (the decoded generation), `tokens_per_nfe` and
    `unmask_step` (the step at which each position was revealed, -1 if never: the decoding
    order), `full_forwards`, `window_forwards` and `cache` (see Key/value cache). Every
    `info` holds `nfe`.

    ## Vectorized environment

    `gym.make_vec` builds the native vector environment, `UnmaskVectorEnv`, which advances `N`
    sub-environments with one batched forward pass per step on the same decoding core as this
    env (a row decodes exactly as it would alone):

    ```python
    >>> envs = gym.make_vec(
    ...     "DLLMUnmask-Arith-v0", num_envs=3, vectorization_mode="vector_entry_point"
    ... )
    >>> envs
    UnmaskVectorEnv(DLLMUnmask-Arith-v0, num_envs=3)

    ```

    ## Arguments

    ```python
    >>> import gymnasium as gym
    >>> import dllm_gym
    >>> env = gym.make("DLLMUnmask-Arith-v0", alpha=0.5, obs_features=["entropy"])
    >>> obs, info = env.reset(seed=0)
    >>> sorted(obs)
    ['active', 'confidence', 'entropy', 'mask', 'progress']

    ```

    | Parameter           | Default            | Description                                |
    |---------------------|--------------------|--------------------------------------------|
    | `task`              | `"arith"`          | `"arith"` or `"gsm8k"`                     |
    | `model`             | `"embedded"`       | model name, hub id or local folder         |
    | `device`            | `"auto"`           | `"auto"` (CUDA when present), `"cpu"`, ... |
    | `dtype`             | `"auto"`           | `"auto"` (bf16 on GPU, fp32 on CPU), ...   |
    | `gen_length`        | 48                 | `L`, the generation positions              |
    | `block_length`      | 16                 | positions per block; must divide `L`       |
    | `reward`            | `"multiplicative"` | or `"additive"`                            |
    | `alpha`             | 1.0                | weight of speed in the reward, >= 0        |
    | `split`             | `"test"`           | split of the task the prompts come from    |
    | `data_files`        | None               | GSM8K JSON-lines files (task `gsm8k`)      |
    | `obs_features`      | `[]`               | among `margin`, `entropy`, `token`, `kl`   |
    | `temperature`       | 0.0                | 0 reveals the argmax; above 0 samples      |
    | `empty_action`      | `"force_top1"`     | or `"noop"`                                |
    | `max_nfe`           | `L`                | truncation cap on forward passes           |
    | `trust_remote_code` | None               | run a model's own code (`backend="remote"`)|
    | `backend`           | `"auto"`           | `"native"`, `"remote"` (published code)    |
    | `cache`             | `"none"`           | or `"prefix"`, `"dual"` (Key/value cache)  |
    | `cache_refresh`     | 0                  | full forward after k partial ones (0: off) |
    | `task_kwargs`       | `{}`               | more task arguments (Arith: `seed`, ...)   |
    | `render_mode`       | None               | `"ansi"` or `"rgb_array"`                  |

    The defaults are those of `DLLMUnmask-Arith-v0`; each registered id sets its own (see
    `envs_registry.yaml`). An unknown argument or an invalid value fails at construction with
    a message naming it and the valid choices.

    `reset(options={"index": i})` decodes problem `i` of the split.

    ## Version History

    * v0: initial version.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, **settings: Any) -> None:
        self.settings = EnvSettings.from_kwargs(**settings)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode={render_mode!r} is not valid; expected one of "
                f"{self.metadata['render_modes']} or None"
            )
        self.render_mode = render_mode
        self.workload = core.Workload.build(self.settings)
        self.task, self.problems, self.model = (
            self.workload.task,
            self.workload.problems,
            self.workload.model,
        )
        s = self.settings
        self.observation_space = core.observation_space(s, self.workload.vocab_size)
        self.action_space = spaces.MultiBinary(s.gen_length)
        self._state: DecodingState | None = None
        self._episode_over = True
        self._problem_index = -1
        self._steps = np.zeros(1, dtype=np.int64)  # steps of the episode (for transition)

    # ------------------------------------------------------------------------------- API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        index = self._problem_index_from(options)
        super().reset(seed=seed)
        if index is None:
            index = int(self.np_random.integers(len(self.problems)))
        s = self.settings
        generator = None
        if s.temperature > 0:
            generator = torch.Generator(device=self.model.device)
            generator.manual_seed(int(self.np_random.integers(2**63 - 1)))
        state = self.workload.start([index], generator)
        state.adopt_cache(self._state)
        state.forward(self.model)
        self._state, self._problem_index, self._episode_over = state, index, False
        self._steps[:] = 0
        return self._observation(), {"nfe": 1, "problem_index": index}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._state is None:
            raise RuntimeError("step() called before reset(); call env.reset() first")
        if self._episode_over:
            raise RuntimeError("step() called after the episode ended; call env.reset() first")
        state, s = self._state, self.settings
        chosen = core.check_actions(action, (s.gen_length,))[None]
        ended, cut = core.transition(state, chosen, np.ones(1, dtype=bool), self._steps, s)
        terminated, truncated = bool(ended[0]), bool(cut[0])
        info: dict[str, Any] = {"nfe": int(state.nfe[0])}
        reward = 0.0
        if terminated or truncated:
            self._episode_over = True
            reward = self._finish(info)
        else:
            state.forward(self.model)
            info["nfe"] = int(state.nfe[0])
        return self._observation(), reward, terminated, truncated, info

    def render(self) -> str | np.ndarray | None:
        if self.render_mode is None or self._state is None:
            return None
        if self.render_mode == "ansi":
            problem = self.problems[self._problem_index]
            return rendering.ansi(self._state, 0, self.model.tokenizer, problem.question)
        return rendering.decoding_order_image(self._state, 0, self.settings.nfe_cap)

    # ------------------------------------------------------------------------------- details
    def _problem_index_from(self, options: dict[str, Any] | None) -> int | None:
        if not options or options.get("index") is None:
            return None
        unknown = sorted(set(options) - {"index"})
        if unknown:
            raise ValueError(f"reset options: unknown key(s) {unknown}; expected 'index'")
        return self.workload.check_index(options["index"])

    def _observation(self) -> dict[str, np.ndarray]:
        batch = core.observations(self._state, self.settings, self.workload.vocab_size)
        return {name: value[0] for name, value in batch.items()}

    def _finish(self, info: dict[str, Any]) -> float:
        rewards, ends = self.workload.episode_ends(
            self._state, np.array([0]), np.array([self._problem_index])
        )
        info.update({key: values[0] for key, values in ends.items()})
        info["correct"] = bool(info["correct"])
        info["tokens_per_nfe"] = float(info["tokens_per_nfe"])
        info["problem_index"] = int(info["problem_index"])
        info["full_forwards"] = int(info["full_forwards"])
        info["window_forwards"] = int(info["window_forwards"])
        return float(rewards[0])
