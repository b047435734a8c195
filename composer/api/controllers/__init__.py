"""Route handlers grouped by area; errors are mapped in :mod:`composer.api.errors` only."""

from composer.api.controllers.copy import CopyController
from composer.api.controllers.events import EventController
from composer.api.controllers.experiments import ExperimentController
from composer.api.controllers.pages import PageController
from composer.api.controllers.products import ProductController
from composer.api.controllers.system import SystemController

CONTROLLERS = [
    PageController,
    CopyController,
    EventController,
    ExperimentController,
    ProductController,
    SystemController,
]

__all__ = ["CONTROLLERS"]
