"""Exceptions of the composer; every message says what to do."""

from __future__ import annotations

from pydantic import ValidationError


class ComposerError(Exception):
    """Base class for errors shown to a user as one line."""


class UsageError(ComposerError):
    """A command-line or request argument is wrong; ``field`` names it where one does (the
    API answers 422 with it, so it is never parsed back out of the message)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def first_error(exc: ValidationError, where: str = "request") -> str:
    """``field: message`` for the first problem pydantic found (``where`` when no field)."""
    first = exc.errors()[0]
    return f"{'.'.join(map(str, first['loc'])) or where}: {first['msg']}"
