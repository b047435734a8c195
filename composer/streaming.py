"""Pick complete sections out of a JSON page while it is still being generated.

Constrained decoding produces compact JSON of a known shape, ``{"title": …, "sections":
[{…}, {…}]}``, so a small scanner that tracks strings and nesting depth finds each section
object the moment its closing brace arrives. A streaming JSON library would also do; this
needs none of the generality and stays 40 lines.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

_SECTIONS_KEY = re.compile(r'"sections"\s*:\s*$')


class SectionScanner:
    def __init__(self) -> None:
        self.text = ""
        self._pos = 0
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._section_start: int | None = None
        self._in_sections = False

    def feed(self, delta: str) -> list[dict[str, Any]]:
        """Add text; return the sections completed by it, in order."""
        self.text += delta
        done: list[dict[str, Any]] = []
        while self._pos < len(self.text):
            ch = self.text[self._pos]
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif ch == "\\":
                    self._escape = True
                elif ch == '"':
                    self._in_string = False
            elif ch == '"':
                self._in_string = True
            elif ch in "[{":
                if ch == "[" and self._depth == 1 and _SECTIONS_KEY.search(self.text[: self._pos]):
                    self._in_sections = True
                self._depth += 1
                if ch == "{" and self._in_sections and self._depth == 3:
                    self._section_start = self._pos
            elif ch in "]}":
                if (
                    ch == "}"
                    and self._in_sections
                    and self._depth == 3
                    and (self._section_start is not None)
                ):
                    raw = self.text[self._section_start : self._pos + 1]
                    self._section_start = None
                    # A malformed section is left to the final parse, which reports it.
                    with contextlib.suppress(json.JSONDecodeError):
                        done.append(json.loads(raw))
                if ch == "]" and self._in_sections and self._depth == 2:
                    self._in_sections = False
                self._depth -= 1
            self._pos += 1
        return done
