"""dllm-gym: Gymnasium environments where a masked diffusion LM decides nothing and the agent
decides which masked positions to reveal."""

from dllm_gym.models import DiffusionLM, ModelUnavailableError, load_model

__version__ = "0.1.0"

__all__ = ["DiffusionLM", "ModelUnavailableError", "__version__", "load_model"]
