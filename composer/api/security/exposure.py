"""What `serve` demands before it opens a socket.

On loopback the service stays easy to try: with no keys configured it makes one (all
scopes) for the run, and a link secret, and says so. Anywhere else it refuses to start
until keys, a link secret and a pseudonym secret of its own are configured: defaults that
are safe on one's own machine are not safe on a network.
"""

from __future__ import annotations

import ipaddress
import secrets

from pydantic import SecretStr

from composer.api.security.keys import new_key
from composer.errors import UsageError
from composer.settings import DEFAULT_PSEUDONYM_SALT, Scope, Settings

MIN_SECRET_CHARS = 32


class UnsafeExposure(UsageError):
    """A server reachable from outside was asked to start with loopback-only defaults."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_exposure(settings: Settings, host: str) -> None:
    """Raise :class:`UnsafeExposure` naming every missing setting when ``host`` is not
    loopback and a loopback-only default is in force."""
    if is_loopback(host):
        return
    api = settings.api
    missing = []
    if not api.keys:
        missing.append("COMPOSER_API__KEYS (make one with `composer keys new`)")
    if api.link_secret is None:
        missing.append(f"COMPOSER_API__LINK_SECRET (at least {MIN_SECRET_CHARS} random characters)")
    salt = settings.pseudonym_salt
    if salt == DEFAULT_PSEUDONYM_SALT or len(salt) < MIN_SECRET_CHARS:
        missing.append(
            f"COMPOSER_PSEUDONYM_SALT (a secret of at least {MIN_SECRET_CHARS} characters, "
            "not the default)"
        )
    if missing:
        raise UnsafeExposure(
            f"refusing to serve on {host}, which is not loopback, with defaults that are only "
            f"safe locally; set {'; '.join(missing)}"
        )


def with_local_credentials(settings: Settings) -> tuple[Settings, str | None]:
    """``settings`` with a key (all scopes) and a link secret made for this run where none
    are configured, and the key made (shown once, at start-up). Only for loopback:
    :func:`check_exposure` runs first."""
    api = settings.api
    key = None
    updates: dict[str, object] = {}
    if not api.keys:
        key, config = new_key("local", (Scope.ADMIN,))
        updates["keys"] = [config]
    if api.link_secret is None:
        updates["link_secret"] = SecretStr(secrets.token_urlsafe(32))
    if not updates:
        return settings, None
    return settings.model_copy(update={"api": api.model_copy(update=updates)}), key
