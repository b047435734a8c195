"""Catalog text and links are untrusted: the rules every product field is held to, at
ingest and again where it is shown (a store written by an older version must not become a
cross-site script).

- Links (``url``, ``image_url``): absolute ``https://`` URLs (``http://`` when allowed), on
  an allow-listed host when a list is set, or site-relative paths (``/p/1``). Anything else
  (``javascript:``, ``data:``, ``//host``, other schemes, credentials in the URL, control
  characters) is rejected with the reason.
- Text: control characters and bidirectional overrides are removed and runs of whitespace
  become one space (a newline in a category cannot start a new line of a prompt, an RTL
  override cannot reverse what a shopper reads); lengths are bounded.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_TITLE_CHARS = 300
MAX_DESCRIPTION_CHARS = 5000
MAX_CATEGORY_CHARS = 64
MAX_URL_CHARS = 2048

_WHITESPACE = re.compile(r"\s+")
# Control, format (the bidi overrides LRE…RLO and LRI…PDI are Cf, with other invisible
# characters that have no place in a title), private use, lone surrogates, unassigned.
_DROPPED = {"Cc", "Cf", "Co", "Cs", "Cn"}


class UnsafeLink(ValueError):
    """A link that is not an allowed absolute URL or a site-relative path."""


@dataclass(frozen=True)
class LinkPolicy:
    """Which links a catalog may carry. ``hosts`` empty: any host."""

    allow_http: bool = False
    hosts: frozenset[str] = field(default_factory=frozenset)

    def check(self, value: str) -> str:
        """``value`` when it is allowed; else :class:`UnsafeLink` saying why."""
        if len(value) > MAX_URL_CHARS:
            raise UnsafeLink(f"longer than {MAX_URL_CHARS} characters")
        if any(unicodedata.category(c)[0] in "CZ" and c != " " for c in value) or " " in value:
            raise UnsafeLink("contains spaces or control characters")
        if value.startswith("/") and not value.startswith("//") and "\\" not in value:
            return value  # a path on the shop's own site
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises on a malformed port
        except ValueError as exc:
            raise UnsafeLink(f"not a valid URL ({exc})") from None
        schemes = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme.lower() not in schemes:
            allowed = " or ".join(f"{s}://" for s in schemes)
            raise UnsafeLink(
                f"scheme '{parts.scheme}:' is not allowed; use {allowed} or a path starting with /"
                if parts.scheme
                else f"not an absolute URL; use {allowed} or a path starting with /"
            )
        if not parts.hostname:
            raise UnsafeLink("has no host")
        if parts.username or parts.password:
            raise UnsafeLink("carries credentials (user:password@)")
        if self.hosts and parts.hostname.lower() not in self.hosts:
            raise UnsafeLink(f"host '{parts.hostname}' is not in the allowed hosts")
        return value

    def allows(self, value: str | None) -> bool:
        if not value:
            return False
        try:
            self.check(value)
        except UnsafeLink:
            return False
        return True


def clean_text(value: str) -> str:
    """Without control, format (bidi) or other invisible characters; whitespace collapsed."""
    kept = "".join(
        " " if c.isspace() else c
        for c in value
        if c.isspace() or unicodedata.category(c) not in _DROPPED
    )
    return _WHITESPACE.sub(" ", kept).strip()
