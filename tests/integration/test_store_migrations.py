"""Schema migrations on SQLite and PostgreSQL: a database of an earlier version, with data in it, is brought
to the newest revision with its data kept, and the result is exactly the schema the code declares."""

from __future__ import annotations

from pathlib import Path

import httpx
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from outcrop.store.engine import migrate, normalize_url
from outcrop.store.schema import metadata
from tests.conftest import ServerProcess

# An event stored at revision 0004_chaos, before usage events kept requestMetadata.
OLD_EVENT = {
    "request_id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "time_us": 1_767_225_600_000_000, "account": "123456789012",
    "source_region": "us-east-1", "inference_region": "us-east-1", "operation": "Converse",
    "model_id": "amazon.nova-micro-v1:0", "model_dim": "amazon.nova-micro-v1:0", "profile_arn": None,
    "profile_id": None, "profile_type": None, "foundation_model": "amazon.nova-micro-v1:0", "input_tokens": 10,
    "output_tokens": 5, "cache_read_tokens": 0, "cache_write_tokens": 0, "latency_ms": 20, "ttft_ms": None,
    "outcome": "success", "error_code": None, "cost_pusd": 1050000, "identity": "arn:aws:iam::123456789012:root",
    "tags": "{}",
}


def test_a_database_of_the_previous_version_is_migrated_with_its_events_kept(database_url: str, tmp_path: Path) -> None:
    engine = create_engine(normalize_url(database_url))
    try:
        migrate(engine, "0004_chaos")
        with engine.begin() as conn:
            columns = ", ".join(OLD_EVENT)
            conn.execute(text(f"INSERT INTO usage_events ({columns}) VALUES ({', '.join(':' + k for k in OLD_EVENT)})"),
                         OLD_EVENT)
        migrate(engine)
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT request_id, request_metadata FROM usage_events")).all()
            assert [tuple(r) for r in stored] == [(OLD_EVENT["request_id"], "{}")]
            drift = compare_metadata(MigrationContext.configure(conn), metadata)
        assert drift == [], f"the migrated schema differs from outcrop.store.schema: {drift}"
    finally:
        engine.dispose()

    # A server on the migrated database reports the old event, in the null group of any metadata key.
    (tmp_path / "srv").mkdir()
    server = ServerProcess(database_url=database_url, data_dir=tmp_path / "srv").start()
    try:
        report = httpx.get(server.url + "/_outcrop/usage", params={
            "since": "2026-01-01", "until": "2026-01-02", "groupBy": "metadata:tenant"}).json()
        assert report["rows"] == [{**report["rows"][0], "metadata:tenant": None}]
        assert report["totals"]["invocations"] == 1 and report["totals"]["outputTokens"] == 5
    finally:
        server.stop()
