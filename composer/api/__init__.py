"""The page API: a Litestar app storefronts call once per page.

``create_app(settings)`` builds the app; ``composer.api.server.serve`` runs it under uvicorn.
Imports are lazy so that ``composer.settings`` can import :mod:`composer.api.config` without
pulling in Litestar (or creating an import cycle).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from composer.api.app import create_app
    from composer.api.config import ApiSettings
    from composer.api.services import Services

__all__ = ["ApiSettings", "Services", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from composer.api.app import create_app

        return create_app
    if name == "Services":
        from composer.api.services import Services

        return Services
    if name == "ApiSettings":
        from composer.api.config import ApiSettings

        return ApiSettings
    raise AttributeError(f"module 'composer.api' has no attribute {name!r}")
