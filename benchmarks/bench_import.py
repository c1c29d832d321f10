"""Directory import benchmark: all of Germany (40,000 therapists), first import and re-import.

1. Generates a synthetic 116117 directory folder (the generator of `python -m
   therapist_service.cli generate-directory`, fixed seed) into a temporary folder.
2. Imports it into a fresh database as `python -m therapist_service.cli import-directory`
   does (same function, the service's own database role): urgent/ first, then the newest
   dated file of every area.
3. Imports the same folder again: nothing may change and no event may be written.

Database: BENCH_DATABASE_URL, else TEST_DATABASE_URL (a superuser URL; a database is created
and dropped), else an embedded PostgreSQL. Postal codes: --plz-data, PLZ_DATA or
../shared/data/zipcodes.de.csv.

Usage: python benchmarks/bench_import.py [--therapists 40000] [--seed 20260105]
       [--batch-size 500] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_support import fresh_database, postgres_admin_url  # noqa: E402

from shared.db import Database, driver_url, role_url  # noqa: E402
from shared.outbox import OutboxWriter  # noqa: E402
from therapist_service.cli import default_plz_data, import_folder  # noqa: E402
from therapist_service.directory.generator import generate_directory, read_places  # noqa: E402
from therapist_service.models import INFRA  # noqa: E402

TARGET_FIRST_S = 60.0
TARGET_REIMPORT_S = 20.0


def outbox_rows(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                sa.text("SELECT count(*) FROM therapist_service.outbox")
            ).scalar_one()
        )


def timed_import(database: Database, folder: Path, batch_size: int) -> tuple[float, Any]:
    started = time.perf_counter()
    result = import_folder(database, folder, batch_size=batch_size, out=None)
    return time.perf_counter() - started, result


def run(admin_url: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    plz_data = args.plz_data or default_plz_data()
    if plz_data is None:
        raise SystemExit("no postal-code data: pass --plz-data PATH or set PLZ_DATA")
    started = time.perf_counter()
    summary = generate_directory(
        workdir / "directory", read_places(plz_data), therapists=args.therapists, seed=args.seed
    )
    generated_s = time.perf_counter() - started
    print(
        f"generated {summary.therapists} therapists in {summary.areas} postal-code areas "
        f"({summary.children_only} children-only) in {generated_s:.1f} s",
        flush=True,
    )
    with fresh_database(admin_url, services=("therapist_service",)) as url:
        admin = sa.create_engine(driver_url(url))
        database = Database(
            role_url(url, "therapist_service"), outbox=OutboxWriter(INFRA), name="bench-import"
        )
        try:
            first_s, first = timed_import(database, workdir / "directory", args.batch_size)
            events_first = outbox_rows(admin)
            again_s, again = timed_import(database, workdir / "directory", args.batch_size)
            events_again = outbox_rows(admin) - events_first
        finally:
            database.dispose()
            admin.dispose()
    record = {
        "therapists": summary.therapists,
        "files": first.files,
        "batch_size": args.batch_size,
        "first_import_s": round(first_s, 2),
        "reimport_s": round(again_s, 2),
        "created": first.report.created,
        "skipped": len(first.report.skipped),
        "errors": len(first.report.errors),
        "reimport_unchanged": again.report.unchanged,
        "reimport_changed": again.report.created + again.report.updated,
        "events_first_import": events_first,
        "events_reimport": events_again,
    }
    print(
        f"first import: {first_s:.1f} s for {first.files} files ({first.report.created} created, "
        f"{len(first.report.skipped)} skipped, {len(first.report.errors)} errors); "
        f"target < {TARGET_FIRST_S:.0f} s"
    )
    print(
        f"re-import:    {again_s:.1f} s ({again.report.unchanged} unchanged, "
        f"{record['reimport_changed']} changed); target < {TARGET_REIMPORT_S:.0f} s"
    )
    print(f"events written: {events_first} by the first import, {events_again} by the re-import")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--therapists", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=20260105)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--plz-data", help="postal-code CSV or DE.zip (default ../shared/data)")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        workdir = Path(tmp)
        with postgres_admin_url(workdir / "pg") as admin_url:
            record = run(admin_url, args, workdir)
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    if record["reimport_changed"] or record["events_reimport"]:
        raise SystemExit("the re-import changed something: the import is not idempotent")


if __name__ == "__main__":
    main()
