"""Benchmark first-acceptance-wins: 50 therapists accept the same patient at the same moment.

Each therapist has an inquiry of their own holding the patient (plus a few other patients
who are eligible as replacements); 50 threads released by a barrier send
`PUT /api/inquiries/{id}/response` at once. Exactly one acceptance claims the search, the
other 49 are conflicts with replacement offers. Measured: the wall time from the release
until the last answer is back (target: under 2 s), and each request's latency.

Usage: .venv/bin/python benchmarks/bench_acceptances.py [--rounds 5] [--parallel 50]
       [--server test-client|gunicorn]
The database is BENCH_DATABASE_URL, else TEST_DATABASE_URL (a superuser URL; a fresh
database is created on it and dropped afterwards), else an embedded PostgreSQL.
`--server gunicorn` runs matching_service as in docker-compose (1 worker, 8 threads) and
sends real HTTP requests; the default calls the Flask app through its test client.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_support import fresh_database, postgres_admin_url

from matching_service import service
from matching_service.app import create_app
from matching_service.handlers import HANDLERS
from matching_service.models import INFRA
from matching_service.schemas import LOCATION_RESOLVED, PATIENT_CREATED, THERAPIST_EVENTS
from matching_service.settings import MatchingSettings
from shared.cli import ensure_bootstrap_admin
from shared.db import driver_url, role_url
from shared.devstack import free_port
from shared.events import Envelope
from shared.runtime import ServiceRuntime

CENTRE = (51.3397, 12.3731)  # Leipzig
SPARES = 6  # eligible patients besides the contested one (replacement offers)

Send = Callable[[int, dict[str, Any]], tuple[int, dict[str, Any]]]


def _handle(database: Any, envelope: Envelope) -> None:
    with database.unit_of_work() as uow:
        HANDLERS[envelope.event_type](uow, envelope)
        uow.commit()


def _located(database: Any, entity_type: str, entity_id: int) -> None:
    payload = {
        "entity_type": entity_type,
        "entity_id": entity_id,
        "version": 1,
        "entity_version": 1,
        "postal_code": "04109",
        "lat": CENTRE[0],
        "lon": CENTRE[1],
        "precision": "plz",
        "source": "plz_centroid",
    }
    _handle(
        database,
        LOCATION_RESOLVED.build(
            producer="geocoding_service", aggregate_id=f"{entity_type}-{entity_id}", payload=payload
        ),
    )


def _search(database: Any, patient_id: int) -> int:
    payload = {
        "patient_id": patient_id,
        "version": 1,
        "status": "registered",
        "gender": "female",
        "birth_date": "1990-01-01",
        "postal_code": "04109",
        "diagnosis": "F32.1",
        "symptoms": ["low_mood"],
        "availability": {"mon": ["08:00-18:00"], "tue": ["08:00-18:00"]},
        "max_travel_km": 25,
        "travel_mode": "car",
        "preferred_therapist_gender": "any",
        "preferred_therapy_method": "any",
        "open_to_group_therapy": False,
        "group_therapy_only": False,
        "qualified": True,
        "unmet_criteria": [],
        "two_year_rule_flag": False,
    }
    _handle(
        database,
        PATIENT_CREATED.build(producer="patient_service", aggregate_id=patient_id, payload=payload),
    )
    _located(database, "patient", patient_id)
    return service.start_search(database.unit_of_work(), patient_id, default_budget=100).id


def _therapist(database: Any, therapist_id: int) -> None:
    payload = {
        "therapist_id": therapist_id,
        "version": 1,
        "status": "active",
        "gender": "female",
        "postal_code": "04109",
        "practice_key": f"b{uuid.uuid4().hex[:19]}",
        "has_email": True,
        "therapy_methods": ["behavioural"],
    }
    _handle(
        database,
        THERAPIST_EVENTS[0].build(
            producer="therapist_service", aggregate_id=therapist_id, payload=payload
        ),
    )
    _located(database, "therapist", therapist_id)


def _inquiry(engine: sa.Engine, therapist_id: int, search_id: int) -> int:
    with engine.begin() as connection:
        inquiry_id = connection.execute(
            sa.text(
                "INSERT INTO matching_service.inquiries (therapist_id, practice_key, origin, "
                "status, original_size, current_size, sent_at, sent_via) SELECT therapist_id, "
                "practice_key, 'manual', 'sent', 1, 1, now(), 'email' "
                "FROM matching_service.therapist_projection WHERE therapist_id = :t RETURNING id"
            ),
            {"t": therapist_id},
        ).scalar_one()
        connection.execute(
            sa.text(
                "INSERT INTO matching_service.inquiry_patients (inquiry_id, search_id, "
                "patient_id, position) SELECT :i, id, patient_id, 1 "
                "FROM matching_service.patient_searches WHERE id = :s"
            ),
            {"i": inquiry_id, "s": search_id},
        )
        connection.execute(
            sa.text(
                "UPDATE matching_service.patient_searches SET contacts_used = contacts_used + 1 "
                "WHERE id = :s"
            ),
            {"s": search_id},
        )
    return int(inquiry_id)


def _round(database: Any, engine: sa.Engine, send: Send, parallel: int, ids: Any) -> dict:
    """One contest: a fresh patient in `parallel` inquiries, all accepted at once."""
    patient = _search(database, next(ids))
    for _ in range(SPARES):
        _search(database, next(ids))
    therapists = [next(ids) for _ in range(parallel)]
    for therapist_id in therapists:
        _therapist(database, therapist_id)
    inquiries = [_inquiry(engine, t, patient) for t in therapists]
    body = {
        "response_type": "full_acceptance",
        "channel": "email",
        "patients": [{"search_id": patient, "outcome": "accepted"}],
    }
    barrier = threading.Barrier(parallel + 1)
    results: dict[int, tuple[int, dict[str, Any], float]] = {}

    def accept(inquiry_id: int) -> None:
        barrier.wait()
        started = time.perf_counter()
        status, answer = send(inquiry_id, body)
        results[inquiry_id] = (status, answer, time.perf_counter() - started)

    threads = [threading.Thread(target=accept, args=(i,)) for i in inquiries]
    for thread in threads:
        thread.start()
    barrier.wait()
    released = time.perf_counter()
    for thread in threads:
        thread.join()
    total = time.perf_counter() - released
    failed = [r for r in results.values() if r[0] != 200]
    if failed:
        raise SystemExit(f"{len(failed)} answers failed, e.g. {failed[0][:2]}")
    winners = [i for i, r in results.items() if not r[1]["conflicts"]]
    offered = [
        len(r[1]["conflicts"][0]["replacement_offers"])
        for r in results.values()
        if r[1]["conflicts"]
    ]
    return {
        "seconds": total,
        "latencies": sorted(r[2] for r in results.values()),
        "winners": len(winners),
        "conflicts": len(offered),
        "min_offers": min(offered, default=0),
    }


def _test_client_sender(settings: MatchingSettings, headers: dict[str, str]) -> Send:
    client = create_app(settings).test_client()

    def send(inquiry_id: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        response = client.put(f"/api/inquiries/{inquiry_id}/response", json=body, headers=headers)
        return response.status_code, response.json or {}

    return send


def _http_sender(base: str, headers: dict[str, str]) -> Send:
    def send(inquiry_id: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"{base}/api/inquiries/{inquiry_id}/response",
            data=json.dumps(body).encode(),
            headers={**headers, "Content-Type": "application/json"},
            method="PUT",
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    return send


def _gunicorn(database_url: str, secret: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "MATCHING_SERVICE_DATABASE_URL": role_url(database_url, "matching_service"),
        "ANSWER_LINK_SECRET": secret,
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "--workers",
        "1",
        "--threads",
        "8",
        "--no-control-socket",
        "--bind",
        f"127.0.0.1:{port}",
        "matching_service.app:create_app()",
    ]
    process = subprocess.Popen(command, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=1):
                return process, base
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("gunicorn did not start")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=50)
    parser.add_argument("--server", choices=("test-client", "gunicorn"), default="test-client")
    args = parser.parse_args()

    datadir = Path(tempfile.mkdtemp(prefix="bench-accept-")) / "pg"
    token, secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    process = None
    with postgres_admin_url(datadir) as admin_url, fresh_database(admin_url) as database_url:
        try:
            ensure_bootstrap_admin(database_url, token)
            settings = MatchingSettings(
                database_url=role_url(database_url, "matching_service"),
                answer_link_secret=SecretStr(secret),
                log_level="WARNING",
                log_json=False,
            )
            database = ServiceRuntime.build(settings, INFRA).database
            engine = sa.create_engine(driver_url(database_url))
            headers = {"Authorization": f"Bearer {token}"}
            if args.server == "gunicorn":
                process, base = _gunicorn(database_url, secret)
                send = _http_sender(base, headers)
            else:
                send = _test_client_sender(settings, headers)
            ids = iter(range(1, 10_000_000))
            rounds = [
                _round(database, engine, send, args.parallel, ids) for _ in range(args.rounds)
            ]
            for number, result in enumerate(rounds, start=1):
                latencies = result["latencies"]
                print(
                    f"round {number}: {args.parallel} parallel acceptances answered in "
                    f"{result['seconds']:.3f} s; {result['winners']} claim, "
                    f"{result['conflicts']} conflicts (each with >= {result['min_offers']} "
                    f"replacement offers); "
                    f"latency p50 {statistics.median(latencies) * 1000:.0f} ms, "
                    f"max {latencies[-1] * 1000:.0f} ms"
                )
            totals = [r["seconds"] for r in rounds]
            print(
                f"{args.server}: {args.parallel} parallel acceptances of one patient, "
                f"{len(rounds)} rounds: median {statistics.median(totals):.3f} s, "
                f"max {max(totals):.3f} s (target < 2 s)"
            )
            engine.dispose()
            database.dispose()
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=10)


if __name__ == "__main__":
    main()
