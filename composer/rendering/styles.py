"""The pages' stylesheets, inlined, and their hashes for the Content-Security-Policy.

Styles are inlined so that a storefront can embed a page's HTML as it is; the CSP then
allows exactly these style blocks by hash (``style-src 'sha256-…'``), no other inline style.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from pathlib import Path

from composer.resources import resource_dir

# The style block of each frame: pages; a product's page and the 404 page.
STYLESHEETS: tuple[tuple[str, ...], ...] = (("page.css",), ("page.css", "product.css"))


def stylesheet(folder: Path, *names: str) -> str:
    return "\n".join((folder / name).read_text(encoding="utf-8") for name in names)


@lru_cache(maxsize=4)
def style_hashes(folder: Path | None = None) -> tuple[str, ...]:
    """CSP sources (``'sha256-…'``) of every style block the templates render."""
    where = folder or resource_dir("templates")
    out = []
    for names in STYLESHEETS:
        digest = hashlib.sha256(stylesheet(where, *names).encode("utf-8")).digest()
        out.append(f"'sha256-{base64.b64encode(digest).decode('ascii')}'")
    return tuple(out)
