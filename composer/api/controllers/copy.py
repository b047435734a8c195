"""Headlines, taglines and descriptions over HTTP (the CLI's `composer copy`)."""

from __future__ import annotations

from collections.abc import Sequence

from litestar import Controller, Request, post

from composer.api.errors import FieldError
from composer.api.schemas import CopyBody
from composer.api.security.access import caller, is_admin, require
from composer.api.security.keys import Scope
from composer.api.security.redaction import reason_code
from composer.api.state import Api
from composer.copywriting import CopyResult


class CopyController(Controller):
    tags: Sequence[str] | None = ("copy",)

    @post(
        "/v1/copy",
        status_code=200,
        summary="Write product copy",
        raises=[FieldError],
        opt={"scope": Scope.PAGES},
    )
    async def write_copy(self, request: Request, data: CopyBody, api: Api) -> CopyResult:
        """``n`` distinct variants, each with the checks it passed. Behind the same LLM queue
        as pages: when it is full the variants come from the rules templates
        (``fallback_reason`` "queue full")."""
        if data.backend is not None:
            require(request, Scope.ADMIN, "choosing a backend")
        services, pages = api.require()
        key = caller(request)
        if key is not None:
            api.requests_per_key.take(key.id)
        catalog = services.retriever.catalog.index
        for n, pid in enumerate(data.products):
            if pid not in catalog:
                raise FieldError(f"products[{n}]", f"unknown product id '{pid}'")
        backend = pages.served_backend(data.backend)

        def job(_deadline: float, forced: str | None) -> CopyResult:
            reason = forced
            if reason is None and backend != "rules":
                try:
                    services.backends.get(backend)
                except Exception as exc:
                    reason = f"backend {backend} unavailable: {exc}"
            if reason is None:
                try:
                    return services.copywriter.write(data.model_copy(update={"backend": backend}))
                except Exception as exc:
                    if backend == "rules":
                        raise
                    reason = f"backend {backend} failed: {type(exc).__name__}: {exc}"
            result = services.copywriter.write(data.model_copy(update={"backend": "rules"}))
            result.fallback, result.fallback_reason = True, reason
            return result

        result = await pages.run_admitted(backend, job, key.id if key is not None else None)
        api.metrics.copies.labels(result.backend, str(result.fallback).lower()).inc()
        if not is_admin(request):  # the details are for admins and the logs
            result.fallback_reason = reason_code(result.fallback_reason)
            result.rejected = []
        return result
