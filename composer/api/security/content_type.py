"""Bodies are JSON, declared as such: a request with a body of another media type is 415.

Litestar would parse a JSON body whatever the ``Content-Type``; a plain cross-site form post
(``text/plain``, which browsers send without a preflight) could then record events.
"""

from __future__ import annotations

from litestar import Request
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE

_WITH_BODY = {"POST", "PUT", "PATCH"}


class UnsupportedMediaType(HTTPException):
    status_code = HTTP_415_UNSUPPORTED_MEDIA_TYPE


async def require_json(request: Request) -> None:
    if request.method not in _WITH_BODY:
        return
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType(
            f"send the body as JSON with Content-Type: application/json, not {media or 'none'}"
        )
