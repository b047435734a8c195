"""Headlines, taglines and descriptions over HTTP (the CLI's `composer copy`)."""

from __future__ import annotations

from collections.abc import Sequence

from litestar import Controller, Request, post

from composer.api.errors import FieldError
from composer.api.schemas import CopyBody
from composer.api.security.access import caller, is_admin, require
from composer.api.security.redaction import reason_code
from composer.api.state import Api, Copy
from composer.copywriting import CopyResult
from composer.settings import Scope


class CopyController(Controller):
    tags: Sequence[str] | None = ("copy",)

    @post(
        "/v1/copy",
        status_code=200,
        summary="Write product copy",
        raises=[FieldError],
        opt={"scope": Scope.PAGES},
    )
    async def write_copy(
        self, request: Request, data: CopyBody, api: Api, copy: Copy
    ) -> CopyResult:
        """``n`` distinct variants, each with the checks it passed. Behind the same LLM queue
        as pages: when it is full the variants come from the rules templates
        (``fallback_reason`` "queue full")."""
        if data.backend is not None:
            require(request, Scope.ADMIN, "choosing a backend")
        key = caller(request)
        if key is not None:
            api.requests_per_key.take(key.id)
        result = await copy.write(data, key.id if key is not None else None)
        if not is_admin(request):  # the details are for admins and the logs
            result.fallback_reason = reason_code(result.fallback_reason)
            result.rejected = []
        return result
