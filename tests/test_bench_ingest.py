"""`composer bench ingest` against SQLite and a real PostgreSQL server (small sizes: the
figures' shape and the refusal to write into a database that holds data, not speed)."""

from __future__ import annotations

import contextlib
import io
import json

from composer.cli import run
from retrieval.records import Product
from retrieval.store import Store


def _bench(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(["bench", "ingest", "--products", "200", "--events", "400", *argv])
    return code, out.getvalue(), err.getvalue()


def test_sqlite_and_postgres_figures_in_one_run(postgres_url: str) -> None:
    code, out, _ = _bench("--database-url", postgres_url, "--json")
    assert code == 0
    report = json.loads(out)
    for name in ("sqlite", "postgresql"):
        figures = report[name]
        assert figures["products_per_s"] > 0 and figures["events_per_s"] > 0
        assert figures["live_events_per_s"] > 0
    assert report["postgresql"]["events_per_s_vs_sqlite"] > 0
    written = Store(postgres_url).counts()
    assert written["products"] == 200 and written["events"] == 400


def test_a_database_with_data_is_refused_and_left_alone(postgres_url: str) -> None:
    store = Store(postgres_url)
    store.ingest([Product("keep", "Keep me", ("A",), price=1.0)])
    code, _, err = _bench("--database-url", postgres_url)
    assert code == 2 and "is not empty" in err and "Traceback" not in err
    assert store.counts()["products"] == 1
    store.close()
