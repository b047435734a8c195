"""`composer keys new` (an API key and the configuration entry that admits it) and
`composer link` (a signed page link for one shopper, with the service's link secret)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from composer.cli.output import console, print_json
from composer.errors import UsageError
from composer.settings import Settings

app = typer.Typer()
keys_app = typer.Typer(help="API keys: make one for a caller.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("new")
def new(
    key_id: Annotated[str, typer.Option("--id", help="Names the caller in logs, e.g. storefront.")],
    scopes: Annotated[
        str, typer.Option(help="Comma-separated: pages:read, events:write, admin.")
    ] = "pages:read",
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """A new key, shown once, and its entry for COMPOSER_API__KEYS (the hash, not the key)."""
    from pydantic import ValidationError

    from composer.api.security.keys import new_key
    from composer.settings import Scope

    try:
        chosen = tuple(Scope(s.strip()) for s in scopes.split(",") if s.strip())
        key, config = new_key(key_id, chosen)
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            raise UsageError(f"--{first['loc'][0]}: {first['msg']}") from None
        known = ", ".join(s.value for s in Scope)
        raise UsageError(f"--scopes: {exc}; use {known}") from None
    entry = config.model_dump(mode="json")
    if json_out:
        print_json({"key": key, "config": entry})
        return
    console.print(
        f"key (shown once, give it to the caller): {key}", highlight=False, soft_wrap=True
    )
    console.print(
        "COMPOSER_API__KEYS is a JSON list of such entries (keep the old one while rotating):",
        highlight=False,
    )
    console.print(json.dumps(entry), highlight=False, soft_wrap=True)


@app.command("link")
def link(
    shopper: Annotated[str, typer.Option(help="The shopper whose page the link opens.")],
    ttl: Annotated[int | None, typer.Option(min=60, help="Seconds valid (default: setting).")] = (
        None
    ),
    base_url: Annotated[
        str, typer.Option(help="Where the service is reached.")
    ] = "http://127.0.0.1:8000",
) -> None:
    """A signed, expiring link to a shopper's page (needs COMPOSER_API__LINK_SECRET, the
    service's own)."""
    from composer.api.security.access import Access

    s = Settings()
    if s.api.link_secret is None:
        raise UsageError(
            "COMPOSER_API__LINK_SECRET is not set: a link is signed with the service's secret "
            "(or ask a running service: POST /v1/page-links)"
        )
    page_link = Access.from_settings(s.api).links.page_link(shopper, ttl or s.api.link_ttl_s)
    console.print(base_url.rstrip("/") + page_link.path(), highlight=False, soft_wrap=True)
