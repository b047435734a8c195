"""The experiments this server process runs: what is in force, what was refused, what is
paused (admin)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, get

from composer.api.state import Pages
from composer.settings import Scope


class ExperimentController(Controller):
    tags: Sequence[str] | None = ("experiments",)

    @get(
        "/v1/experiments",
        summary="Experiments in force in this server process",
        opt={"scope": Scope.ADMIN},
    )
    async def experiments(self, pages: Pages) -> dict[str, Any]:
        """The experiment files this process runs (each worker rereads them on its own,
        every ``COMPOSER_EXPERIMENTS__POLL_S``), the files it refused and why (the version
        before keeps running), and the variants a guardrail paused."""
        if pages.experiments is None:
            return {"experiments": [], "refused": {}, "paused": []}
        snapshot = pages.experiments.snapshot
        now = datetime.now(UTC)
        return {
            "experiments": [
                {
                    **e.model_dump(mode="json", exclude={"overrides"}),
                    "live": e.live(now),
                    "overrides": len(e.overrides),
                }
                for e in snapshot.experiments
            ],
            "refused": snapshot.errors,
            "paused": [
                {"experiment": exp, "variant": variant, "reason": reason}
                for (exp, variant), reason in sorted(snapshot.paused.items())
            ],
        }
