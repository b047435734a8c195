"""Prompt, backend and model experiments on live traffic: experiment files and their
reloading, assignment, the exposure log, guardrails, and the report's statistics."""

from composer.experiments.assignment import Assignment, assign, unit_position
from composer.experiments.exposure_log import ExposureLog, exposure_of
from composer.experiments.guardrails import Breach, Health, breaches, health
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
    "route",
    "unit_of",
    "unit_position",
]
