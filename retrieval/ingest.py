"""Read a shop's catalog and interactions from CSV, JSONL or Parquet, validated row by row.

Errors name the file, the line (CSV/JSONL: physical line, header = line 1; Parquet: row,
first = 1) and the field. Nothing is written here: the caller stores the validated records in
one transaction, so a bad file leaves the store as it was.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

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


def read_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """Yield ``(line, row)`` pairs from a CSV, JSONL or Parquet file."""
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


def _read_csv(path: Path, delimiter: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    text = _decode(path)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        if not reader.fieldnames:
            raise IngestError(str(path), "no header row")
        header = [h.strip() for h in reader.fieldnames]
        reader.fieldnames = header
        seen_rows = 0
        for row in reader:
            if None in row:
                raise IngestError(
                    str(path),
                    f"{len(header) + len(row[None])} values for {len(header)} columns",
                    line=reader.line_num,
                )
            seen_rows += 1
            yield reader.line_num, row
    except csv.Error as exc:
        raise IngestError(str(path), f"malformed CSV: {exc}", line=reader.line_num) from None
    if seen_rows == 0:
        raise IngestError(str(path), "header only, no rows")


def _read_jsonl(path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    text = _decode(path)
    seen_rows = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise IngestError(str(path), f"invalid JSON: {exc.msg}", line=line_no) from None
        if not isinstance(row, dict):
            raise IngestError(str(path), "each line must be a JSON object", line=line_no)
        seen_rows += 1
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

    def text(self, field: str, *, required: bool = False) -> str:
        value = self.row.get(field)
        if _blank(value):
            if required:
                raise self.fail(field, "required value is empty")
            return ""
        if not isinstance(value, str):
            raise self.fail(field, f"expected text, got {value!r}")
        return value.strip()

    def number(self, field: str, *, minimum: float | None = None) -> float | None:
        value = self.row.get(field)
        if _blank(value):
            return None
        if isinstance(value, bool):
            raise self.fail(field, f"expected a number, got {value!r}")
        try:
            number = float(value)
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
        for item in items:
            if not isinstance(item, str):
                raise self.fail(field, f"category {item!r} is not text")
            if item.strip() and item.strip() not in out:
                out.append(item.strip())
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


def read_catalog(path: Path) -> list[Product]:
    """Validated products from a catalog file; see the module docstring for error positions."""
    products: list[Product] = []
    first_line: dict[str, int] = {}
    for line, raw in read_rows(path):
        if not products:
            _check_columns(path, raw, line, CATALOG_REQUIRED)
        row = _Row(path, line, raw)
        pid = row.ident("product_id")
        if pid in first_line:
            raise row.fail(
                "product_id", f"duplicate id '{pid}' (first seen on line {first_line[pid]})"
            )
        first_line[pid] = line
        price = row.number("price", minimum=0.0)
        products.append(
            Product(
                product_id=pid,
                title=row.text("title", required=True),
                categories=row.categories("categories"),
                price=price if price is not None else 0.0,
                in_stock=row.boolean("in_stock", default=True),
                year=row.integer("year"),
                description=row.text("description"),
                image_url=row.text("image_url") or None,
                url=row.text("url") or None,
            )
        )
    return products


def read_interactions(path: Path, known_products: set[str]) -> list[Interaction]:
    """Validated interactions; every product must be in ``known_products``."""
    interactions: list[Interaction] = []
    kinds = ", ".join(k.value for k in EventKind)
    for line, raw in read_rows(path):
        if not interactions:
            _check_columns(path, raw, line, INTERACTIONS_REQUIRED)
        row = _Row(path, line, raw)
        pid = row.ident("product_id")
        if pid not in known_products:
            raise row.fail("product_id", f"unknown product '{pid}': not in the catalog")
        kind_text = row.text("kind") or EventKind.PURCHASE.value
        try:
            kind = EventKind(kind_text.lower())
        except ValueError:
            raise row.fail("kind", f"unknown kind {kind_text!r}; use one of: {kinds}") from None
        interactions.append(
            Interaction(
                shopper_id=row.ident("shopper_id"),
                product_id=pid,
                kind=kind,
                timestamp=row.timestamp("timestamp"),
                value=row.number("value"),
            )
        )
    return interactions
