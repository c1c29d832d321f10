"""Geocoding benchmark: the PLZ import and `POST /api/distances` with 10,000 pairs.

1. import: `python -m geocoding_service.cli import-plz SOURCE` as a user runs it (wall
   clock, interpreter start included) into an empty schema, then again (nothing changes);
   SOURCE is ../shared/data/zipcodes.de.csv (GeoNames, 23,297 rows), or `--source`, or a
   synthetic file of the same format with `--synthetic ROWS` (or when the CSV is absent).
2. distances: `POST /api/distances` through the real app (Flask test client: parsing,
   validation, one query for the postal codes, the numpy estimate, rendering), pairs half
   postal codes and half `lat,lon`, without OSRM; median and max of `--runs` requests.

Database: BENCH_DATABASE_URL, else TEST_DATABASE_URL (a superuser URL; a database is created
and dropped), else an embedded PostgreSQL.
Usage: python benchmarks/bench_geocoding.py [--pairs 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from bench_support import fresh_database, postgres_admin_url  # noqa: E402

from geocoding_service.app import create_app  # noqa: E402
from geocoding_service.settings import GeocodingSettings  # noqa: E402
from shared.cli import ensure_bootstrap_admin  # noqa: E402
from shared.db import driver_url, role_url  # noqa: E402

SHARED_CSV = ROOT.parent / "shared" / "data" / "zipcodes.de.csv"
HEADER = (
    "country_code,zipcode,place,state,state_code,province,province_code,community,"
    "community_code,latitude,longitude\n"
)


def synthetic_csv(path: Path, rows: int, seed: int = 20261130) -> Path:
    """A file in the CSV format with `rows` places over about rows/2 postal codes."""
    rng = random.Random(seed)
    with path.open("w") as out:
        out.write(HEADER)
        for n in range(rows):
            code = f"{1000 + n // 2:05d}"
            lat, lon = rng.uniform(47.3, 55.0), rng.uniform(5.9, 15.0)
            out.write(f"DE,{code},Ort {n},Land,01,,,,,{lat:.4f},{lon:.4f}\n")
    return path


def import_once(database_url: str, source: Path) -> tuple[float, str]:
    """Wall-clock seconds of the import command, and its last line."""
    env = {
        **os.environ,
        "DATABASE_URL": role_url(database_url, "geocoding_service"),
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "WARNING",
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "geocoding_service.cli", "import-plz", str(source)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"import failed: {done.stderr}")
    return elapsed, done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", type=Path, help="PLZ data file (default: shared CSV)")
    parser.add_argument("--synthetic", type=int, help="use a synthetic file of this many rows")
    parser.add_argument("--pairs", type=int, default=10_000, help="pairs per distances request")
    parser.add_argument("--runs", type=int, default=5, help="distances requests to time")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-geocoding-"))
    source = args.source or SHARED_CSV
    if args.synthetic or not source.is_file():
        rows = args.synthetic or 23_297
        source = synthetic_csv(tmp / "synthetic.csv", rows)
        print(f"source: synthetic CSV, {rows} rows (no --source and {SHARED_CSV} not found)")
    else:
        print(f"source: {source}")
    token = secrets.token_urlsafe(32)
    with (
        postgres_admin_url(tmp / "pg") as admin_url,
        fresh_database(admin_url, services=["geocoding_service"]) as database_url,
    ):
        ensure_bootstrap_admin(database_url, token, ["geocoding_service"])

        first, summary = import_once(database_url, source)
        print(f"import: {first:.2f} s (command, empty schema): {summary}")
        again, summary = import_once(database_url, source)
        print(f"import again: {again:.2f} s (nothing changes): {summary}")

        engine = sa.create_engine(driver_url(database_url))
        with engine.connect() as connection:
            codes = list(
                connection.execute(
                    sa.text("SELECT postal_code FROM geocoding_service.postal_codes")
                )
                .scalars()
                .all()
            )
        engine.dispose()
        rng = random.Random(7)

        def point() -> str:
            if rng.random() < 0.5:
                return rng.choice(codes)
            return f"{rng.uniform(47.3, 55.0):.5f},{rng.uniform(5.9, 15.0):.5f}"

        pairs = [{"from": point(), "to": point()} for _ in range(args.pairs)]
        body = json.dumps({"mode": "car", "pairs": pairs}).encode()
        settings = GeocodingSettings(
            database_url=role_url(database_url, "geocoding_service"),
            log_json=False,
            log_level="WARNING",
        )
        client = create_app(settings).test_client()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        timings = []
        for _ in range(args.runs + 1):  # the first request warms the pool and caches
            started = time.perf_counter()
            response = client.post("/api/distances", data=body, headers=headers)
            timings.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise SystemExit(f"distances failed: {response.status_code} {response.json}")
        measured = timings[1:]
        print(
            f"distances: {args.pairs} pairs in {statistics.median(measured) * 1000:.0f} ms "
            f"(median of {len(measured)}, max {max(measured) * 1000:.0f} ms; "
            f"{len(body) / 1024:.0f} kB request), geodesic, no OSRM"
        )


if __name__ == "__main__":
    main()
