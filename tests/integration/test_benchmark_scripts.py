"""The benchmark scripts keep working (tiny sizes; the figures themselves are in docs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from benchmarks.bench_support import fresh_database, postgres_admin_url
from shared.db import driver_url
from shared.devstack import ROOT
from tests.unit.test_directory import PLZ_CSV

pytestmark = pytest.mark.integration


def _run(args: list[str], **env: str) -> str:
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_bundle_benchmark_writes_one_record_per_size_and_strategy(tmp_path: Path) -> None:
    target = tmp_path / "bundles.json"
    _run(["benchmarks/bench_bundles.py", "--sizes", "small", "--json", str(target)])
    records = {record["strategy"]: record for record in json.loads(target.read_text())}
    assert set(records) == {"global", "global-ref", "baseline"}
    for record in records.values():
        assert {"searches", "therapists", "seconds", "peak_mb", "covered", "inquiries"} <= set(
            record
        )
    assert records["global"]["covered"] >= records["baseline"]["covered"]
    # the columnar engine against the per-pair reference engine on the same market
    assert records["global"]["covered"] >= records["global-ref"]["covered"]


def test_matching_benchmark_runs_one_bundle_run_and_checks_what_it_wrote(
    pg_admin_url: str, tmp_path: Path
) -> None:
    target = tmp_path / "matching.json"
    output = _run(
        ["benchmarks/bench_matching.py", "--searches", "300", "--therapists", "60",
         "--json", str(target)],
        BENCH_DATABASE_URL=pg_admin_url,
        LOG_LEVEL="WARNING",
    )  # fmt: skip
    assert "bundle run: " in output and "where the time goes: " in output
    record = json.loads(target.read_text())
    assert (record["searches"], record["therapists"]) == (300, 60)
    assert record["inquiries"] > 0
    assert record["outbox_rows"] == record["inquiries"]
    assert record["contacts_used"] == record["inquiry_patients"] >= 3 * record["inquiries"]
    assert {"read_s", "bundle_s", "write_s", "seconds", "database_path_s"} <= set(record)
    assert "database path (all but the bundler): " in output


def test_events_benchmark_prints_throughput_order_latency_and_rebalance(
    pg_admin_url: str, kafka_bootstrap: str
) -> None:
    output = _run(
        ["benchmarks/events.py", "--events", "300", "--rate", "50", "--seconds", "2",
         "--partitions", "4", "--consumers", "2", "--versions", "3",
         "--join-after", "1", "--join-seconds", "3"],
        BENCH_DATABASE_URL=pg_admin_url,
        BENCH_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        LOG_LEVEL="WARNING",
    )  # fmt: skip
    assert "events/s sustained" in output
    # 100 patients, 3 versions each, read back from the 4 partitions in outbox order
    assert "order: 300 events of 100 patients read back from 4 partitions" in output
    assert "p95" in output
    assert "rebalance: consumer 2 joined" in output


def test_import_benchmark_imports_then_reimports_without_a_change_or_event(
    pg_admin_url: str, tmp_path: Path
) -> None:
    plz_data = tmp_path / "zipcodes.csv"
    plz_data.write_text(PLZ_CSV, encoding="utf-8")
    target = tmp_path / "import.json"
    output = _run(
        ["benchmarks/bench_import.py", "--therapists", "150", "--plz-data", str(plz_data),
         "--batch-size", "40", "--json", str(target)],
        BENCH_DATABASE_URL=pg_admin_url,
        LOG_LEVEL="WARNING",
    )  # fmt: skip
    assert "first import:" in output and "re-import:" in output
    record = json.loads(target.read_text())
    assert record["created"] + record["skipped"] == 150 and record["errors"] == 0
    assert record["events_first_import"] == record["created"]
    assert record["reimport_unchanged"] == record["created"]
    assert record["reimport_changed"] == record["events_reimport"] == 0


def test_geocoding_benchmark_prints_import_and_distances_figures(pg_admin_url: str) -> None:
    output = _run(
        ["benchmarks/bench_geocoding.py", "--synthetic", "200", "--pairs", "50", "--runs", "2"],
        BENCH_DATABASE_URL=pg_admin_url,
        LOG_LEVEL="WARNING",
    )
    assert "import: " in output and "100 created" in output
    assert "import again: " in output and "100 unchanged" in output
    assert "distances: 50 pairs in " in output


def test_acceptances_benchmark_prints_the_contest_figures(pg_admin_url: str) -> None:
    output = _run(
        ["benchmarks/bench_acceptances.py", "--rounds", "1", "--parallel", "5"],
        BENCH_DATABASE_URL=pg_admin_url,
    )
    assert "5 parallel acceptances answered in" in output
    assert "1 claim, 4 conflicts" in output


def test_retention_benchmark_prunes_and_replays_what_it_should(
    pg_admin_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    target = tmp_path / "retention.json"
    output = _run(
        ["benchmarks/bench_retention.py", "--old", "2500", "--recent", "300", "--pending", "20",
         "--outside", "200",
         "--baseline", "0.5", "--json", str(target)],
        BENCH_DATABASE_URL=pg_admin_url,
        BENCH_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        LOG_LEVEL="WARNING",
    )  # fmt: skip
    assert "prune: 2,500 rows" in output and "replay: 300 rows" in output
    record = json.loads(target.read_text())
    assert (record["prune_rows"], record["replay_rows"]) == (2500, 300)


def test_api_benchmark_loads_a_platform_and_prints_latencies_per_endpoint_class(
    pg_admin_url: str, tmp_path: Path
) -> None:
    target = tmp_path / "api.json"
    output = _run(
        ["benchmarks/bench_api.py", "--quick", "--json", str(target)],
        BENCH_DATABASE_URL=pg_admin_url,
        LOG_LEVEL="WARNING",
    )
    assert "loaded with COPY" in output and "20 requests/s offered" in output
    records = json.loads(target.read_text())
    overall = next(r for r in records if r["service"] == "all")
    assert overall["requests"] == 60 and overall["errors"] == 0 and overall["refused"] == 0
    classes = {(r["service"], r["class"]) for r in records}
    assert {("patient", "list"), ("therapist", "detail"), ("matching", "filter")} <= classes
    assert all(r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] for r in records)


def test_benchmarks_take_bench_database_url_then_test_database_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bench, test = "postgresql://bench@db.invalid/postgres", "postgresql://test@db.invalid/postgres"
    monkeypatch.setenv("BENCH_DATABASE_URL", bench)
    monkeypatch.setenv("TEST_DATABASE_URL", test)
    with postgres_admin_url(tmp_path / "pg") as url:
        assert url == bench
    monkeypatch.delenv("BENCH_DATABASE_URL")
    with postgres_admin_url(tmp_path / "pg") as url:
        assert url == test
    assert not (tmp_path / "pg").exists()  # no embedded server was started


def test_a_benchmark_database_is_migrated_and_dropped_even_when_the_run_fails(
    pg_admin_url: str,
) -> None:
    admin = sa.create_engine(driver_url(pg_admin_url))
    try:
        with (
            pytest.raises(RuntimeError),
            fresh_database(pg_admin_url, services=["geocoding_service"]) as url,
        ):
            name = sa.engine.make_url(url).database
            engine = sa.create_engine(driver_url(url))
            with engine.connect() as connection:
                table = connection.execute(
                    sa.text("SELECT to_regclass('geocoding_service.postal_codes')")
                ).scalar_one()
            engine.dispose()
            assert table is not None
            raise RuntimeError("the benchmark failed")
        with admin.connect() as connection:
            left = connection.execute(
                sa.text("SELECT count(*) FROM pg_database WHERE datname = :name"), {"name": name}
            ).scalar_one()
        assert left == 0
    finally:
        admin.dispose()
