"""``create_app``: the Litestar application (litestar-fullstack style: controllers by area,
one module mapping domain errors to HTTP, services built once per process)."""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from composer.api.controllers import CONTROLLERS
from composer.api.errors import EXCEPTION_HANDLERS
from composer.api.logs import RequestContext
from composer.api.security.access import authorize
from composer.api.security.content_type import require_json
from composer.api.security.headers import SecurityHeaders, content_security_policy
from composer.api.services import Services
from composer.api.state import ApiState
from composer.settings import ApiSettings, Settings

API_VERSION = "1.0.0"


def create_app(
    settings: Settings, services: Services | None = None, *, api: ApiSettings | None = None
) -> Litestar:
    """The page API over ``services``, or over services loaded from ``settings`` in the
    background at start-up (``/readyz`` is 503 until they are in memory).

    ``api`` defaults to ``settings.api`` (the ``COMPOSER_API__*`` group) when it exists.
    """
    api_settings = api or settings.api
    state = ApiState(settings, api_settings, services)

    app = Litestar(
        route_handlers=CONTROLLERS,
        guards=[authorize],
        before_request=require_json,
        dependencies={
            "api": Provide(lambda: state, sync_to_thread=False),
            "pages": Provide(state.page_service, sync_to_thread=False),
            "copy": Provide(state.copy_service, sync_to_thread=False),
            "catalog": Provide(state.catalog_service, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=api_settings.max_body_bytes,
        on_startup=[state.start_loading],
        on_shutdown=[state.close],
        logging_config=None,  # logs are the process's business (JSON lines: see serve())
        openapi_config=OpenAPIConfig(
            title="Page composer API",
            version=API_VERSION,
            description="Personalised e-commerce pages, streamed; product copy; events.",
            path="/schema",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="An API key (`composer keys new`); scopes: pages:read, "
                        "events:write, admin (all three).",
                    )
                }
            ),
            security=[{"bearer": []}],
            render_plugins=[ScalarRenderPlugin(path="/"), SwaggerRenderPlugin()],
        ),
    )
    app.state.api = state
    # Outermost layer, around Litestar's exception handling, so even a 404 for an unknown
    # route gets a request id, an access log line and its metrics.
    csp = content_security_policy(settings.link_policy(), api_settings.frame_ancestors)
    app.asgi_handler = RequestContext(SecurityHeaders(app.asgi_handler, csp), state.metrics)
    return app
