"""Copy over HTTP: behind the same LLM queue as pages, with the same fallbacks."""

from __future__ import annotations

from composer.api.errors import FieldError
from composer.api.llm_queue import LLMQueue
from composer.api.metrics import ApiMetrics
from composer.api.services import Services
from composer.copywriting import CopyRequest, CopyResult
from composer.fallback import Fallback
from composer.settings import BackendName


class CopyService:
    def __init__(self, services: Services, metrics: ApiMetrics, queue: LLMQueue) -> None:
        self.copywriter = services.copywriter
        self.catalog = services.retriever.catalog
        self.metrics = metrics
        self.queue = queue
        self.fallback = Fallback(services.backends)

    async def write(self, request: CopyRequest, caller: str | None = None) -> CopyResult:
        """``n`` variants; from the rules templates when the model gets no slot, cannot be
        built or fails (``fallback_reason`` says which). ``caller``: the API key's id."""
        for n, pid in enumerate(request.products):
            if pid not in self.catalog.index:
                raise FieldError(f"products[{n}]", f"unknown product id '{pid}'")
        backend = self.queue.served_backend(request.backend)

        def rules(reason: str) -> CopyResult:
            result = self.copywriter.write(
                request.model_copy(update={"backend": BackendName.RULES})
            )
            result.fallback, result.fallback_reason = True, reason
            return result

        def job(_deadline: float, forced: str | None) -> CopyResult:
            return self.fallback.call(
                backend,
                lambda: self.copywriter.write(request.model_copy(update={"backend": backend})),
                rules,
                forced,
                # The request was checked above: what fails now (a copy prompt that does
                # not exist, a model error) is the deployment's, not the caller's.
                caller_errors=(),
            )

        result = await self.queue.run(backend, job, caller)
        self.metrics.copies.labels(result.backend, str(result.fallback).lower()).inc()
        return result
