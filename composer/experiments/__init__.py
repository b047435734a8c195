"""Prompt, backend and model experiments on live traffic: experiment files and assignment."""

from composer.experiments.assignment import Assignment, assign, unit_position
from composer.experiments.spec import (
    HOLDOUT,
    Experiment,
    Guardrails,
    Metric,
    Variant,
    load_experiment,
)

__all__ = [
    "HOLDOUT",
    "Assignment",
    "Experiment",
    "Guardrails",
    "Metric",
    "Variant",
    "assign",
    "load_experiment",
    "unit_position",
]
