"""Validation, grounding and repair of generated layouts."""

from composer.validation.checks import (
    CheckResult,
    Issue,
    PageChecker,
    check_and_repair,
    parse,
    prompt_fragments,
    text_checks,
)
from composer.validation.grounding import TextIssue, script_issue, text_issues, unsupported_claims
from composer.validation.words import WordIssue, copies, mentions, normalise, word_issues

__all__ = [
    "CheckResult",
    "Issue",
    "PageChecker",
    "TextIssue",
    "WordIssue",
    "check_and_repair",
    "copies",
    "mentions",
    "normalise",
    "parse",
    "prompt_fragments",
    "script_issue",
    "text_checks",
    "text_issues",
    "unsupported_claims",
    "word_issues",
]
