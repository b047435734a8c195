"""Backends by name, built on first use from the settings (loading a model takes seconds)."""

from __future__ import annotations

from threading import Lock

from composer.errors import UsageError
from composer.llm.base import LLMBackend
from composer.llm.rules_backend import RulesBackend
from composer.settings import BackendName, Settings

BACKENDS = tuple(BackendName)


class BackendRegistry:
    """One instance per backend and model: a process may hold two in-process models (the
    135M for pages written while the shopper waits, a larger one for pages composed ahead)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._built: dict[tuple[str, str], LLMBackend] = {}
        self.register(RulesBackend())
        self._lock = Lock()

    def register(self, backend: LLMBackend, model: str | None = None) -> None:
        """Use this instance for its name (tests inject fault injectors this way), for
        ``model`` or the setting's."""
        self._built[(backend.name, model or self.settings.llm_model)] = backend

    def get(self, name: str | None = None, model: str | None = None) -> LLMBackend:
        name = name or self.settings.llm_backend
        model = model or self.settings.llm_model
        if name == BackendName.RULES:
            model = self.settings.llm_model  # the rules backend has no model
        with self._lock:
            if (name, model) not in self._built:
                self._built[(name, model)] = self._make(name, model)
            return self._built[(name, model)]

    def _make(self, name: str, model: str) -> LLMBackend:
        if name == BackendName.TRANSFORMERS:
            from composer.llm import TransformersBackend, resolve_model

            path = resolve_model(model, self.settings.resolved_cache_dir())
            return TransformersBackend(
                path,
                threads=self.settings.llm_threads,
                dtype=self.settings.llm_dtype,
                device=self.settings.device,
            )
        if name == BackendName.VLLM:
            from composer.llm.vllm_backend import VLLMBackend

            return VLLMBackend.from_settings(self.settings.model_copy(update={"llm_model": model}))
        raise UsageError(
            f"unknown backend '{name}'; use one of: {', '.join(b.value for b in BACKENDS)}"
        )
