"""What the servers and jobs of the topology share as child processes: finding a console
script, the environment a shop's processes run with, and a failure's last line."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from composer.errors import ComposerError

__all__ = ["ProcessFailed", "console_script", "last_line", "shop_env"]

# Settings that say where a shop lives: a child set up or served for another shop must not
# inherit them from the caller's environment (they would point it at the caller's store).
SHOP_LOCATION = (
    "COMPOSER_ARTIFACTS_DIR",
    "COMPOSER_DATABASE_URL",
    "COMPOSER_CHROMA_URL",
    "COMPOSER_CHROMA_PATH",
    "COMPOSER_SHOP_PROFILE",
    "COMPOSER_LLM_BACKEND",
    "COMPOSER_VLLM_URL",
)


class ProcessFailed(ComposerError):
    """A console script this needs is missing, or a child process failed."""


def console_script(name: str) -> str:
    """The path of ``name`` (`composer`, `chroma`) installed beside this Python."""
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        raise ProcessFailed(
            f"{path} not found: install the project into this environment "
            "(`bash scripts/bootstrap.sh`)"
        )
    return str(path)


def shop_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without where its own shop lives, plus ``overrides``."""
    inherited = {k: v for k, v in os.environ.items() if k not in SHOP_LOCATION}
    return inherited | dict(overrides)


def last_line(*outputs: str) -> str:
    """The last non-empty line of the first output that has one (a tool's error)."""
    for text in outputs:
        lines = text.strip().splitlines()
        if lines:
            return lines[-1]
    return "no output"
