"""Signed, expiring links to a shopper's HTML page, and the browser session they open.

A storefront mints a link for its own shopper (``POST /v1/page-links`` or ``composer link``):
``/pages/{shopper_id}?exp=…&sig=…``, where ``sig`` is an HMAC over the shopper id and the
expiry. The id alone opens nothing, so walking sequential ids reads no one's history. Opening
a valid link sets a session cookie (HMAC over its expiry) that admits the product pages the
page's cards link to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import quote

SESSION_COOKIE = "composer_session"


class LinkError(Exception):
    """A link or session that does not admit: expired, or not signed by this service."""


@dataclass(frozen=True)
class PageLink:
    shopper_id: str
    expires_at: int
    sig: str

    def path(self) -> str:
        return f"/pages/{quote(self.shopper_id, safe='')}?exp={self.expires_at}&sig={self.sig}"


class LinkSigner:
    def __init__(self, secret: bytes, max_ttl_s: int) -> None:
        if len(secret) < 16:
            raise ValueError("the link secret must be at least 16 bytes")
        self._secret = secret
        self.max_ttl_s = max_ttl_s

    def _sign(self, *parts: str) -> str:
        mac = hmac.new(self._secret, "\x00".join(parts).encode("utf-8"), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode("ascii").rstrip("=")

    def page_link(self, shopper_id: str, ttl_s: int, now: float | None = None) -> PageLink:
        ttl = min(ttl_s, self.max_ttl_s)
        expires = int(now if now is not None else time.time()) + ttl
        return PageLink(shopper_id, expires, self._sign("page", shopper_id, str(expires)))

    def check_page(self, shopper_id: str, exp: str | None, sig: str | None) -> int:
        """The link's expiry when it admits ``shopper_id``'s page; else :class:`LinkError`."""
        return self._check("page", shopper_id, exp=exp, sig=sig)

    def session(self, expires_at: int) -> str:
        return f"{expires_at}.{self._sign('session', str(expires_at))}"

    def check_session(self, cookie: str | None) -> int:
        exp, _, sig = (cookie or "").partition(".")
        return self._check("session", exp=exp, sig=sig)

    def _check(self, kind: str, *parts: str, exp: str | None, sig: str | None) -> int:
        if not exp or not sig or not exp.isdigit() or len(exp) > 12:
            raise LinkError(f"the {kind} link is incomplete (exp and sig are required)")
        if not hmac.compare_digest(self._sign(kind, *parts, exp), sig):
            raise LinkError(f"the {kind} link's signature does not match; ask for a new link")
        expires = int(exp)
        if expires < time.time():
            raise LinkError(f"the {kind} link expired; ask the shop for a new one")
        if expires > time.time() + self.max_ttl_s:
            raise LinkError(f"the {kind} link lives longer than this service allows")
        return expires
