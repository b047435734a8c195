"""The page API: a Litestar app storefronts call once per page.

``create_app(settings)`` builds the app; ``composer.api.server.serve`` runs it under uvicorn.
"""

from composer.api.app import create_app
from composer.api.services import Services

__all__ = ["Services", "create_app"]
