"""Copy for many requests from a JSONL file: resumable, and a bad line never stops the batch."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from composer.copywriting.model import CopyRequest
from composer.copywriting.writer import Copywriter
from composer.errors import ComposerError, first_error


@dataclass
class BatchReport:
    done: int = 0
    skipped: int = 0  # finished in an earlier run
    failed: list[str] = field(default_factory=list)  # one line per bad input line


def _key(line_no: int, data: dict | None) -> str:
    if isinstance(data, dict) and isinstance(data.get("id"), str) and data["id"]:
        return data["id"]
    return f"line-{line_no}"


def finished_keys(out_path: Path) -> set[str]:
    """Keys already in the output; a torn last line (a killed run) does not count."""
    keys: set[str] = set()
    if not out_path.is_file():
        return keys
    for line in out_path.read_text(encoding="utf-8").splitlines():
        try:
            keys.add(json.loads(line)["key"])
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return keys


def run_batch(
    writer: Copywriter,
    in_path: Path,
    out_path: Path,
    progress: Callable[[str, int], Callable[[int], None]],
) -> BatchReport:
    if not in_path.is_file():
        raise ComposerError(f"{in_path}: file not found")
    lines = in_path.read_text(encoding="utf-8").splitlines()
    done = finished_keys(out_path)
    report = BatchReport()
    advance = progress("writing copy", len(lines))
    # Repair a torn last line before appending, so every record starts on its own line.
    if out_path.is_file() and out_path.stat().st_size:
        with out_path.open("rb") as fh:
            fh.seek(-1, 2)
            torn = fh.read(1) != b"\n"
        if torn:
            with out_path.open("a", encoding="utf-8") as fh:
                fh.write("\n")
    with out_path.open("a", encoding="utf-8") as out:
        for line_no, line in enumerate(lines, start=1):
            advance(1)
            if not line.strip():
                continue
            data = None
            try:
                data = json.loads(line)
                key = _key(line_no, data)
                if key in done:
                    report.skipped += 1
                    continue
                request = CopyRequest.model_validate(data)
                result = writer.write(request)
                record = {"key": key, "line": line_no, **result.model_dump(mode="json")}
            except json.JSONDecodeError as exc:
                key = _key(line_no, None)
                if key in done:
                    report.skipped += 1
                    continue
                record = {"key": key, "line": line_no, "error": f"invalid JSON: {exc.msg}"}
            except ValidationError as exc:
                record = {
                    "key": _key(line_no, data),
                    "line": line_no,
                    "error": first_error(exc, where="line"),
                }
            except ComposerError as exc:
                record = {"key": _key(line_no, data), "line": line_no, "error": str(exc)}
            if "error" in record:
                report.failed.append(f"{in_path.name}, line {line_no}: {record['error']}")
            else:
                report.done += 1
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
    return report
