"""Command-line interface."""

from composer.cli.app import app, main, run

__all__ = ["app", "main", "run"]
