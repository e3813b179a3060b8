"""``UnmaskVectorEnv``: N unmasking environments advanced by one batched forward pass a step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from dllm_gym.decoding import DecodingState
from dllm_gym.envs import core, rendering
from dllm_gym.envs.settings import EnvSettings

_RESET_OPTIONS = ("index", "reset_mask")


class UnmaskVectorEnv(VectorEnv):
    """
    `num_envs` copies of :class:`~dllm_gym.envs.UnmaskEnv` decoded together: every `step` runs
    one batched forward pass of the model for all the sub-environments that need one, which is
    what makes reinforcement learning on a dLLM affordable. It is the `vector_entry_point` of
    every registered id:

    ```python
    >>> import gymnasium as gym
    >>> import dllm_gym
    >>> envs = gym.make_vec("DLLMUnmask-Arith-v0", num_envs=4)
    >>> obs, infos = envs.reset(seed=0)
    >>> obs["confidence"].shape
    (4, 48)

    ```

    Each sub-environment is at its own prompt, block and step. Prompts of different lengths
    are left-padded, with an attention mask and position ids that start at each row's first
    real token, so a row decodes exactly as it would alone. Observations, actions, rewards and
    infos are those of `UnmaskEnv` with a leading batch dimension (`single_observation_space`
    and `single_action_space` are the single env's spaces); infos of episode ends carry
    Gymnasium's `_key` masks.

    ## Arguments

    Every setting of `UnmaskEnv` (see its table), plus:

    | Parameter           | Default     | Description                                          |
    |---------------------|-------------|------------------------------------------------------|
    | `num_envs`          | 1           | number of sub-environments N                         |
    | `autoreset_mode`    | `NEXT_STEP` | an `AutoresetMode` or its value (see Autoreset)      |
    | `max_episode_steps` | None        | truncate an episode after this many steps            |
    | `render_mode`       | None        | `"ansi"` or `"rgb_array"`: a tuple, one per sub-env  |

    With `workers=W`, `gym.make_vec(id, num_envs=N, workers=W)` builds
    :class:`~dllm_gym.distributed.DistributedUnmaskVectorEnv` instead: the same env with its
    rows on `W` Ray actors.

    ## Seeds and prompts

    `reset(seed=s)` seeds sub-environment `i` with `s + i` (a list seeds each), so it draws the
    same problems as `gym.make(id)` reset with seed `s + i`, and at temperature 0 the two
    decode identically, token for token. `reset(options={"index": [i_0, ..., i_{N-1}]})` sets
    the problem of each sub-environment (an int sets one problem for all; a None entry draws
    that row's problem as a reset without options would); `problems` lists
    the split's problems, as on `UnmaskEnv`. At temperature
    above 0 the Gumbel noise of all rows comes from one generator seeded by `reset(seed=...)`:
    runs are reproducible, but a row's draws differ from a single env's.

    ## Autoreset

    As Gymnasium 1.x defines it (`metadata["autoreset_mode"]`):

    * `NEXT_STEP` (default): the step after a sub-environment's episode ends resets it (its
      action is ignored, its reward is 0) and returns the new episode's first observation.
    * `SAME_STEP`: the step that ends an episode resets the sub-environment at once; the last
      observation and info are in `infos["final_obs"]` and `infos["final_info"]`.
    * `DISABLED`: a finished sub-environment waits for `reset(options={"reset_mask": m})`,
      which resets the rows where `m` is True and leaves the others as they are. Until then
      stepping it is a no-op: its action is ignored, it costs no forward pass, its reward is
      0, `terminated` and `truncated` are False and its observation stays the last one.
      (Gymnasium's `SyncVectorEnv` forbids stepping a finished sub-environment in this mode;
      allowing it lets a batch run until its last episode ends.)

    ## GRPO: groups of rollouts of one prompt

    With `N = P * G`, give each of `P` prompts to `G` sub-environments, disable autoreset and
    step until every episode has ended; a stochastic policy (or `temperature > 0`) makes the
    `G` rollouts of a prompt differ, and each reward is compared with its group's mean:

    ```python
    >>> import numpy as np
    >>> from gymnasium.vector import AutoresetMode
    >>> envs = gym.make_vec("DLLMUnmask-Arith-v0", num_envs=6,
    ...                     autoreset_mode=AutoresetMode.DISABLED)
    >>> obs, _ = envs.reset(seed=0, options={"index": [0, 0, 0, 7, 7, 7]})  # P=2, G=3
    >>> rng = np.random.default_rng(0)
    >>> returns, done = np.zeros(6), np.zeros(6, dtype=bool)
    >>> while not done.all():
    ...     obs, rewards, terminated, truncated, infos = envs.step(rng.random((6, 48)) < 0.3)
    ...     returns += rewards
    ...     done |= terminated | truncated
    >>> groups = returns.reshape(2, 3)
    >>> advantages = groups - groups.mean(axis=1, keepdims=True)
    >>> advantages.shape
    (2, 3)

    ```
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["ansi", "rgb_array"],
        "render_fps": 4,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        *,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        **settings: Any,
    ) -> None:
        mode = check_vector_arguments(
            num_envs, autoreset_mode, max_episode_steps, render_mode, self.metadata
        )
        self.settings = EnvSettings.from_kwargs(**settings)
        self.workload = core.Workload.build(self.settings)
        # As on UnmaskEnv: the task, the problems of the split (index i is problem i) and model.
        self.task, self.problems, self.model = (
            self.workload.task,
            self.workload.problems,
            self.workload.model,
        )
        self.num_envs = int(num_envs)
        self.autoreset_mode = mode
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode

        length = self.settings.gen_length
        self.single_observation_space = core.observation_space(
            self.settings, self.workload.vocab_size
        )
        self.single_action_space = spaces.MultiBinary(length)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        self._state: DecodingState | None = None
        self._row_rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._problem_index = np.full(self.num_envs, -1, dtype=np.int64)
        self._steps = np.zeros(self.num_envs, dtype=np.int64)
        self._episode_over = np.ones(self.num_envs, dtype=bool)
        self._generator: torch.Generator | None = None

    # ------------------------------------------------------------------------------- API
    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset every sub-environment, or those of ``options["reset_mask"]``."""
        seeds = parse_seeds(seed, self.num_envs)
        rows, indices = parse_reset_options(options, self.num_envs, self.workload.check_index)
        if self._state is None and not rows.all():
            raise ValueError(FIRST_RESET_ERROR)
        if isinstance(seed, (int, np.integer)) or self._generator is None:
            super().reset(seed=int(seed) if isinstance(seed, (int, np.integer)) else None)
            self._generator = self._new_generator()
        for row in np.flatnonzero(rows):
            if seeds[row] is not None or self._row_rngs[row] is None:
                self._row_rngs[row] = seeding.np_random(seeds[row])[0]
        self._restart(rows, indices)
        return self._observations(), self._reset_infos(rows)

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._state is None:
            raise RuntimeError("step() called before reset(); call envs.reset() first")
        s, state = self.settings, self._state
        chosen = core.check_actions(actions, (self.num_envs, s.gen_length))
        waiting = self._episode_over.copy()  # reset now (NEXT_STEP) or idle (DISABLED)
        acting = ~waiting
        device = state.tokens.device
        terminated, truncated = core.transition(
            state, chosen, acting, self._steps, s, self.max_episode_steps
        )
        nfe = state.nfe.cpu().numpy()
        finished = terminated | truncated
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        infos: dict[str, Any] = {}
        if finished.any():
            rows = np.flatnonzero(finished)
            ended, ends = self.workload.episode_ends(state, rows, self._problem_index[rows])
            rewards[rows] = ended
            infos = _masked_infos(ends, rows, self.num_envs)

        if self.autoreset_mode is AutoresetMode.SAME_STEP and finished.any():
            batch = self._observations()
            final_obs = np.full(self.num_envs, None, dtype=object)  # as SyncVectorEnv: dicts
            for row in np.flatnonzero(finished):
                final_obs[row] = {name: values[row] for name, values in batch.items()}
            infos = {
                "final_obs": final_obs,
                "_final_obs": finished.copy(),
                "final_info": {**infos, "nfe": nfe.copy(), "_nfe": finished.copy()},
                "_final_info": finished.copy(),
            }
            restarting = finished
        elif self.autoreset_mode is AutoresetMode.NEXT_STEP:
            restarting = waiting
        else:
            restarting = np.zeros(self.num_envs, dtype=bool)
        continuing = acting & ~finished
        self._restart(restarting, np.full(self.num_envs, -1), forward=False)
        needs_forward = continuing | restarting
        if needs_forward.any():
            rows = None if needs_forward.all() else _on(needs_forward, device)
            state.forward(self.workload.model, rows=rows)
        self._episode_over = (self._episode_over | finished) & ~restarting

        infos["nfe"] = state.nfe.cpu().numpy()
        infos["_nfe"] = np.ones(self.num_envs, dtype=bool)
        if restarting.any():  # the new episodes' problems, beside those of episodes that ended
            ended_index = infos.get("problem_index", np.zeros(self.num_envs, dtype=np.int64))
            ended_mask = infos.get("_problem_index", np.zeros(self.num_envs, dtype=bool))
            infos["problem_index"] = np.where(restarting, self._problem_index, ended_index)
            infos["_problem_index"] = restarting | ended_mask
        return self._observations(), rewards, terminated, truncated, infos

    def render(self) -> tuple[Any, ...] | None:
        if self.render_mode is None or self._state is None:
            return None
        tokenizer = self.workload.model.tokenizer
        if self.render_mode == "ansi":
            return tuple(
                rendering.ansi(self._state, row, tokenizer, self.workload.problems[i].question)
                for row, i in enumerate(self._problem_index)
            )
        return tuple(
            rendering.decoding_order_image(self._state, row, self.settings.nfe_cap)
            for row in range(self.num_envs)
        )

    # ------------------------------------------------------------------------------- details
    def _restart(self, rows: np.ndarray, indices: np.ndarray, forward: bool = True) -> None:
        """Start ``rows`` on problems ``indices`` (-1: drawn with the row's generator) and, if
        ``forward``, run their first forward pass."""
        if not rows.any():
            return
        count = len(self.workload.problems)
        chosen = indices.copy()
        for row in np.flatnonzero(rows):  # one draw per resetting row, as UnmaskEnv.reset
            rng = self._row_rngs[row]
            if chosen[row] < 0:
                chosen[row] = int(rng.integers(count))
            if self.settings.temperature > 0:
                rng.integers(2**63 - 1)  # UnmaskEnv seeds its noise here: keep streams aligned
        picked = chosen[rows].tolist()
        if self._state is None or (rows.all() and forward):  # a full reset: a fresh buffer
            state = self.workload.start(picked, self._generator)
            state.adopt_cache(self._state)
            self._state = state
        else:
            self._state.restart(
                _on(rows, self._state.tokens.device),
                self.workload.prompts(picked),
                max_length=self.workload.model.max_length,
            )
            self._state.generator = self._generator
        self._problem_index[rows] = chosen[rows]
        self._steps[rows] = 0
        self._episode_over[rows] = False
        if forward:
            device = self._state.tokens.device
            self._state.forward(self.workload.model, rows=None if rows.all() else _on(rows, device))

    def _new_generator(self) -> torch.Generator | None:
        if self.settings.temperature == 0:
            return None
        generator = torch.Generator(device=self.workload.model.device)
        generator.manual_seed(int(self.np_random.integers(2**63 - 1)))
        return generator

    def _observations(self) -> dict[str, np.ndarray]:
        return core.observations(self._state, self.settings, self.workload.vocab_size)

    def _reset_infos(self, rows: np.ndarray) -> dict[str, Any]:
        """Infos of the rows just reset (as SyncVectorEnv: masked to those rows)."""
        return {
            "nfe": np.where(rows, self._state.nfe.cpu().numpy(), 0),
            "_nfe": rows.copy(),
            "problem_index": np.where(rows, self._problem_index, 0),
            "_problem_index": rows.copy(),
        }


FIRST_RESET_ERROR = (
    "reset options: the first reset must reset every sub-environment; leave out reset_mask"
)


def check_vector_arguments(
    num_envs: object,
    autoreset_mode: AutoresetMode | str,
    max_episode_steps: object,
    render_mode: str | None,
    metadata: dict[str, Any],
) -> AutoresetMode:
    """Validate the arguments a dllm-gym vector env takes besides the settings; the mode."""
    if isinstance(num_envs, (bool, np.bool_)) or not isinstance(num_envs, (int, np.integer)):
        raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
    if num_envs < 1:
        raise ValueError(f"num_envs must be an integer >= 1, got {num_envs}")
    try:
        mode = AutoresetMode(autoreset_mode)
    except ValueError:
        choices = [m.value for m in AutoresetMode]
        raise ValueError(
            f"autoreset_mode={autoreset_mode!r} is not valid; expected an AutoresetMode "
            f"or one of {choices}"
        ) from None
    if max_episode_steps is not None and (
        not isinstance(max_episode_steps, (int, np.integer)) or max_episode_steps < 1
    ):
        raise ValueError(
            f"max_episode_steps must be a positive integer or None, got {max_episode_steps!r}"
        )
    if render_mode is not None and render_mode not in metadata["render_modes"]:
        raise ValueError(
            f"render_mode={render_mode!r} is not valid; expected one of "
            f"{metadata['render_modes']} or None"
        )
    return mode


def parse_seeds(seed: int | Sequence[int | None] | None, num_envs: int) -> list[int | None]:
    """One seed per sub-environment: an int ``s`` seeds row ``i`` with ``s + i``."""
    if seed is None:
        return [None] * num_envs
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
        return [int(seed) + i for i in range(num_envs)]
    if isinstance(seed, Sequence) and len(seed) == num_envs:
        return [None if s is None else int(s) for s in seed]
    raise ValueError(f"seed: expected None, an int or a list of {num_envs} ints, got {seed!r}")


def parse_reset_options(
    options: dict[str, Any] | None, num_envs: int, check_index: Callable[[object, str], int]
) -> tuple[np.ndarray, np.ndarray]:
    """(N,) rows to reset and (N,) problem indices (-1: draw one) of ``reset``'s options."""
    options = options or {}
    unknown = sorted(set(options) - set(_RESET_OPTIONS))
    if unknown:
        raise ValueError(
            f"reset options: unknown key(s) {unknown}; expected some of {list(_RESET_OPTIONS)}"
        )
    rows = np.ones(num_envs, dtype=bool)
    mask = options.get("reset_mask")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (num_envs,) or mask.dtype != np.bool_:
            raise ValueError(
                f"reset options: reset_mask must be a bool array of shape ({num_envs},), "
                f"got {mask.dtype} of shape {mask.shape}"
            )
        rows = mask.copy()
    indices = np.full(num_envs, -1, dtype=np.int64)
    index = options.get("index")
    if index is not None:
        if isinstance(index, (int, np.integer)) and not isinstance(index, (bool, np.bool_)):
            index = [index] * num_envs
        values = list(index) if isinstance(index, (Sequence, np.ndarray)) else None
        if values is None or len(values) != num_envs:
            raise ValueError(
                f"reset options: index must be an int or a list of {num_envs} problem "
                f"indices (one per sub-environment, None to draw one), got {index!r}"
            )
        indices = np.array(
            [-1 if v is None else check_index(v, f"index[{i}]") for i, v in enumerate(values)],
            dtype=np.int64,
        )
    return rows, indices


def _on(rows: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(rows, dtype=torch.bool, device=device)


def _masked_infos(values: dict[str, Any], rows: np.ndarray, num_envs: int) -> dict[str, Any]:
    """Per-row values of ``rows`` as Gymnasium's batched infos: a (N, ...) array per key, with
    a ``_key`` bool mask of the rows that have it."""
    present = np.zeros(num_envs, dtype=bool)
    present[rows] = True
    infos: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, list):  # strings and None: an object array
            batched = np.full(num_envs, None, dtype=object)
            objects = np.empty(len(value), dtype=object)
            objects[:] = value
            batched[rows] = objects
        else:
            value = np.asarray(value)
            batched = np.zeros((num_envs, *value.shape[1:]), dtype=value.dtype)
            batched[rows] = value
        infos[key] = batched
        infos[f"_{key}"] = present.copy()
    return infos
