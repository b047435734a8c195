"""Security headers on every response; a Content-Security-Policy on every HTML one.

The pages run no script at all (``default-src 'none'``), take their inline styles by hash
only, images from the hosts catalog links may name, and may be framed only by the origins
configured (``COMPOSER_API__FRAME_ANCESTORS``). Referrers go to this site only: a page's URL
carries its link signature, which image hosts must not see.
"""

from __future__ import annotations

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from composer.rendering import style_hashes
from retrieval.catalog_text import LinkPolicy

# The API docs (admin only) load their viewer from a CDN; that page keeps its own rules.
_NO_CSP_PREFIX = "/schema"
NONE = "'none'"


def content_security_policy(links: LinkPolicy, frame_ancestors: list[str]) -> str:
    if links.hosts:
        schemes = ("https", "http") if links.allow_http else ("https",)
        images = " ".join(f"{s}://{h}" for h in sorted(links.hosts) for s in schemes)
    else:
        images = "https: http:" if links.allow_http else "https:"
    return "; ".join(
        [
            "default-src 'none'",
            f"style-src {' '.join(style_hashes())}",
            f"img-src 'self' {images}",
            "base-uri 'none'",
            "form-action 'none'",
            f"frame-ancestors {' '.join(frame_ancestors) or NONE}",
        ]
    )


class SecurityHeaders:
    """ASGI layer adding the headers to each response as it starts."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.common = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
        ]
        self.csp = (b"content-security-policy", csp.encode("ascii"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope.get("path", "").startswith(_NO_CSP_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                html = any(
                    k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers
                )
                headers += self.common
                if html and not docs:
                    headers.append(self.csp)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
