"""The unmasking environments and their action-space wrappers."""

from dllm_gym.envs.settings import EMPTY_ACTIONS, REWARDS, EnvSettings
from dllm_gym.envs.unmask_env import UnmaskEnv
from dllm_gym.envs.unmask_vector_env import UnmaskVectorEnv
from dllm_gym.envs.wrappers import ThresholdAction, TopKAction

__all__ = [
    "EMPTY_ACTIONS",
    "REWARDS",
    "EnvSettings",
    "ThresholdAction",
    "TopKAction",
    "UnmaskEnv",
    "UnmaskVectorEnv",
]
