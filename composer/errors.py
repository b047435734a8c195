"""Exceptions of the composer; every message says what to do."""

from __future__ import annotations


class ComposerError(Exception):
    """Base class for errors shown to a user as one line."""


class UsageError(ComposerError):
    """A command-line or request argument is wrong."""
