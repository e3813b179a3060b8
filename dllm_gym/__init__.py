"""dllm-gym: Gymnasium environments in which a masked diffusion language model is the
environment and each step decides which masked positions to reveal."""

from dllm_gym.models import DiffusionLM, ModelUnavailableError, load_model

__version__ = "0.1.0"

__all__ = ["DiffusionLM", "ModelUnavailableError", "__version__", "load_model"]
