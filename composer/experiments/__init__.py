"""Prompt, backend and model experiments on live traffic: experiment files and their
reloading, assignment, the exposure log, guardrails, the report's statistics and its HTML.
The simulator (``composer.experiments.simulator``) is imported on its own: it starts servers
and drives them over HTTP, which nothing serving pages needs."""

from composer.experiments.assignment import Assignment, assign, unit_position
from composer.experiments.exposure_log import ExposureLog, exposure_of
from composer.experiments.guardrails import Breach, Health, breaches, health
from composer.experiments.html_report import render_html
from composer.experiments.registry import ExperimentRegistry, Snapshot
from composer.experiments.routing import Routed, route, unit_of
from composer.experiments.spec import (
    HOLDOUT,
    Experiment,
    Guardrails,
    Metric,
    Variant,
    load_experiment,
)
from composer.experiments.watch import ExperimentWatch

__all__ = [
    "HOLDOUT",
    "Assignment",
    "Breach",
    "Experiment",
    "ExperimentRegistry",
    "ExperimentWatch",
    "ExposureLog",
    "Guardrails",
    "Health",
    "Metric",
    "Routed",
    "Snapshot",
    "Variant",
    "assign",
    "breaches",
    "exposure_of",
    "health",
    "load_experiment",
    "render_html",
    "route",
    "unit_of",
    "unit_position",
]
