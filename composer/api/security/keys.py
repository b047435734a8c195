"""API keys: configured as SHA-256 hashes with scopes, checked in constant time.

A key is a random secret the operator hands to one caller (a storefront, the event pipeline,
an engineer). The service keeps only its hash, so a leaked configuration does not leak keys;
several keys may be valid at once, which is how a key is rotated (add the new, deploy the
callers, remove the old).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from composer.settings.api import ApiKeyConfig, Scope

KEY_PREFIX = "pck_"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key(key_id: str, scopes: tuple[Scope, ...]) -> tuple[str, ApiKeyConfig]:
    """A fresh key (shown once) and the configuration entry that admits it."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, ApiKeyConfig(id=key_id, sha256=digest(key), scopes=scopes)


class KeyRing:
    """The configured keys; :meth:`find` compares against every one of them."""

    def __init__(self, keys: list[ApiKeyConfig] | tuple[ApiKeyConfig, ...]) -> None:
        self.keys = tuple(keys)
        ids = [k.id for k in self.keys]
        if len(ids) != len(set(ids)):
            raise ValueError("API key ids must be unique")

    def __bool__(self) -> bool:
        return bool(self.keys)

    def find(self, presented: str | None) -> ApiKeyConfig | None:
        """The key whose hash matches; no early exit, so timing does not tell which
        configured key came closest."""
        if not presented:
            return None
        seen = digest(presented)
        found = None
        for key in self.keys:
            if hmac.compare_digest(seen, key.sha256):
                found = key
        return found
