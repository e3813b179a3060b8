"""Loading dLLMs, the project's own architecture and features from logits."""

from dllm_gym.models.architecture import (
    DiffusionTransformerConfig,
    DiffusionTransformerForMaskedLM,
    register,
)
from dllm_gym.models.features import OPTIONAL_FEATURES, LogitFeatures, logit_features
from dllm_gym.models.loading import (
    EMBEDDED_MODEL,
    EMBEDDED_MODEL_DIR,
    KNOWN_MODELS,
    DiffusionLM,
    ModelUnavailableError,
    load_model,
)

register()

__all__ = [
    "EMBEDDED_MODEL",
    "EMBEDDED_MODEL_DIR",
    "KNOWN_MODELS",
    "OPTIONAL_FEATURES",
    "DiffusionLM",
    "DiffusionTransformerConfig",
    "DiffusionTransformerForMaskedLM",
    "LogitFeatures",
    "ModelUnavailableError",
    "load_model",
    "logit_features",
    "register",
]
