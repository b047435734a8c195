"""What every command group shares: the settings, the store, the ``--json`` option."""

from __future__ import annotations

from typing import Annotated

import typer

from composer.settings import Settings

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def settings() -> Settings:
    return Settings()
