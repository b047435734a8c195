"""LLM backends behind one interface, and the default local model."""

from composer.llm.base import ChatMessage, Generation, GenerationRequest, LLMBackend, LLMError
from composer.llm.model_fetch import ModelFetchError, ensure_default_model, resolve_model
from composer.llm.transformers_backend import TransformersBackend

__all__ = [
    "ChatMessage",
    "Generation",
    "GenerationRequest",
    "LLMBackend",
    "LLMError",
    "ModelFetchError",
    "TransformersBackend",
    "ensure_default_model",
    "resolve_model",
]
