"""Versioned prompt templates: `prompts/NAME.j2`, each with a `system` and a `user` block."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

from composer.errors import UsageError
from composer.llm.base import ChatMessage
from composer.resources import resource_dir


class PromptLibrary:
    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or resource_dir("prompts")
        # Folders added by `add_file` (a prompt under evaluation that is not one of the
        # product's prompts, e.g. a test fixture); searched after ``folder``.
        self.extra: list[Path] = []
        # Sandboxed: templates are edited by prompt engineers, and the values they render
        # include catalog text; neither should reach Python internals.
        self.env = SandboxedEnvironment(
            loader=FileSystemLoader(str(self.folder)),
            undefined=StrictUndefined,
            keep_trailing_newline=False,
            autoescape=False,
        )
        # `tojson` escapes ' < > & as \u0027 and the like for HTML; a prompt is not HTML and
        # every escape costs tokens. `quoted` still quotes and escapes quotes, so catalog
        # text stays one delimited value.
        self.env.filters["quoted"] = lambda value: json.dumps(value, ensure_ascii=False)
        self._hashes: dict[str, tuple[tuple[int, int], str]] = {}
        self._servable: tuple[tuple[int, int], dict[str, Any]] | None = None

    def add_file(self, path: Path) -> str:
        """Make a prompt file outside ``prompts/`` available by its stem; it may extend or
        include the product's prompts. Returns the name to ask for."""
        if path.suffix != ".j2" or not path.is_file():
            raise UsageError(f"no prompt file at {path} (a Jinja2 file ending in .j2)")
        folder = path.resolve().parent
        if (self.folder / path.name).is_file() and folder != self.folder.resolve():
            raise UsageError(f"{path.name} would shadow prompts/{path.name}; rename the file")
        if folder not in self.extra and folder != self.folder.resolve():
            self.extra.append(folder)
            self.env.loader = FileSystemLoader([str(self.folder), *map(str, self.extra)])
        return path.stem

    def servable(self, kind: str = "pages") -> list[str]:
        """The prompts of ``kind`` the API may be asked for by name (``servable.yaml``)."""
        manifest = self.folder / "servable.yaml"
        try:
            st = manifest.stat()
        except FileNotFoundError:
            return []
        # Read again only when the file changed: the API checks a requested prompt per page.
        stamp = (st.st_mtime_ns, st.st_size)
        if self._servable is None or self._servable[0] != stamp:
            data = yaml.safe_load(manifest.read_text(encoding="utf-8")) or {}
            self._servable = (stamp, data)
        return [str(name) for name in self._servable[1].get(kind, [])]

    def names(self, prefix: str = "") -> list[str]:
        """Prompts of ``prompts/`` (not the added files)."""
        return sorted(p.stem for p in self.folder.glob(f"{prefix}*.j2"))

    def file_hash(self, name: str) -> str:
        """The prompt file's hash, read again only when the file's mtime or size changed:
        every page records it, and a stat is much cheaper than reading and hashing."""
        path = self._path(name)
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        known = self._hashes.get(name)
        if known is not None and known[0] == stamp:
            return known[1]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        self._hashes[name] = (stamp, digest)
        return digest

    def _path(self, name: str) -> Path:
        for folder in (self.folder, *self.extra):
            path = folder / f"{name}.j2"
            if path.is_file():
                return path
        raise UsageError(
            f"unknown prompt '{name}'; available: {', '.join(self.names()) or 'none'}, or "
            "the path of a .j2 file"
        )

    def has_block(self, name: str, block: str) -> bool:
        self._path(name)
        return block in self.env.get_template(f"{name}.j2").blocks

    def render_block(self, name: str, block: str, variables: dict[str, Any]) -> str:
        self._path(name)
        template = self.env.get_template(f"{name}.j2")
        render = template.blocks.get(block)
        if render is None:
            raise UsageError(f"prompt '{name}' has no '{block}' block")
        return "".join(render(template.new_context(dict(variables)))).strip()

    def render(self, name: str, variables: dict[str, Any]) -> tuple[ChatMessage, ...]:
        self._path(name)
        try:
            template = self.env.get_template(f"{name}.j2")
        except TemplateNotFound:  # pragma: no cover - _path checked it
            raise UsageError(f"unknown prompt '{name}'") from None
        messages = []
        for role in ("system", "user"):
            block = template.blocks.get(role)
            if block is None:
                raise UsageError(f"prompt '{name}' has no '{role}' block")
            text = "".join(block(template.new_context(dict(variables)))).strip()
            messages.append(ChatMessage(role, text))
        return tuple(messages)
