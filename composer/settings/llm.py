"""Which LLM backends exist, by name, and the model set-up fetches by default."""

from __future__ import annotations

from enum import StrEnum

DEFAULT_MODEL = "smollm2-135m-instruct"


class BackendName(StrEnum):
    """A backend's name in settings, requests, traces and metrics."""

    TRANSFORMERS = "transformers"  # the model in this process
    VLLM = "vllm"  # a vLLM server over its OpenAI-compatible API
    RULES = "rules"  # templates around catalog facts: no model, and every fallback's answer
