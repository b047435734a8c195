"""Find `prompts/` and `templates/` from a checkout or an installed wheel."""

from __future__ import annotations

import sys
from pathlib import Path

from composer.errors import ComposerError

_CHECKOUT = Path(__file__).resolve().parents[1]
_INSTALLED = Path(sys.prefix) / "share" / "page-composer"


def resource_dir(name: str) -> Path:
    """``prompts`` or ``templates``: the checkout's folder first, else the installed copy."""
    for base in (_CHECKOUT, _INSTALLED):
        path = base / name
        if path.is_dir():
            return path
    raise ComposerError(
        f"cannot find the '{name}' folder next to the package or in {_INSTALLED}; "
        "reinstall the project"
    )
