"""Validation, grounding and repair of generated layouts."""

from composer.validation.checks import (
    CheckResult,
    Issue,
    PageChecker,
    check_and_repair,
    parse,
)
from composer.validation.grounding import TextIssue, script_issue, text_issues, unsupported_claims

__all__ = [
    "CheckResult",
    "Issue",
    "PageChecker",
    "TextIssue",
    "check_and_repair",
    "parse",
    "script_issue",
    "text_issues",
    "unsupported_claims",
]
