"""Structured logs: one JSON object per line, each carrying the request id.

Shopper ids never reach a log: handlers log ``shopper`` as the HMAC pseudonym
(``retrieval.profile.pseudonymise``), the access line logs the route template
(``/pages/{shopper_id:str}``), never the raw path, and uvicorn's own access log, which would
print the raw path, is switched off by :func:`composer.api.server.serve`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from composer.api.metrics import ApiMetrics

log = logging.getLogger("composer.api")
request_id_var: ContextVar[str | None] = ContextVar("composer_request_id", default=None)

REQUEST_ID_HEADER = "X-Request-ID"
_INCOMING_ID = re.compile(r"^[A-Za-z0-9._:\-]{8,64}$")
# Attributes every LogRecord has, and uvicorn's ANSI-coloured duplicate of its message.
_RESERVED = {*vars(logging.makeLogRecord({})), "color_message"}


class _RequestIdFilter(logging.Filter):
    """Stamps each record with the request id while it is being logged (in the request's
    task, or in a worker thread running with the request's context)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


log.addFilter(_RequestIdFilter())


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "request_id", "pid", ...extra fields}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id_var.get()
        if rid:
            out["request_id"] = rid
        out["pid"] = record.process
        for key, value in vars(record).items():
            if key not in _RESERVED and key not in out and key != "request_id":
                out[key] = value
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the whole process (the server calls this; tests do not)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # sentence-transformers shows a tqdm bar per query embedding when its logger is at INFO.
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)


class RequestContext:
    """Outermost ASGI layer: request id (taken from a well-formed ``X-Request-ID`` or made
    up), returned in the response header, bound to the log context; one access log line and
    the request metrics per request, labelled by route template."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        rid = incoming if incoming and _INCOMING_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("path_template") or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(seconds)
            log.info(
                "request",
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "ms": round(seconds * 1000, 2),
                },
            )
            request_id_var.reset(token)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None
