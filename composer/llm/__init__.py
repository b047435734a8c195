"""LLM backends behind one interface, and the default local model.

Imports are lazy: the transformers backend loads torch, transformers and xgrammar (seconds),
which commands that never run a model should not pay for.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from composer.llm.base import (
    DEADLINE,
    BatchingBackend,
    ChatMessage,
    Generation,
    GenerationRequest,
    LLMBackend,
    LLMError,
    generate_batch,
)

if TYPE_CHECKING:
    from composer.llm.model_fetch import (
        ModelFetchError,
        ensure_default_model,
        ensure_model,
        resolve_model,
    )
    from composer.llm.transformers_backend import TransformersBackend

_LAZY = {
    "ModelFetchError": "composer.llm.model_fetch",
    "ensure_default_model": "composer.llm.model_fetch",
    "ensure_model": "composer.llm.model_fetch",
    "resolve_model": "composer.llm.model_fetch",
    "TransformersBackend": "composer.llm.transformers_backend",
}

__all__ = [
    "DEADLINE",
    "BatchingBackend",
    "ChatMessage",
    "Generation",
    "GenerationRequest",
    "LLMBackend",
    "LLMError",
    "ModelFetchError",
    "TransformersBackend",
    "ensure_default_model",
    "ensure_model",
    "generate_batch",
    "resolve_model",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'composer.llm' has no attribute {name!r}")
    return getattr(import_module(module), name)
