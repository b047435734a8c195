"""Rendering a hydrated page to HTML."""

from composer.rendering.renderer import PageRenderer

__all__ = ["PageRenderer"]
