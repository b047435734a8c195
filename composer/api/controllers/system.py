"""Liveness, readiness and metrics."""

from __future__ import annotations

from collections.abc import Sequence

from litestar import Controller, Request, Response, get
from litestar.status_codes import HTTP_204_NO_CONTENT

from composer.api.schemas import Health, Ready
from composer.api.security.access import is_admin
from composer.api.state import Api
from composer.settings import Scope


class SystemController(Controller):
    tags: Sequence[str] | None = ("system",)

    @get("/healthz", summary="The process is alive", opt={"public": True}, security=[])
    async def healthz(self) -> Health:
        return Health(status="alive")

    @get(
        "/readyz",
        summary="Models loaded and store reachable (503 otherwise)",
        opt={"public": True},
    )
    async def readyz(self, request: Request, api: Api) -> Response[Ready]:
        """503 while the models load or when the store cannot be reached. An LLM backend
        that failed to load is reported under ``checks.llm`` but does not make the service
        unready: pages are then served by the ``rules`` backend. Anyone may ask (load
        balancers have no keys); the checks and errors are shown to an admin key only."""
        admin = is_admin(request)
        catalog = api.catalog
        if catalog is None:
            error = api.load_error if admin else None
            return Response(
                Ready(status="failed" if api.load_error else "loading", error=error),
                status_code=503,
            )
        try:
            checks = await catalog.checks()
        except Exception as exc:
            error = f"store unreachable: {type(exc).__name__}: {exc}" if admin else None
            return Response(Ready(status="failed", error=error), status_code=503)
        return Response(Ready(status="ready", checks=checks if admin else {}), status_code=200)

    @get(
        "/metrics",
        summary="Prometheus metrics",
        media_type="text/plain",
        opt={"scope": Scope.ADMIN},
    )
    async def metrics(self, api: Api) -> Response[bytes]:
        return Response(api.metrics.render(), media_type=api.metrics.content_type)

    @get(
        "/favicon.ico",
        status_code=HTTP_204_NO_CONTENT,
        include_in_schema=False,
        opt={"public": True},
    )
    async def favicon(self) -> None:
        """Browsers ask for it on every page; "no content" instead of a 404 in their console."""
