"""A page request in an experiment: which arm it is in and what that arm changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from composer.experiments.assignment import Assignment, assign
from composer.experiments.registry import Snapshot
from composer.experiments.spec import HOLDOUT
from composer.page_request import PageRequest
from composer.settings import BackendName


@dataclass(frozen=True)
class Routed:
    request: PageRequest  # with the arm's settings
    assignment: Assignment | None  # None: the page is in no experiment


def unit_of(request: PageRequest, pseudonym: str | None) -> str | None:
    """What an experiment assigns: the shopper's pseudonym, else the anonymous session."""
    if pseudonym is not None:
        return pseudonym
    if request.session_id is not None:
        return f"session:{request.session_id}"
    return None


def route(snapshot: Snapshot, request: PageRequest, unit: str | None, now: datetime) -> Routed:
    """The request as its experiment arm makes it. A caller that chose the backend, prompt or
    order itself (an admin trying something) is in no experiment; so is a request without a
    unit to assign. A paused variant's shoppers get the control's page, not analysed."""
    chosen = request.backend is not None or request.prompt is not None
    if unit is None or chosen or request.order != "ranked":
        return Routed(request, None)
    experiment = snapshot.for_page(request.kind, now)
    if experiment is None:
        return Routed(request, None)
    assignment = assign(experiment, unit)
    if assignment.variant == HOLDOUT:
        return Routed(request.model_copy(update={"backend": BackendName.RULES}), assignment)
    if (experiment.name, assignment.variant) in snapshot.paused:
        assignment = Assignment(experiment.name, experiment.control.name, analysed=False)
    variant = experiment.variant(assignment.variant)
    assert variant is not None, "assignment names the experiment's own variants"
    update: dict[str, object] = {"order": variant.order}
    if variant.backend is not None:
        update["backend"] = variant.backend
    if variant.prompt is not None:
        update["prompt"] = variant.prompt
    if variant.max_sections is not None:
        update["max_sections"] = variant.max_sections
    return Routed(request.model_copy(update=update), assignment)
