"""Read a shop's catalog and interactions from CSV, JSONL or Parquet, validated row by row.

Errors name the file, the line (CSV/JSONL: physical line, header = line 1; Parquet: row,
first = 1) and the field. Nothing is written here: the caller stores the validated records in
one transaction, so a bad file leaves the store as it was.

By default the first bad row raises. Given a :class:`RowErrors`, a reader skips each row that
fails and records why instead; problems with the file itself (not found, not UTF-8, missing
column, CSV quoting the reader cannot get past, no rows) still raise.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from retrieval.catalog_text import (
    MAX_CATEGORY_CHARS,
    MAX_DESCRIPTION_CHARS,
    MAX_TITLE_CHARS,
    LinkPolicy,
    UnsafeLink,
    clean_text,
)
from retrieval.errors import IngestError
from retrieval.records import EventKind, Interaction, Product

CATALOG_REQUIRED = ("product_id", "title")
CATALOG_OPTIONAL = (
    "categories",
    "price",
    "in_stock",
    "year",
    "description",
    "image_url",
    "url",
)
INTERACTIONS_REQUIRED = ("shopper_id", "product_id", "timestamp")
INTERACTIONS_OPTIONAL = ("kind", "value")

MAX_ID_LENGTH = 128
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}
DEFAULT_MAX_BAD_ROWS = 100

T = TypeVar("T")


class BadLine(NamedTuple):
    """A line the reader could parse no row from, while the lines after it are still readable."""

    error: IngestError
    raw: Any


class RowErrors:
    """Row errors of one file, collected instead of raised, and the limit on how many.

    ``limit`` is a count of rows (``100`` or ``"100"``; ``None``: 100) or a share of the file's
    rows (``"5%"``); the file is over the limit when more rows than that failed.
    """

    def __init__(self, limit: int | str | None = None) -> None:
        text = str(DEFAULT_MAX_BAD_ROWS if limit is None else limit).strip()
        self.percent = text.endswith("%")
        try:
            self.max_bad: float = float(text[:-1]) if self.percent else int(text)
        except ValueError:
            self.max_bad = -1
        if not 0 <= self.max_bad <= (100 if self.percent else math.inf):  # NaN fails too
            raise ValueError(
                f"expected a number of rows (e.g. 100) or a percentage (e.g. 5%), got {text!r}"
            )
        self.file = ""
        self.rows = 0
        self.rejected: list[tuple[IngestError, Any]] = []
        # Products rejected from a catalog: id -> "file, line N", for the interactions after it.
        self.rejected_ids: dict[str, str] = {}

    def reject(self, error: IngestError, raw: Any) -> None:
        self.rejected.append((error, raw))

    @property
    def limit(self) -> str:
        if self.percent:
            return f"{self.max_bad:g}% of {self.rows} rows"
        return f"{self.max_bad:g} rows"

    @property
    def over_limit(self) -> bool:
        allowed = self.max_bad / 100 * self.rows if self.percent else self.max_bad
        return len(self.rejected) > allowed

    def check(self, report: Path) -> None:
        """Raise when more rows failed than the limit allows."""
        if self.over_limit:
            raise IngestError(
                self.file,
                f"{len(self.rejected)} of {self.rows} rows failed validation, more than the "
                f"limit of {self.limit}; nothing was written; the rejected rows are in {report}",
            )


def write_rejects(report: Path, *collected: RowErrors) -> int:
    """Write every rejected row as one JSON line (file, line, field, reason, row)."""
    report.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with report.open("w", encoding="utf-8") as out:
        for errors in collected:
            for error, raw in errors.rejected:
                record = {
                    "file": error.file,
                    "line": error.line,
                    "field": error.field,
                    "reason": error.detail,
                    "row": raw,
                }
                out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                count += 1
    return count


def read_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | BadLine]]:
    """Yield ``(line, row)`` pairs from a CSV, JSONL or Parquet file.

    A line that holds no row but leaves the rest of the file readable (CSV: too many values;
    JSONL: not a JSON object) comes as a :class:`BadLine`.
    """
    suffix = path.suffix.lower()
    if not path.is_file():
        raise IngestError(str(path), "file not found")
    if suffix in (".csv", ".tsv"):
        yield from _read_csv(path, delimiter="\t" if suffix == ".tsv" else ",")
    elif suffix in (".jsonl", ".ndjson"):
        yield from _read_jsonl(path)
    elif suffix in (".parquet", ".pq"):
        yield from _read_parquet(path)
    else:
        raise IngestError(
            str(path), f"unsupported file type '{suffix}'; use .csv, .tsv, .jsonl or .parquet"
        )


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    if not raw.strip():
        raise IngestError(str(path), "file is empty")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise IngestError(
            str(path), f"not valid UTF-8 (byte {exc.start}); re-save the file as UTF-8", line=line
        ) from None


def _read_csv(path: Path, delimiter: str) -> Iterator[tuple[int, Mapping[str, Any] | BadLine]]:
    text = _decode(path)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        if not reader.fieldnames:
            raise IngestError(str(path), "no header row")
        header = [h.strip() for h in reader.fieldnames]
        reader.fieldnames = header
        seen_rows = 0
        for row in reader:
            seen_rows += 1
            if None in row:
                extra = row.pop(None)
                error = IngestError(
                    str(path),
                    f"{len(header) + len(extra)} values for {len(header)} columns",
                    line=reader.line_num,
                )
                yield reader.line_num, BadLine(error, {**row, "(extra values)": extra})
                continue
            yield reader.line_num, row
    except csv.Error as exc:
        raise IngestError(str(path), f"malformed CSV: {exc}", line=reader.line_num) from None
    if seen_rows == 0:
        raise IngestError(str(path), "header only, no rows")


def _read_jsonl(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | BadLine]]:
    text = _decode(path)
    seen_rows = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        seen_rows += 1
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            error = IngestError(str(path), f"invalid JSON: {exc.msg}", line=line_no)
            yield line_no, BadLine(error, line)
            continue
        if not isinstance(row, dict):
            error = IngestError(str(path), "each line must be a JSON object", line=line_no)
            yield line_no, BadLine(error, row)
            continue
        yield line_no, row
    if seen_rows == 0:
        raise IngestError(str(path), "no rows")


def _read_parquet(path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise IngestError(str(path), f"not a readable Parquet file ({exc})") from None
    if table.num_rows == 0:
        raise IngestError(str(path), "no rows")
    yield from enumerate(table.to_pylist(), start=1)


def _check_columns(
    path: Path, first: Mapping[str, Any], line: int, required: tuple[str, ...]
) -> None:
    missing = [c for c in required if c not in first]
    if missing:
        raise IngestError(
            str(path),
            f"missing required column(s) {', '.join(missing)}; "
            f"found: {', '.join(sorted(first)) or 'none'}",
            line=line,
        )


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


class _Row:
    """Typed access to one row with errors that point at the field."""

    def __init__(self, path: Path, line: int, row: Mapping[str, Any]) -> None:
        self.path, self.line, self.row = path, line, row

    def fail(self, field: str, message: str) -> IngestError:
        return IngestError(str(self.path), message, line=self.line, field=field)

    def ident(self, field: str) -> str:
        value = self.row.get(field)
        if _blank(value):
            raise self.fail(field, "required value is empty")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, str | int):
            raise self.fail(field, f"expected a string or integer id, got {value!r}")
        text = str(value).strip()
        if len(text) > MAX_ID_LENGTH:
            raise self.fail(field, f"id longer than {MAX_ID_LENGTH} characters")
        return text

    def text(self, field: str, *, required: bool = False, max_chars: int | None = None) -> str:
        """Cleaned text (see :func:`clean_text`), at most ``max_chars`` long."""
        value = self.row.get(field)
        if _blank(value):
            if required:
                raise self.fail(field, "required value is empty")
            return ""
        if not isinstance(value, str):
            raise self.fail(field, f"expected text, got {value!r}")
        text = clean_text(value)
        if required and not text:
            raise self.fail(field, "required value has no visible characters")
        if max_chars is not None and len(text) > max_chars:
            raise self.fail(field, f"{len(text):,} characters; at most {max_chars:,}")
        return text

    def link(self, field: str, policy: LinkPolicy) -> str | None:
        value = self.row.get(field)
        if _blank(value):
            return None
        if not isinstance(value, str):
            raise self.fail(field, f"expected a URL, got {value!r}")
        try:
            return policy.check(value.strip())
        except UnsafeLink as exc:
            raise self.fail(field, f"unsafe link {value.strip()[:80]!r}: {exc}") from None

    def number(self, field: str, *, minimum: float | None = None) -> float | None:
        value = self.row.get(field)
        if _blank(value):
            return None
        if isinstance(value, bool):
            raise self.fail(field, f"expected a number, got {value!r}")
        try:
            number = float(value)  # type: ignore[arg-type]  # the except below is the check
        except (TypeError, ValueError):
            raise self.fail(field, f"expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise self.fail(field, f"expected a finite number, got {value!r}")
        if minimum is not None and number < minimum:
            raise self.fail(field, f"must be at least {minimum:g}, got {number:g}")
        return number

    def integer(self, field: str) -> int | None:
        number = self.number(field)
        if number is None:
            return None
        if not number.is_integer():
            raise self.fail(field, f"expected a whole number, got {self.row.get(field)!r}")
        return int(number)

    def boolean(self, field: str, default: bool) -> bool:
        value = self.row.get(field)
        if _blank(value):
            return default
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise self.fail(field, f"expected true/false or 1/0, got {value!r}")

    def categories(self, field: str) -> tuple[str, ...]:
        value = self.row.get(field)
        if _blank(value):
            return ()
        if isinstance(value, list | tuple):
            items = value
        elif isinstance(value, str):
            # '|' is the documented separator; ';' is accepted because spreadsheets use it.
            sep = "|" if "|" in value else ";"
            items = value.split(sep)
        else:
            raise self.fail(field, f"expected a list or '|'-separated text, got {value!r}")
        out = []
        for entry in items:
            if not isinstance(entry, str):
                raise self.fail(field, f"category {entry!r} is not text")
            # A path ("Food > Frozen > Pizza") is stored as its levels, most general first;
            # which level names a section is decided from the catalog (category_tree.py).
            for level in entry.split(">"):
                item = clean_text(level)
                if len(item) > MAX_CATEGORY_CHARS:
                    raise self.fail(
                        field, f"category of {len(item)} characters; at most {MAX_CATEGORY_CHARS}"
                    )
                if item and item not in out:
                    out.append(item)
        return tuple(out)

    def timestamp(self, field: str) -> float:
        value = self.row.get(field)
        if _blank(value):
            raise self.fail(field, "required value is empty")
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        text = str(value).strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise self.fail(
                field, f"expected Unix seconds or an ISO 8601 date-time, got {value!r}"
            ) from None


def _validate(
    path: Path,
    required: tuple[str, ...],
    parse: Callable[[_Row], T],
    errors: RowErrors | None,
) -> list[T]:
    """``parse`` every row; a failing row raises, or with ``errors`` is recorded and skipped."""
    records: list[T] = []
    columns_checked = False
    if errors is not None:
        errors.file = str(path)
    for line, raw in read_rows(path):
        if errors is not None:
            errors.rows += 1
        if isinstance(raw, BadLine):
            error, raw = raw
        else:
            if not columns_checked:
                _check_columns(path, raw, line, required)  # a file error even when skipping
                columns_checked = True
            try:
                records.append(parse(_Row(path, line, raw)))
                continue
            except IngestError as exc:
                error = exc
        if errors is None:
            raise error
        errors.reject(error, raw)
    return records


def read_catalog(
    path: Path, errors: RowErrors | None = None, links: LinkPolicy | None = None
) -> list[Product]:
    """Validated products from a catalog file; see the module docstring for error positions.
    Text is cleaned and bounded, links held to ``links`` (https or site paths by default):
    see :mod:`retrieval.catalog_text`.

    With ``errors``, bad rows are skipped and recorded there, and the ids of products whose row
    was rejected go to ``errors.rejected_ids``.
    """
    first_line: dict[str, int] = {}
    policy = links or LinkPolicy()

    def product(row: _Row) -> Product:
        pid = row.ident("product_id")
        if pid in first_line:
            raise row.fail(
                "product_id", f"duplicate id '{pid}' (first seen on line {first_line[pid]})"
            )
        try:
            price = row.number("price", minimum=0.0)
            parsed = Product(
                product_id=pid,
                title=row.text("title", required=True, max_chars=MAX_TITLE_CHARS),
                categories=row.categories("categories"),
                price=price if price is not None else 0.0,
                in_stock=row.boolean("in_stock", default=True),
                year=row.integer("year"),
                description=row.text("description", max_chars=MAX_DESCRIPTION_CHARS),
                image_url=row.link("image_url", policy),
                url=row.link("url", policy),
            )
        except IngestError:
            if errors is not None:
                errors.rejected_ids.setdefault(pid, f"{path}, line {row.line}")
            raise
        first_line[pid] = row.line
        return parsed

    return _validate(path, CATALOG_REQUIRED, product, errors)


def read_interactions(
    path: Path,
    known_products: set[str],
    errors: RowErrors | None = None,
    rejected_products: Mapping[str, str] | None = None,
) -> list[Interaction]:
    """Validated interactions; every product must be in ``known_products``.

    With ``errors``, bad rows are skipped and recorded there; ``rejected_products`` (id ->
    where, from the catalog's :class:`RowErrors`) names why an unknown product is unknown.
    """
    kinds = ", ".join(k.value for k in EventKind)
    rejected = rejected_products or {}

    def interaction(row: _Row) -> Interaction:
        pid = row.ident("product_id")
        if pid not in known_products:
            if pid in rejected:
                raise row.fail(
                    "product_id", f"product '{pid}' was rejected from the catalog ({rejected[pid]})"
                )
            raise row.fail("product_id", f"unknown product '{pid}': not in the catalog")
        kind_text = row.text("kind") or EventKind.PURCHASE.value
        try:
            kind = EventKind(kind_text.lower())
        except ValueError:
            raise row.fail("kind", f"unknown kind {kind_text!r}; use one of: {kinds}") from None
        return Interaction(
            shopper_id=row.ident("shopper_id"),
            product_id=pid,
            kind=kind,
            timestamp=row.timestamp("timestamp"),
            value=row.number("value"),
        )

    return _validate(path, INTERACTIONS_REQUIRED, interaction, errors)
