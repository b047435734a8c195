"""Exceptions of the retrieval layer; every message says what to fix."""

from __future__ import annotations

from collections.abc import Sequence


class RetrievalError(Exception):
    """Base class for errors a user can act on."""


class IngestError(RetrievalError):
    """A catalog or interaction file is not acceptable; nothing was written."""

    def __init__(
        self, file: str, message: str, *, line: int | None = None, field: str | None = None
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.detail = message
        where = file
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


class UnknownProductError(RetrievalError):
    def __init__(self, product_ids: Sequence[str]) -> None:
        self.product_ids = list(product_ids)
        shown = ", ".join(self.product_ids[:5])
        more = f" (and {len(self.product_ids) - 5} more)" if len(self.product_ids) > 5 else ""
        super().__init__(
            f"unknown product id(s): {shown}{more}; ingest the catalog that contains them first"
        )


class NotBuiltError(RetrievalError):
    """An artifact (index, model) is missing: set-up has not run for this folder."""


class DataFetchError(RetrievalError):
    """A packaged data set or model could not be fetched or failed its checksum."""


class DeviceUnavailable(RetrievalError):
    """The configured device (``COMPOSER_DEVICE=cuda``) is not there."""
