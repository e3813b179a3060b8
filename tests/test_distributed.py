"""The distributed vector env on a local Ray instance: 2 CPU actors, the embedded model.

It must behave as the local vector env, row for row, in every autoreset mode; a dead or
stuck actor must give a clear error (never a hang); the evaluation harness must finish a run
that such a failure interrupted without redoing an episode.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time

import gymnasium as gym
import numpy as np
import pytest
import ray
from gymnasium.vector import AutoresetMode

import dllm_gym  # noqa: F401
from agents.cli import main
from agents.evaluate import evaluate
from agents.grpo import Args, train
from agents.heuristics import TopK, make_policy
from dllm_gym.distributed import DistributedUnmaskVectorEnv, ShardError

ENV_ID = "DLLMUnmask-Arith-v0"
N = 5  # shards of 3 and 2 rows


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
             object_store_memory=100 * 2**20)  # fmt: skip
    yield
    ray.shutdown()


def assert_same_observations(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key == "confidence":  # another batch shape: equal up to float rounding
            np.testing.assert_allclose(a[key], b[key], atol=1e-5, err_msg=key)
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def assert_same_infos(a: dict, b: dict) -> None:
    """Equal keys and masks; equal values where a mask says the value is set."""
    assert a.keys() == b.keys()
    for key in a:
        if key.startswith("_"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        elif isinstance(a[key], dict):
            assert_same_infos(a[key], b[key])
        else:
            for row in np.flatnonzero(a.get(f"_{key}", np.ones(len(a[key]), dtype=bool))):
                left, right = a[key][row], b[key][row]
                if isinstance(left, dict):
                    assert_same_observations(left, right)
                elif key == "confidence" or isinstance(left, float):
                    np.testing.assert_allclose(left, right, atol=1e-5, err_msg=key)
                else:
                    np.testing.assert_array_equal(left, right, err_msg=f"{key}[{row}]")


@pytest.mark.parametrize("mode", list(AutoresetMode))
def test_distributed_equals_local_vector_env(local_ray, mode):
    local = gym.make_vec(ENV_ID, num_envs=N, autoreset_mode=mode, render_mode="ansi")
    remote = gym.make_vec(ENV_ID, num_envs=N, autoreset_mode=mode, render_mode="ansi", workers=2)
    assert isinstance(remote, DistributedUnmaskVectorEnv)
    assert remote.shard_bounds == [(0, 3), (3, 5)]
    assert remote.single_observation_space == local.single_observation_space
    assert remote.action_space == local.action_space
    assert len(remote.problems) == len(local.problems)
    assert remote.problems[7] == local.problems[7]
    try:
        for envs_reset in ((dict(seed=3),), (dict(options={"index": [0, 5, None, 9, 2]}),)):
            results = [env.reset(**envs_reset[0]) for env in (local, remote)]
            assert_same_observations(results[0][0], results[1][0])
            assert_same_infos(results[0][1], results[1][1])
            assert remote.render() == local.render()  # one text per row, in row order
        rng = np.random.default_rng(0)
        density = np.linspace(0.05, 0.6, N)[:, None]
        finished = episodes = 0
        for _ in range(40):
            actions = rng.random((N, 48)) < density
            (lo, lr, lte, ltr, li), (ro, rr, rte, rtr, ri) = (
                env.step(actions) for env in (local, remote)
            )
            assert_same_observations(lo, ro)
            np.testing.assert_array_equal(lr, rr)
            np.testing.assert_array_equal(lte, rte)
            np.testing.assert_array_equal(ltr, rtr)
            assert_same_infos(li, ri)
            done = lte | ltr
            episodes += int(done.sum())
            if mode is AutoresetMode.DISABLED and done.any():
                finished += 1
                options = {"reset_mask": done, "index": [int(i) % 20 for i in range(N)]}
                a, b = (env.reset(options=options) for env in (local, remote))
                assert_same_observations(a[0], b[0])
                assert_same_infos(a[1], b[1])
        assert episodes >= N  # the run went through episode ends (and their resets)
        if mode is AutoresetMode.DISABLED:
            assert finished > 0
    finally:
        local.close()
        remote.close()


def test_errors_are_the_local_ones_and_change_nothing(local_ray):
    envs = gym.make_vec(ENV_ID, num_envs=4, workers=2, autoreset_mode="Disabled")
    try:
        with pytest.raises(RuntimeError, match=r"step\(\) called before reset"):
            envs.step(np.zeros((4, 48), dtype=bool))
        with pytest.raises(ValueError, match="first reset must reset every sub-environment"):
            envs.reset(options={"reset_mask": np.array([True, False, True, True])})
        first, _ = envs.reset(seed=0)
        with pytest.raises(ValueError, match=r"action: expected shape \(4, 48\)"):
            envs.step(np.zeros((4, 47), dtype=bool))
        with pytest.raises(ValueError, match=r"index\[3\] must be in \[0, 1000\)"):
            envs.reset(options={"index": [0, 1, 2, 1000]})
        again, _ = envs.reset(options={"reset_mask": np.zeros(4, dtype=bool)})
        assert_same_observations(first, again)  # the refused calls changed no row
    finally:
        envs.close()
    with pytest.raises(ValueError, match=r"workers must be in \[1, num_envs=2\]"):
        DistributedUnmaskVectorEnv(2, workers=3)
    with pytest.raises(ValueError, match="arguments of the distributed vector env"):
        gym.make_vec(ENV_ID, num_envs=2, num_gpus_per_worker=1)
    with pytest.raises(ValueError, match="cache='kv' is not valid"):
        gym.make_vec(ENV_ID, num_envs=2, workers=2, cache="kv")  # before any actor starts
    before = _named_actors()
    with pytest.raises(ShardError, match=r"startup: shard \d of 2 .*ModelUnavailableError: "
                       r"model='/nonexistent/model'"):  # fmt: skip
        gym.make_vec(ENV_ID, num_envs=2, workers=2, model="/nonexistent/model")
    time.sleep(1)
    assert _named_actors() == before  # the actor that did start was released


def _named_actors() -> set[str]:
    return {a["name"] if isinstance(a, dict) else a for a in ray.util.list_named_actors()}


def test_a_killed_actor_raises_a_clear_error_and_close_releases_every_actor(local_ray):
    envs = gym.make_vec(ENV_ID, num_envs=N, workers=2)
    names = {f"{envs.name}-shard-{w}" for w in range(2)}
    assert names <= _named_actors()
    envs.reset(seed=0)
    envs.step(np.ones((N, 48), dtype=bool))
    os.kill(envs.worker_pids[1], signal.SIGKILL)
    with pytest.raises(ShardError, match=r"step: shard 1 of 2 \(rows 3\.\.4\) died"):
        envs.step(np.ones((N, 48), dtype=bool))
    with pytest.raises(ShardError, match="unusable after an earlier failure"):
        envs.reset(seed=0)
    envs.close()
    deadline = time.monotonic() + 30
    while names & _named_actors() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not names & _named_actors()


def test_a_stuck_actor_times_out(local_ray):
    envs = gym.make_vec(ENV_ID, num_envs=4, workers=2, step_timeout=3)
    try:
        envs.reset(seed=0)
        os.kill(envs.worker_pids[0], signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(ShardError, match=r"shard 0 of 2 \(rows 0\.\.1\) did not answer"):
            envs.step(np.ones((4, 48), dtype=bool))
        assert time.monotonic() - started < 20
    finally:
        os.kill(envs.worker_pids[0], signal.SIGCONT)
        envs.close()


@dataclasses.dataclass
class KillShardAfter(TopK):
    """``top_k`` (same name and hyperparameters, so a run resumes with plain ``top_k``) that
    kills the actor of shard 1 on its ``calls``-th call."""

    calls: dataclasses.InitVar[int] = 0

    def __post_init__(self, calls: int) -> None:
        super().__post_init__()
        self.remaining = calls

    def __call__(self, obs):
        self.remaining -= 1
        if self.remaining == 0:
            name = next(n for n in _named_actors() if n.endswith("-shard-1"))
            os.kill(ray.get(ray.get_actor(name).describe.remote())[3], signal.SIGKILL)
        return super().__call__(obs)


def test_evaluation_resumes_after_a_dead_actor_without_redoing_episodes(local_ray, tmp_path):
    policy = make_policy("top_k", steps_per_block=4)
    local = evaluate(policy, ENV_ID, episodes=16, num_envs=4, progress=False)
    out = tmp_path / "run"
    with pytest.raises(ShardError, match="shard 1 of 2"):
        evaluate(KillShardAfter(steps_per_block=4, calls=30), ENV_ID, episodes=16,
                 num_envs=4, workers=2, out_dir=out, progress=False)  # fmt: skip
    lines = (out / "episodes.jsonl").read_text().splitlines()
    assert 0 < len(lines) < 16  # stopped part-way, the finished episodes on disk
    summary = evaluate(policy, ENV_ID, episodes=16, num_envs=4, workers=2, out_dir=out,
                       progress=False)  # fmt: skip
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert sorted(r["index"] for r in records) == list(range(16))  # each episode once
    assert records[: len(lines)] == [json.loads(line) for line in lines]  # none redone
    for key in ("accuracy", "mean_nfe", "episodes"):
        assert summary[key] == local[key]


def test_cli_eval_and_grpo_run_on_workers_with_the_local_results(local_ray, tmp_path, capsys):
    command = ["eval", ENV_ID, "--policy", "threshold", "--param", "tau=0.9", "--episodes", "6",
               "--num-envs", "3", "--quiet"]  # fmt: skip
    assert main(command) == 0
    local = capsys.readouterr().out.split(" | ")[2].split(", ")[:2]  # accuracy, mean NFE
    assert main([*command, "--workers", "2"]) == 0
    assert capsys.readouterr().out.split(" | ")[2].split(", ")[:2] == local

    rows = []
    for workers in (0, 2):
        args = Args(out_dir=str(tmp_path / f"grpo{workers}"), iterations=1,
                    prompts_per_iteration=2, group_size=2, warmup_iterations=1,
                    progress=False, workers=workers)  # fmt: skip
        row = train(args)
        rows.append({k: v for k, v in row.items() if "second" not in k and "time" not in k})
    assert rows[0] == rows[1]
