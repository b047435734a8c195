"""What names a page composed ahead: the request it answers (one queue row and one kept page
per shopper and request), and the hash of everything the page depends on."""

from __future__ import annotations

import hashlib
import json

from composer.layout import PageKind
from composer.page_request import PageRequest

# A search page depends on its query: composed on request, never ahead.
AHEAD_KINDS = frozenset({PageKind.HOME, PageKind.CATEGORY})


def applies(request: PageRequest) -> bool:
    """A known shopper's home or category page, as the shop serves it: a caller choosing the
    backend, prompt or order (an admin) or sending recent items gets a page on request."""
    return (
        request.shopper_id is not None
        and request.kind in AHEAD_KINDS
        and request.backend is None
        and request.prompt is None
        and request.order == "ranked"
        and not request.recent_items
    )


def normalise(request: PageRequest) -> PageRequest:
    """The request a kept page answers: as JSON (the HTML is rendered when served, from the
    catalog of that moment), without the session id (a known shopper is their own unit)."""
    return request.model_copy(update={"format": "json", "session_id": None})


def request_hash(request: PageRequest) -> str:
    body = request.model_dump_json(exclude={"format", "session_id"})
    return hashlib.blake2b(body.encode(), digest_size=16).hexdigest()


def key_hash(key: tuple[object, ...]) -> str:
    """Stable across processes and restarts (the key is strings, numbers and tuples)."""
    body = json.dumps(key, default=str, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()
