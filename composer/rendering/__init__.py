"""Rendering a hydrated page to HTML."""

from composer.rendering.renderer import PageRenderer
from composer.rendering.styles import style_hashes

__all__ = ["PageRenderer", "style_hashes"]
