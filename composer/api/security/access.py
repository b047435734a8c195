"""Who may call what: one guard on every route, reading the scope the route declares.

A route declares ``opt={"scope": Scope.PAGES}``; ``{"public": True}`` opens it to anyone
(liveness only). A route that declares nothing (Litestar's own schema routes included) needs
``admin``: forgetting to declare a scope closes a route rather than opening it. HTML pages
for browsers also take a signed page link (``"link": True``) or the session such a link
opened (``"session": True``) instead of a key.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from composer.api.security.keys import KeyRing
from composer.api.security.links import SESSION_COOKIE, LinkError, LinkSigner
from composer.settings import ApiKeyConfig, ApiSettings, Scope

CALLER = "caller"  # connection state: the ApiKeyConfig that authenticated the request
LINK_EXPIRES = "link_expires"  # connection state: the expiry of the page link that admitted


@dataclass
class Access:
    keys: KeyRing
    links: LinkSigner

    @classmethod
    def from_settings(cls, api: ApiSettings) -> Access:
        secret = api.link_secret.get_secret_value().encode() if api.link_secret else None
        # Without a configured secret, links live as long as this process; `serve` refuses
        # that anywhere but loopback (see composer.api.security.exposure).
        return cls(
            KeyRing(api.keys), LinkSigner(secret or secrets.token_bytes(32), api.link_max_ttl_s)
        )


def bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def caller(connection: ASGIConnection[Any, Any, Any, Any]) -> ApiKeyConfig | None:
    """The key that authenticated this request (None for a link or session)."""
    return connection.scope.get("state", {}).get(CALLER)


def is_admin(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Whether the request carries an admin key (public routes say more to one; pages and
    copy show the trace's details)."""
    key = caller(connection)
    return key is not None and key.allows(Scope.ADMIN)


def require(connection: ASGIConnection[Any, Any, Any, Any], scope: Scope, what: str) -> None:
    """403 unless the request's key has ``scope`` (for values in a body that need more than
    the route does, e.g. a backend override)."""
    key = caller(connection)
    if key is None or not key.allows(scope):
        raise PermissionDeniedException(f"{what} needs a key with the '{scope}' scope")


def authorize(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    opt = handler.opt
    access: Access = connection.app.state.api.access
    presented = bearer(connection)
    if opt.get("public"):
        # Open to anyone; a valid key is still noted (readiness shows an admin its checks).
        key = access.keys.find(presented)
        if key is not None:
            connection.scope.setdefault("state", {})[CALLER] = key
        return
    scope = Scope(opt.get("scope", Scope.ADMIN))
    if presented is not None:
        key = access.keys.find(presented)
        if key is None:
            raise NotAuthorizedException(
                "the API key is not recognised", headers={"WWW-Authenticate": "Bearer"}
            )
        if not key.allows(scope):
            raise PermissionDeniedException(
                f"key '{key.id}' lacks the '{scope}' scope this route needs"
            )
        connection.scope.setdefault("state", {})[CALLER] = key
        return
    params = connection.query_params
    if opt.get("link") and ("sig" in params or "exp" in params):
        shopper = str(connection.path_params.get("shopper_id", ""))
        try:
            expires = access.links.check_page(shopper, params.get("exp"), params.get("sig"))
        except LinkError as exc:
            raise PermissionDeniedException(str(exc)) from None
        connection.scope.setdefault("state", {})[LINK_EXPIRES] = expires
        return
    if opt.get("session") and SESSION_COOKIE in connection.cookies:
        try:
            access.links.check_session(connection.cookies.get(SESSION_COOKIE))
        except LinkError as exc:
            raise PermissionDeniedException(str(exc)) from None
        return
    how = (
        "a signed page link or an API key" if opt.get("link")
        else "a session from a page link or an API key" if opt.get("session")
        else "an API key"
    )  # fmt: skip
    raise NotAuthorizedException(
        f"this route needs {how} (Authorization: Bearer <key> with the '{scope}' scope)",
        headers={"WWW-Authenticate": "Bearer"},
    )
