"""Backends by name, built on first use from the settings (loading a model takes seconds)."""

from __future__ import annotations

from threading import Lock

from composer.errors import UsageError
from composer.llm.base import LLMBackend
from composer.llm.rules_backend import RulesBackend
from composer.settings import BackendName, Settings

BACKENDS = tuple(BackendName)


class BackendRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._built: dict[str, LLMBackend] = {BackendName.RULES: RulesBackend()}
        self._lock = Lock()

    def register(self, backend: LLMBackend) -> None:
        """Use this instance for its name (tests inject fault injectors this way)."""
        self._built[backend.name] = backend

    def get(self, name: str | None = None) -> LLMBackend:
        name = name or self.settings.llm_backend
        with self._lock:
            if name not in self._built:
                self._built[name] = self._make(name)
            return self._built[name]

    def _make(self, name: str) -> LLMBackend:
        if name == BackendName.TRANSFORMERS:
            from composer.llm import TransformersBackend, resolve_model

            path = resolve_model(self.settings.llm_model, self.settings.resolved_cache_dir())
            return TransformersBackend(
                path,
                threads=self.settings.llm_threads,
                dtype=self.settings.llm_dtype,
                device=self.settings.device,
            )
        if name == BackendName.VLLM:
            from composer.llm.vllm_backend import VLLMBackend

            return VLLMBackend.from_settings(self.settings)
        raise UsageError(
            f"unknown backend '{name}'; use one of: {', '.join(b.value for b in BACKENDS)}"
        )
