"""Prompt building: versioned Jinja2 templates and the variables they render."""

from composer.prompting.library import PromptLibrary
from composer.prompting.page_prompt import HandleMap, clean_fact, page_variables

__all__ = ["HandleMap", "PromptLibrary", "clean_fact", "page_variables"]
