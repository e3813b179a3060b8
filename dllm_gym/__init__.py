"""dllm-gym: Gymnasium environments in which a masked diffusion language model is the
environment and each step decides which masked positions to reveal.

``import dllm_gym`` registers every id of ``envs_registry.yaml`` with Gymnasium::

    import gymnasium as gym
    import dllm_gym

    env = gym.make("DLLMUnmask-Arith-v0")
"""

from dllm_gym.envs import ThresholdAction, TopKAction, UnmaskEnv, UnmaskVectorEnv
from dllm_gym.models import DiffusionLM, ModelUnavailableError, load_model
from dllm_gym.registry import register_all

__version__ = "0.1.0"

ENV_IDS: list[str] = register_all()
"""The registered environment ids, in the registry's order."""

__all__ = [
    "ENV_IDS",
    "DiffusionLM",
    "ModelUnavailableError",
    "ThresholdAction",
    "TopKAction",
    "UnmaskEnv",
    "UnmaskVectorEnv",
    "__version__",
    "load_model",
]
