"""Bundle run benchmark: one real run over a city region (10,000 searches, 2,000 therapists),
end to end through the service: read the projections, run the bundler, write the inquiries,
their patients, the budgets used and the outbox rows, in one transaction.

1. Generates the market with the simulation's population generator (fixed seed) around
   Berlin, on postal-code centroids (../shared/data/zipcodes.de.csv) or a synthetic map.
2. Loads it into a fresh database with bulk inserts into the projections, locations,
   patient searches and cooling periods (the practices the generator marks not contactable).
3. Times `run_bundles` (what `POST /api/bundle-runs` calls), then checks what it wrote.

Database: BENCH_DATABASE_URL, else TEST_DATABASE_URL (a superuser URL; a database is created
and dropped), else an embedded PostgreSQL.

Usage: python benchmarks/bench_matching.py [--searches 10000] [--therapists 2000]
       [--seed 20260302] [--zipcodes FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_support import fresh_database, postgres_admin_url  # noqa: E402

from matching_service.bundling import Search, Therapist  # noqa: E402
from matching_service.models import (  # noqa: E402
    INFRA,
    CoolingPeriod,
    Location,
    PatientProjection,
    PatientSearch,
    TherapistProjection,
)
from matching_service.schemas import BundleRunCreate  # noqa: E402
from matching_service.service.bundle_runs import run_bundles  # noqa: E402
from matching_service.settings import MatchingSettings  # noqa: E402
from matching_service.simulation.geography import (  # noqa: E402
    PostalAreas,
    load_postal_areas,
    synthetic_areas,
)
from matching_service.simulation.population import make_searches, make_therapists  # noqa: E402
from shared.db import Database, driver_url, role_url  # noqa: E402
from shared.outbox import OutboxWriter  # noqa: E402

TARGET_S = 3.0
# everything but the bundler: read, lock and re-check, write, events, outbox, commit
DATABASE_PATH_TARGET_S = 1.5
BERLIN = (52.5200, 13.4050)
INHABITANTS_PER_POSTAL_CODE = 7700  # as benchmarks/bench_bundles.py
AS_OF = datetime.combine(date(2026, 3, 2), day_time(6), tzinfo=UTC)
BATCH = 2000


def generate(args: argparse.Namespace) -> tuple[PostalAreas, list[Search], list[Therapist]]:
    """The region's postal areas, searches and therapists (the simulation's generator)."""
    rng = np.random.default_rng(args.seed)
    areas = load_postal_areas(args.zipcodes) or synthetic_areas(rng)
    count = max(3, round(args.therapists * 2000 / INHABITANTS_PER_POSTAL_CODE))
    region = areas.nearest(*BERLIN, count)
    therapists = make_therapists(rng, region, args.therapists)
    searches = make_searches(rng, region, args.searches, AS_OF.date())
    return region, searches, therapists


def _nearest_codes(region: PostalAreas, lat: np.ndarray, lon: np.ndarray) -> list[str]:
    d = (region.lat[None, :] - lat[:, None]) ** 2 + (
        (region.lon[None, :] - lon[:, None]) * np.cos(np.radians(lat[:, None]))
    ) ** 2
    return [region.codes[i] for i in np.argmin(d, axis=1).tolist()]


def _insert(connection: sa.Connection, model: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), BATCH):
        connection.execute(sa.insert(model.__table__), rows[start : start + BATCH])


def load(
    engine: sa.Engine, region: PostalAreas, searches: list[Search], therapists: list[Therapist]
) -> None:
    """Bulk inserts: projections, locations, active searches, cooling of non-contactable ones."""
    s_codes = _nearest_codes(
        region, np.array([s.lat for s in searches]), np.array([s.lon for s in searches])
    )
    t_codes = _nearest_codes(
        region, np.array([t.lat for t in therapists]), np.array([t.lon for t in therapists])
    )
    patients, searches_rows, locations = [], [], []
    for i, (search, code) in enumerate(zip(searches, s_codes, strict=True), start=1):
        patients.append(
            {
                "patient_id": i,
                "version": 1,
                "status": "searching",
                "gender": search.gender,
                "birth_date": search.birth_date,
                "postal_code": code,
                "diagnosis": search.diagnosis,
                "symptoms": ["low_mood"],
                "availability": dict(search.availability or {}),
                "max_travel_km": int(search.max_travel_km),
                "travel_mode": search.travel_mode,
                "preferred_therapist_gender": search.preferred_therapist_gender or "any",
                "preferred_therapy_method": search.preferred_therapy_method or "any",
                "open_to_group_therapy": search.open_to_group_therapy,
                "group_therapy_only": False,
                "qualified": True,
                "unmet_criteria": [],
                "two_year_rule_flag": False,
            }
        )
        searches_rows.append(
            {
                "patient_id": i,
                "status": "active",
                "waiting_since": search.waiting_since,
                "contact_budget": search.contact_budget,
                "contacts_used": 0,
            }
        )
        locations.append(_location("patient", i, code, search.lat, search.lon))
    projections, cooling = [], []
    for i, (therapist, code) in enumerate(zip(therapists, t_codes, strict=True), start=1):
        projections.append(
            {
                "therapist_id": i,
                "version": 1,
                "status": "active",
                "gender": therapist.gender,
                "postal_code": code,
                "practice_key": therapist.practice_key,
                "has_email": True,
                "statutory_seat": True,
                "therapy_methods": list(therapist.therapy_methods),
                "languages": ["de"],
                "phone_hours": {},
                "working_hours": therapist.working_hours,
                "potentially_available": False,
                "informed_about_platform": False,
                "preferred_diagnoses": list(therapist.preferred_diagnoses),
                "patient_age_min": therapist.patient_age_min,
                "patient_age_max": therapist.patient_age_max,
                "preferred_patient_gender": therapist.preferred_patient_gender or "any",
                "prefers_group_therapy": therapist.prefers_group_therapy,
                "next_contactable_date": None,
            }
        )
        locations.append(_location("therapist", i, code, therapist.lat, therapist.lon))
        if not therapist.contactable:
            cooling.append(
                {
                    "practice_key": therapist.practice_key,
                    "therapist_ids": [i],
                    "starts_on": AS_OF.date() - timedelta(days=7),
                    "until": AS_OF.date() + timedelta(days=21),
                }
            )
    with engine.begin() as connection:
        _insert(connection, PatientProjection, patients)
        _insert(connection, PatientSearch, searches_rows)
        _insert(connection, TherapistProjection, projections)
        _insert(connection, Location, locations)
        _insert(connection, CoolingPeriod, cooling)
        for table in ("patient_projection", "patient_searches", "therapist_projection"):
            connection.execute(sa.text(f"ANALYZE matching_service.{table}"))
        connection.execute(sa.text("ANALYZE matching_service.locations"))


def _location(kind: str, entity_id: int, code: str, lat: Any, lon: Any) -> dict[str, Any]:
    return {
        "entity_type": kind,
        "entity_id": entity_id,
        "version": 1,
        "resolved": True,
        "lat": lat,
        "lon": lon,
        "precision": "plz" if kind == "patient" else "address",
        "source": "plz_centroid" if kind == "patient" else "nominatim",
        "postal_code": code,
    }


def count(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text(sql)).scalar_one())


def run(admin_url: str, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    region, searches, therapists = generate(args)
    print(
        f"market: {len(searches)} searches, {len(therapists)} therapists in {len(region)} "
        f"postal areas around Berlin ({region.source}); generated in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    with fresh_database(admin_url, services=("matching_service",)) as url:
        admin = sa.create_engine(driver_url(url))
        settings = MatchingSettings(
            database_url=role_url(url, "matching_service"),
            answer_link_secret=SecretStr("bench-answer-link-secret-0123456789abcdef"),
        )
        database = Database(
            settings.database_url, outbox=OutboxWriter(INFRA), name="bench-matching"
        )
        try:
            started = time.perf_counter()
            load(admin, region, searches, therapists)
            print(f"loaded with bulk inserts in {time.perf_counter() - started:.1f} s", flush=True)
            started, cpu_started = time.perf_counter(), time.process_time()
            result = run_bundles(
                database.unit_of_work(),
                BundleRunCreate(as_of=AS_OF),
                settings=settings,
                created_by="bench-matching",
            )
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
            record = {
                "searches": len(searches),
                "therapists": len(therapists),
                "seconds": round(seconds, 3),
                # this process only (the database's work is not in it): a figure that a busy
                # machine inflates less than the wall clock
                "python_cpu_seconds": round(cpu_seconds, 3),
                "target_seconds": TARGET_S,
                "inquiries": count(admin, "SELECT count(*) FROM matching_service.inquiries"),
                "inquiry_patients": count(
                    admin, "SELECT count(*) FROM matching_service.inquiry_patients"
                ),
                "outbox_rows": count(admin, "SELECT count(*) FROM matching_service.outbox"),
                "contacts_used": count(
                    admin, "SELECT sum(contacts_used) FROM matching_service.patient_searches"
                ),
                "left_out": len(result.left_out),
                "therapists_without_inquiry": len(result.therapists_without_inquiry),
                **{f"{name}_s": value for name, value in result.phase_seconds.items()},
            }
        finally:
            database.dispose()
            admin.dispose()
    phases = result.phase_seconds
    commit_s = seconds - sum(phases.values())
    record["database_path_s"] = database_path_s = round(seconds - phases["bundle"], 3)
    verdict = "ok" if seconds < TARGET_S else "MISSED"
    print(
        f"bundle run: {seconds:.2f} s end to end (target < {TARGET_S:.0f} s: {verdict}); "
        f"{record['inquiries']} inquiries, {record['inquiry_patients']} inquiry patients, "
        f"{record['outbox_rows']} outbox rows, {record['left_out']} searches left out"
    )
    print(
        f"where the time goes: read projections {phases['read']:.2f} s, bundler "
        f"{phases['bundle']:.2f} s, write rows and build events {phases['write']:.2f} s, "
        f"outbox rows and commit {commit_s:.2f} s; Python CPU {cpu_seconds:.2f} s"
    )
    path_verdict = "ok" if database_path_s < DATABASE_PATH_TARGET_S else "MISSED"
    print(
        f"database path (all but the bundler): {database_path_s:.2f} s "
        f"(target < {DATABASE_PATH_TARGET_S} s: {path_verdict})"
    )
    if not record["inquiries"] == record["outbox_rows"] == result.inquiries_created:
        raise SystemExit("every written inquiry must have exactly one inquiry.created")
    if record["contacts_used"] != record["inquiry_patients"]:
        raise SystemExit("every inclusion must use exactly one contact")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searches", type=int, default=10_000)
    parser.add_argument("--therapists", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=20260302)
    parser.add_argument("--zipcodes", type=Path, help="postal-code CSV (default ../shared/data)")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-matching-") as tmp,
        postgres_admin_url(Path(tmp) / "pg") as admin_url,
    ):
        record = run(admin_url, args)
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
