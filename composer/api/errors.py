"""The one place where errors become HTTP responses.

Every error body has the same shape::

    {"status_code": 422, "detail": "min_price: Input should be greater than or equal to 0",
     "errors": [{"field": "min_price", "message": "...", "source": "body"}],
     "request_id": "..."}

Malformed input of any kind (bad JSON, wrong types, unknown fields, values out of range,
unknown products) is 422 naming the field (Litestar's own default is 400); an oversized body
is 413; an unknown product or route is 404; a service still loading is 503 with
``Retry-After``. Backend failures never get here: pages and copy fall back to ``rules``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import (
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap
from pydantic import ValidationError

from composer.errors import ComposerError, UsageError
from composer.pipeline import NoCandidatesError
from retrieval.errors import UnknownProductError

log = logging.getLogger("composer.api")


class FieldError(ValidationException):
    """A request value the models accept but the service cannot use (an unknown product, a
    prompt that does not exist): 422 naming the field."""

    status_code = HTTP_422_UNPROCESSABLE_ENTITY

    def __init__(self, field: str, message: str) -> None:
        super().__init__(detail=f"{field}: {message}")
        self.field = field
        self.message = message


class NotReady(HTTPException):
    status_code = HTTP_503_SERVICE_UNAVAILABLE

    def __init__(self, detail: str, retry_after_s: int = 5) -> None:
        super().__init__(detail=detail, headers={"Retry-After": str(retry_after_s)})


def _loc_to_field(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _clean(message: str) -> str:
    return message.removeprefix("Value error, ")


def errors_from_pydantic(errors: Sequence[Any], source: str = "body") -> list[dict[str, str]]:
    out = []
    for err in errors:
        message = _clean(str(err.get("msg", "invalid value")))
        field = _loc_to_field(err.get("loc", ()))
        out.append({"field": field or "body", "message": message, "source": source})
    return out


def _errors_from_litestar(exc: ValidationException) -> list[dict[str, str]]:
    extra = exc.extra
    items: list[Any] = extra if isinstance(extra, list) else [extra] if extra else []
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        message = _clean(str(item.get("message", "invalid value")))
        key = str(item.get("key") or "")
        source = str(item.get("source") or "body")
        if key == "data" and source == "body":  # Litestar's name for a missing body
            key, message = "body", "a JSON object is required"
        key = re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", key)  # recent_items.0 -> recent_items[0]
        out.append({"field": key or "body", "message": message, "source": source})
    if not out:
        detail = exc.detail if exc.detail and not exc.detail.startswith("Validation failed") else ""
        out.append({"field": "body", "message": detail or "not valid JSON", "source": "body"})
    return out


def _body(request: Request, status: int, detail: str, errors: list[dict[str, str]] | None) -> dict:
    body: dict[str, Any] = {"status_code": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    rid = request.scope.get("state", {}).get("request_id")
    if rid:
        body["request_id"] = rid
    return body


def unprocessable(request: Request, errors: list[dict[str, str]]) -> Response:
    first = errors[0]
    detail = f"{first['field']}: {first['message']}"
    return Response(
        _body(request, HTTP_422_UNPROCESSABLE_ENTITY, detail, errors),
        status_code=HTTP_422_UNPROCESSABLE_ENTITY,
    )


def _http_error(request: Request, exc: HTTPException) -> Response:
    if isinstance(exc, FieldError):
        return unprocessable(
            request, [{"field": exc.field, "message": exc.message, "source": "body"}]
        )
    if isinstance(exc, ValidationException) or exc.status_code == 400:
        # 400 from Litestar means the body or a parameter could not be decoded.
        if isinstance(exc, ValidationException):
            errors = _errors_from_litestar(exc)
        else:
            errors = [{"field": "body", "message": _decode_message(exc.detail), "source": "body"}]
        return unprocessable(request, errors)
    if exc.status_code >= 500 and not isinstance(exc, NotReady):
        log.error("server error", exc_info=exc, extra={"status": exc.status_code})
    return Response(
        _body(request, exc.status_code, exc.detail, None),
        status_code=exc.status_code,
        headers=exc.headers,
    )


def _decode_message(detail: str) -> str:
    return f"not valid JSON ({detail})" if detail else "not valid JSON"


def _pydantic_error(request: Request, exc: ValidationError) -> Response:
    return unprocessable(request, errors_from_pydantic(exc.errors()))


def _unknown_product(request: Request, exc: UnknownProductError) -> Response:
    return unprocessable(request, [{"field": "product_id", "message": str(exc), "source": "body"}])


def _no_candidates(request: Request, exc: NoCandidatesError) -> Response:
    return unprocessable(request, [{"field": "filters", "message": str(exc), "source": "body"}])


def _usage_error(request: Request, exc: UsageError) -> Response:
    field = exc.field or "body"
    return unprocessable(request, [{"field": field, "message": str(exc), "source": "body"}])


def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc, extra={"error_type": type(exc).__name__})
    status = HTTP_500_INTERNAL_SERVER_ERROR
    detail = str(exc) if isinstance(exc, ComposerError) else "internal error"
    return Response(_body(request, status, detail, None), status_code=status)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    HTTPException: _http_error,
    ValidationError: _pydantic_error,
    UnknownProductError: _unknown_product,
    NoCandidatesError: _no_candidates,
    UsageError: _usage_error,
    Exception: _internal_error,
}
