"""Ingest through the CLI on real SQLite and Chroma: good files in three formats, and bad
files rejected with one readable line while the store stays exactly as it was."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from composer.cli import run
from retrieval.ingest import read_catalog
from retrieval.vector_index import ChromaIndex
from retrieval.versions import ModelVersions

CATALOG_CSV = """product_id,title,categories,price,in_stock,year,description
p1,Trail Tent,Outdoor|Camping,129.00,true,2021,Two-person tent for long hikes
p2,Camp Stove,Outdoor|Cooking,49.50,1,2020,Folding gas stove
p3,Espresso Maker,Kitchen,89.99,false,2019,Stovetop espresso pot
p4,Chef Knife,Kitchen|Cooking,59.00,yes,,Forged steel knife
p5,Hiking Boots,Outdoor|Shoes,139.00,true,2022,Waterproof leather boots
"""
EVENTS_CSV = """shopper_id,product_id,kind,timestamp,value
s1,p1,purchase,1700000000,
s1,p2,view,2023-11-15T10:00:00Z,
s2,p3,cart,1700000500,
s2,p4,purchase,1700000600,5
"""


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def db_snapshot(artifacts: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(artifacts / "shop.db")
    try:
        return {
            t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall())
            for t in ("products", "events", "shoppers")
        }
    finally:
        conn.close()


@pytest.fixture
def small_shop(tmp_path: Path, isolated_settings: Path, capsys) -> Path:  # type: ignore[no-untyped-def]
    cat = write(tmp_path / "catalog.csv", CATALOG_CSV)
    ev = write(tmp_path / "events.csv", EVENTS_CSV)
    code = run(["ingest", "--catalog", str(cat), "--interactions", str(ev), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(out)
    assert result["products_added"] == 5 and result["events_added"] == 4
    assert result["products_embedded"] == 5
    return isolated_settings


def test_csv_jsonl_parquet_give_the_same_products(tmp_path: Path) -> None:
    csv_products = read_catalog(write(tmp_path / "c.csv", CATALOG_CSV))
    rows = [
        {
            "product_id": p.product_id,
            "title": p.title,
            "categories": list(p.categories),
            "price": p.price,
            "in_stock": p.in_stock,
            "year": p.year,
            "description": p.description,
        }
        for p in csv_products
    ]
    jsonl = write(tmp_path / "c.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    assert read_catalog(jsonl) == csv_products
    assert read_catalog(tmp_path / "c.parquet") == csv_products
    assert csv_products[0].categories == ("Outdoor", "Camping")
    assert csv_products[2].in_stock is False
    assert csv_products[3].year is None


def test_category_paths_are_stored_as_their_levels(tmp_path: Path) -> None:
    catalog = "product_id,title,categories\np1,Pizza,Food > Frozen > Frozen Pizza|Deals\n"
    catalog += "p2,Peas,Food>Frozen|Food > Vegetables\n"
    products = read_catalog(write(tmp_path / "c.csv", catalog))
    assert products[0].categories == ("Food", "Frozen", "Frozen Pizza", "Deals")
    assert products[1].categories == ("Food", "Frozen", "Vegetables")


BAD_CATALOGS = {
    "missing column": (
        "product_id,price\np9,3.0\n",
        "line 2: missing required column(s) title",
    ),
    "wrong type": (
        "product_id,title,price\np9,Lamp,3.0\np10,Desk,cheap\n",
        "line 3, field 'price': expected a number, got 'cheap'",
    ),
    "duplicate id": (
        "product_id,title\np9,Lamp\np10,Desk\np9,Chair\n",
        "line 4, field 'product_id': duplicate id 'p9' (first seen on line 2)",
    ),
    "empty file": ("", "file is empty"),
    "header only": ("product_id,title\n", "header only, no rows"),
    "negative price": (
        "product_id,title,price\np9,Lamp,-1\n",
        "line 2, field 'price': must be at least 0, got -1",
    ),
    "bad stock flag": (
        "product_id,title,in_stock\np9,Lamp,maybe\n",
        "line 2, field 'in_stock': expected true/false or 1/0, got 'maybe'",
    ),
    "wrong encoding": (
        "product_id,title\np9,Caf\xe9 chair\n".encode("latin-1"),
        "line 2: not valid UTF-8",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CATALOGS))
def test_bad_catalog_is_rejected_with_file_line_field_and_nothing_changes(
    case: str,
    small_shop: Path,
    tmp_path: Path,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    content, expected = BAD_CATALOGS[case]
    before = db_snapshot(small_shop)
    bad = write(tmp_path / "bad.csv", content)
    code = run(["ingest", "--catalog", str(bad)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: {bad}")
    assert expected in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert db_snapshot(small_shop) == before


BAD_EVENTS = {
    "unknown product": (
        "shopper_id,product_id,timestamp\ns1,p1,1700000000\ns1,p404,1700000001\n",
        "line 3, field 'product_id': unknown product 'p404': not in the catalog",
    ),
    "bad timestamp": (
        "shopper_id,product_id,timestamp\ns1,p1,yesterday\n",
        "line 2, field 'timestamp': expected Unix seconds or an ISO 8601 date-time",
    ),
    "bad kind": (
        "shopper_id,product_id,timestamp,kind\ns1,p1,1700000000,like\n",
        "line 2, field 'kind': unknown kind 'like'; use one of: view, click, cart, purchase, "
        "rating",
    ),
    "bad json line": (
        '{"shopper_id": "s1", "product_id": "p1", "timestamp": 1}\n{"shopper_id": \n',
        "line 2: invalid JSON",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_EVENTS))
def test_bad_interactions_are_rejected_and_the_catalog_in_the_same_call_is_not_written(
    case: str,
    small_shop: Path,
    tmp_path: Path,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    content, expected = BAD_EVENTS[case]
    before = db_snapshot(small_shop)
    suffix = ".jsonl" if "json" in case else ".csv"
    bad = write(tmp_path / f"bad{suffix}", content)
    # A valid, changed catalog in the same call must not be half-applied.
    new_cat = write(tmp_path / "new.csv", CATALOG_CSV.replace("Trail Tent", "Trail Tent XL"))
    code = run(["ingest", "--catalog", str(new_cat), "--interactions", str(bad)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err
    assert db_snapshot(small_shop) == before


def test_reingest_updates_only_what_changed_in_store_and_index(
    small_shop: Path,
    tmp_path: Path,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    changed = CATALOG_CSV.replace("Trail Tent,", "Trail Tent XL,").replace("49.50", "44.00")
    changed += "p6,Water Filter,Outdoor,35.00,true,2023,Pump filter\n"
    cat = write(tmp_path / "catalog2.csv", changed)
    assert run(["ingest", "--catalog", str(cat), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["products_added"] == 1
    assert result["products_updated"] == 2  # p1 title, p2 price
    assert result["products_unchanged"] == 3
    # Only the new product and the retitled one change their embedded text; a price change
    # updates the store but needs no new embedding.
    assert result["products_embedded"] == 2
    index = ChromaIndex(path=small_shop / "chroma")
    meta = index.collection.get(ids=["p2"], include=["metadatas"])["metadatas"][0]
    assert meta["price"] == pytest.approx(44.0)  # filters in Chroma see the new price
    assert index.count() == 6

    # Same file again: nothing to do anywhere; same events again: no duplicates.
    ev = write(tmp_path / "events.csv", EVENTS_CSV)
    assert run(["ingest", "--catalog", str(cat), "--interactions", str(ev), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["products_updated"] == 0 and again["products_embedded"] == 0
    assert again["events_added"] == 0 and again["events_duplicate"] == 4


def vectors(index: ChromaIndex, *ids: str) -> dict[str, np.ndarray]:
    got = index.collection.get(ids=list(ids), include=["embeddings"])
    return {i: np.asarray(v) for i, v in zip(got["ids"], got["embeddings"], strict=True)}


def test_embed_is_a_job_of_its_own_and_trains_nothing(
    small_shop: Path,
    tmp_path: Path,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    versions = ModelVersions(small_shop / "index")
    served = [v.name for v in versions.all()]
    changed = CATALOG_CSV.replace("Camp Stove,", "Camp Stove Mini,")
    changed += "p6,Water Filter,Outdoor,35.00,true,2023,Pump filter\n"
    cat = write(tmp_path / "catalog2.csv", changed)
    assert run(["ingest", "--catalog", str(cat), "--no-rebuild", "--json"]) == 0
    capsys.readouterr()
    before = ChromaIndex(path=small_shop / "chroma")
    assert before.count() == 5  # not embedded yet
    old = vectors(before, "p1", "p2")

    assert run(["embed", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["products"], result["products_embedded"]) == (6, 2)
    index = ChromaIndex(path=small_shop / "chroma")
    assert index.count() == 6
    new = vectors(index, "p1", "p2")
    assert np.allclose(new["p1"], old["p1"]) and not np.allclose(new["p2"], old["p2"])
    # Embedding is not training: the served model version and the list stay as they were.
    assert [v.name for v in versions.all()] == served and versions.current_name() == served[-1]
    assert run(["embed", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["products_embedded"] == 0


def test_ingest_without_files_is_a_usage_error(capsys) -> None:  # type: ignore[no-untyped-def]
    assert run(["ingest"]) == 2
    assert "give --catalog FILE" in capsys.readouterr().err


# A real export with bad rows: five good products, then an empty title, a bad price, a
# duplicate id and (format-specific, appended below) a line the reader cannot make a row of.
MESSY_CATALOG_CSV = CATALOG_CSV + (
    "p6,,Outdoor,10.00,true,2020,No title\n"
    "p7,Desk Lamp,Home,cheap,true,2020,Lamp\n"
    "p1,Trail Tent Copy,Outdoor,1.00,true,2020,Same id again\n"
)
MESSY_EVENTS_CSV = EVENTS_CSV + (
    "s3,p6,view,1700000700,\n"  # its product was rejected from the catalog
    "s3,p404,view,1700000800,\n"
    "s3,p5,view,last tuesday,\n"
)


def as_jsonl(csv_text: str) -> str:
    """The same rows as JSONL: every line one row, so line numbers are one less than in CSV."""
    return "".join(json.dumps(row) + "\n" for row in csv.DictReader(io.StringIO(csv_text)))


def messy_files(tmp_path: Path, fmt: str) -> tuple[Path, Path]:
    if fmt == "csv":
        cat = MESSY_CATALOG_CSV + "p8,Lamp,Home,1.00,true,2020,Desk lamp,EXTRA\n"
        ev = MESSY_EVENTS_CSV
    else:
        cat = as_jsonl(MESSY_CATALOG_CSV) + '{"product_id": "p8", "title": \n'
        ev = as_jsonl(MESSY_EVENTS_CSV)
    return write(tmp_path / f"catalog.{fmt}", cat), write(tmp_path / f"events.{fmt}", ev)


def read_report(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_default_mode_rejects_a_file_with_one_bad_row_and_writes_nothing(
    tmp_path: Path,
    isolated_settings: Path,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    cat, ev = messy_files(tmp_path, "csv")
    code = run(["ingest", "--catalog", str(cat), "--interactions", str(ev), "--no-rebuild"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"error: {cat}, line 7, field 'title': required value is empty\n"
    assert db_snapshot(isolated_settings) == {"products": [], "events": [], "shoppers": []}
    assert not (isolated_settings / "ingest-rejects.jsonl").exists()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_skip_bad_rows_ingests_the_good_rows_and_reports_each_bad_one(
    fmt: str,
    tmp_path: Path,
    isolated_settings: Path,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    cat, ev = messy_files(tmp_path, fmt)
    argv = ["ingest", "--catalog", str(cat), "--interactions", str(ev), "--skip-bad-rows"]
    code = run([*argv, "--no-rebuild", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(out)
    report = isolated_settings / "ingest-rejects.jsonl"
    assert result == {
        "products_added": 5,
        "products_updated": 0,
        "products_unchanged": 0,
        "events_added": 4,
        "events_duplicate": 0,
        "rows_rejected_catalog": 4,
        "rows_rejected_interactions": 3,
        "rejects_report": str(report),
    }
    snap = db_snapshot(isolated_settings)
    assert [row[0] for row in snap["products"]] == ["p1", "p2", "p3", "p4", "p5"]
    assert len(snap["events"]) == 4

    shift = 0 if fmt == "csv" else 1  # JSONL has no header line
    unreadable = "8 values for 7 columns" if fmt == "csv" else "invalid JSON: Expecting value"
    lines = read_report(report)
    assert [(r["file"], r["line"], r["field"], r["reason"]) for r in lines] == [
        (str(cat), 7 - shift, "title", "required value is empty"),
        (str(cat), 8 - shift, "price", "expected a number, got 'cheap'"),
        (
            str(cat),
            9 - shift,
            "product_id",
            f"duplicate id 'p1' (first seen on line {2 - shift})",
        ),
        (str(cat), 10 - shift, None, unreadable),
        (
            str(ev),
            6 - shift,
            "product_id",
            f"product 'p6' was rejected from the catalog ({cat}, line {7 - shift})",
        ),
        (str(ev), 7 - shift, "product_id", "unknown product 'p404': not in the catalog"),
        (
            str(ev),
            8 - shift,
            "timestamp",
            "expected Unix seconds or an ISO 8601 date-time, got 'last tuesday'",
        ),
    ]
    # The raw row travels with the reason, so the report alone is enough to fix the export.
    assert lines[0]["row"]["product_id"] == "p6" and lines[0]["row"]["title"] == ""
    assert lines[1]["row"]["price"] == "cheap"
    assert lines[4]["row"]["shopper_id"] == "s3"


def test_skip_bad_rows_again_is_idempotent_and_rewrites_the_report(
    tmp_path: Path,
    isolated_settings: Path,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    cat, ev = messy_files(tmp_path, "csv")
    report = tmp_path / "out" / "rejects.jsonl"
    argv = ["ingest", "--catalog", str(cat), "--interactions", str(ev), "--skip-bad-rows"]
    argv += ["--rejects", str(report), "--no-rebuild", "--json"]
    assert run(argv) == 0
    first = json.loads(capsys.readouterr().out)
    first_report = read_report(report)
    snap = db_snapshot(isolated_settings)

    assert run(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert first["events_added"] == 4 and first["rejects_report"] == str(report)
    assert again["products_added"] == 0 and again["products_unchanged"] == 5
    assert again["events_added"] == 0 and again["events_duplicate"] == 4
    assert again["rows_rejected_catalog"] == 4 and again["rows_rejected_interactions"] == 3
    assert read_report(report) == first_report  # rewritten, not appended
    assert len(first_report) == 7
    assert db_snapshot(isolated_settings) == snap


@pytest.mark.parametrize(
    ("limit", "shown"),
    [("3", "more than the limit of 3 rows"), ("40%", "more than the limit of 40% of 9 rows")],
)
def test_more_bad_rows_than_the_limit_writes_nothing_and_says_where_the_report_is(
    limit: str,
    shown: str,
    small_shop: Path,
    tmp_path: Path,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    before = db_snapshot(small_shop)
    cat, ev = messy_files(tmp_path, "csv")  # 4 of 9 catalog rows are bad
    new_cat = write(tmp_path / "new.csv", cat.read_text().replace("Trail Tent,", "Tent XL,"))
    argv = ["ingest", "--catalog", str(new_cat), "--interactions", str(ev), "--skip-bad-rows"]
    code = run([*argv, "--max-bad-rows", limit])
    err = capsys.readouterr().err
    report = small_shop / "ingest-rejects.jsonl"
    assert code == 2
    assert err == (
        f"error: {new_cat}: 4 of 9 rows failed validation, {shown}; "
        f"nothing was written; the rejected rows are in {report}\n"
    )
    assert db_snapshot(small_shop) == before
    assert len(read_report(report)) == 7

    # At the limit is still allowed: "more than" is what fails.
    assert run([*argv, "--max-bad-rows", "4", "--no-rebuild", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["products_updated"] == 1 and result["rows_rejected_catalog"] == 4


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-bad-rows", "5"], "--max-bad-rows and --rejects only apply with --skip-bad-rows"),
        (["--skip-bad-rows", "--max-bad-rows", "lots"], "--max-bad-rows: expected a number"),
        (["--skip-bad-rows", "--max-bad-rows", "150%"], "--max-bad-rows: expected a number"),
    ],
)
def test_bad_limit_options_are_usage_errors(
    extra: list[str],
    message: str,
    tmp_path: Path,
    isolated_settings: Path,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    cat = write(tmp_path / "catalog.csv", CATALOG_CSV)
    assert run(["ingest", "--catalog", str(cat), "--no-rebuild", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


def test_a_file_error_still_fails_the_whole_call_when_skipping_rows(
    tmp_path: Path,
    isolated_settings: Path,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    cat = write(tmp_path / "catalog.csv", CATALOG_CSV)
    bad = write(tmp_path / "events.csv", "shopper_id,timestamp\ns1,1700000000\n")
    argv = ["ingest", "--catalog", str(cat), "--interactions", str(bad), "--skip-bad-rows"]
    code = run([*argv, "--no-rebuild"])
    assert code == 2
    assert "line 2: missing required column(s) product_id" in capsys.readouterr().err
    assert db_snapshot(isolated_settings)["products"] == []
