"""Races across processes: what the integration tests check with threads in one process,
here through the services' real gunicorn processes (several workers, each with its own
connections) and the real batch commands started twice at once.

- 100 therapists accept one patient at the same moment: exactly one claim;
- two bundle runs at once, five times over: no practice with two open inquiries;
- two `send-emails` runs at once against a real SMTP server: no email sent twice;
- two call schedulers (their own connection pools) booking follow-ups of one therapist's
  inquiries at once: no slot booked twice, none refused;
- one person registered 20 times at once: one record, 19 times 409 naming it.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from communication_service.contacts import directory_of
from communication_service.models import INFRA as COMMUNICATION_INFRA
from communication_service.schemas import InquiryFollowUpDueView
from communication_service.service import calls
from communication_service.settings import CommunicationSettings
from matching_service import schemas as matching
from shared.cli import ensure_service_token
from shared.devstack import ROOT, free_port, process_env, wait_for_port
from shared.runtime import ServiceRuntime
from tests.answer_support import (
    Spot,
    answer_body,
    client,
    database,
    events,
    inquiry,
    search_row,
    settings,
    spot,
)
from tests.communication_support import (
    SERVICE_TOKEN,
    feed,
    inquiry_created,
    monday,
    new_id,
    new_therapist,
    served,
    smtp_server,
)
from tests.conftest import ANSWER_LINK_SECRET
from tests.helpers import patient_body, wait_until
from tests.reliability.conftest import Tally
from therapist_service.app import create_app as create_therapist_app
from therapist_service.settings import TherapistSettings

__all__ = ["client", "database", "settings", "spot"]  # fixtures

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


# ---------------------------------------------------------------- gunicorn


def _gunicorn(
    service: str, database_url: str, bootstrap: str, home: Path, **extra: str
) -> Iterator[str]:
    """The service's app under gunicorn (2 worker processes, as `make run`) on the test
    database."""
    port = free_port()
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    metrics = home / f"prometheus-{service}"
    metrics.mkdir(parents=True, exist_ok=True)
    env = process_env(service, database_url, bootstrap)
    env.update(
        SERVICE_TOKEN=SERVICE_TOKEN,
        ANSWER_LINK_SECRET=ANSWER_LINK_SECRET,
        LOG_JSON="false",
        PROMETHEUS_MULTIPROC_DIR=str(metrics),
        **extra,
    )
    log = (home / f"{service}-gunicorn.log").open("wb")
    process = subprocess.Popen(
        [
            gunicorn,
            "-c",
            str(ROOT / "shared" / "gunicorn_conf.py"),
            "--workers",
            "2",
            "--threads",
            "8",
            "--bind",
            f"127.0.0.1:{port}",
            "--no-control-socket",
            f"{service}.app:create_app()",
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_port("127.0.0.1", port, timeout=60)
        wait_until(lambda: _ready(url), timeout=60)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def matching_url(
    database_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    # the settings of tests.answer_support's in-process app (same replacement offers)
    yield from _gunicorn(
        "matching_service",
        database_url,
        kafka_bootstrap,
        tmp_path_factory.mktemp("matching"),
        BUNDLE_MAX_SIZE="3",
        DEFAULT_CONTACT_BUDGET="60",
    )


@pytest.fixture(scope="module")
def patient_url(
    database_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    home = tmp_path_factory.mktemp("patient")
    yield from _gunicorn("patient_service", database_url, kafka_bootstrap, home)


def _at_once(count: int, call: Callable[[int], Any]) -> list[Any]:
    """`call(n)` for n in range(count), all released together from `count` threads."""
    barrier = threading.Barrier(count)

    def run(n: int) -> Any:
        barrier.wait(timeout=60)
        return call(n)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


# ---------------------------------------------------------------- acceptances


def test_100_therapists_accepting_one_patient_at_once_make_one_claim(
    spot: Spot,
    matching_url: str,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
    tally: Tally,
) -> None:
    patient = spot.search()
    spares = [spot.search() for _ in range(2)]
    therapists = [spot.therapist() for _ in range(100)]
    with admin_engine.begin() as connection:  # staff granted contacts for 100 inquiries
        connection.execute(
            sa.text(
                "UPDATE matching_service.patient_searches SET contact_budget = 200 WHERE id = :s"
            ),
            {"s": patient},
        )
    inquiries = [inquiry(admin_engine, t, [patient]) for t in therapists]
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=100))

    def accept(n: int) -> requests.Response:
        return session.put(
            f"{matching_url}/api/inquiries/{inquiries[n]}/response",
            json=answer_body({patient: "accepted"}),
            headers=admin_headers,
            timeout=120,
        )

    responses = _at_once(len(inquiries), accept)
    tally.checked = len(responses)
    tally.server_errors = sum(r.status_code >= 500 for r in responses)
    assert all(r.status_code == 200 for r in responses), [
        (r.status_code, r.text[:200]) for r in responses if r.status_code != 200
    ]
    winners = [n for n, r in enumerate(responses) if not r.json()["conflicts"]]
    tally.races_won_twice = max(0, len(winners) - 1)
    assert len(winners) == 1
    claimed = search_row(admin_engine, patient)
    assert (claimed.status, claimed.placed_therapist_id) == ("in_trial", therapists[winners[0]])
    assert len(events(admin_engine, "search.claimed", patient)) == 1
    for n, response in enumerate(responses):
        if n != winners[0]:
            assert response.json()["conflicts"] == [
                {"search_id": patient, "replacement_offers": spares}
            ]


# ---------------------------------------------------------------- bundle runs


def test_two_bundle_runs_at_once_never_leave_a_practice_with_two_open_inquiries(
    spot: Spot,
    matching_url: str,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
    tally: Tally,
) -> None:
    """Five rounds of two runs for the spot's postal code, through different gunicorn
    workers; new searches arrive between rounds. Some practices have two therapists."""
    postal_code = f"{90_000 + new_id() % 9_000:05d}"
    practices = [f"r{new_id()}" for _ in range(6)]
    therapists = [
        spot.therapist(postal_code=postal_code, practice_key=practices[n % len(practices)])
        for n in range(10)
    ]
    written: list[int] = []
    for _ in range(5):
        for _ in range(4):
            spot.search(postal_code=postal_code)

        def run(n: int) -> requests.Response:
            return requests.post(
                f"{matching_url}/api/bundle-runs",
                json={"postal_code_prefix": postal_code},
                headers=admin_headers,
                timeout=120,
            )

        responses = _at_once(2, run)
        assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
        written += [r.json()["inquiries_created"] for r in responses]
        with admin_engine.connect() as connection:
            doubled = connection.execute(
                sa.text(
                    "SELECT count(*) FROM (SELECT practice_key FROM matching_service.inquiries "
                    "WHERE therapist_id = ANY(:ids) AND status IN ('unsent', 'sent') "
                    "GROUP BY practice_key HAVING count(*) > 1) AS doubled"
                ),
                {"ids": therapists},
            ).scalar_one()
        tally.races_won_twice += doubled
        tally.checked += 1
        assert doubled == 0
        # the practices answer (all full), so the next round may write to them again
        with admin_engine.begin() as connection:
            connection.execute(
                sa.text(
                    "UPDATE matching_service.inquiries SET status = 'closed' "
                    "WHERE therapist_id = ANY(:ids) AND status IN ('unsent', 'sent')"
                ),
                {"ids": therapists},
            )
    assert sum(written) >= 5  # the runs did write inquiries


# ---------------------------------------------------------------- send-emails


def _communication_settings(database_url: str, **values: Any) -> CommunicationSettings:
    from shared.db import role_url

    return CommunicationSettings(
        database_url=role_url(database_url, "communication_service"),
        kafka_bootstrap_servers="127.0.0.1:9",
        log_json=False,
        service_token=SERVICE_TOKEN,
        **values,
    )


@pytest.fixture(scope="module")
def therapist_service(database_url: str) -> Iterator[tuple[str, Any]]:
    """therapist_service over HTTP (contact data and phone hours) and its test client."""
    from shared.db import role_url

    ensure_service_token(database_url, SERVICE_TOKEN)
    app = create_therapist_app(
        TherapistSettings(
            database_url=role_url(database_url, "therapist_service"),
            kafka_bootstrap_servers="127.0.0.1:9",
            log_json=False,
        )
    )
    with served(app) as url:
        yield url, app.test_client()


def test_two_send_emails_runs_at_once_send_no_email_twice(
    database_url: str,
    therapist_service: tuple[str, Any],
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
    tally: Tally,
) -> None:
    """Two `python -m communication_service.cli send-emails` processes started together,
    against a real SMTP server that takes its time per message (so they overlap)."""
    url, therapist_client = therapist_service
    with smtp_server() as (sink, smtp_port):
        sink.delay = 0.1
        comm = _communication_settings(database_url, therapist_service_url=url, smtp_port=smtp_port)
        queue = ServiceRuntime.build(comm, COMMUNICATION_INFRA).database
        try:
            therapists = [new_therapist(therapist_client, admin_headers) for _ in range(20)]
            for therapist in therapists:  # a practice each: every one is due this week
                payload = inquiry_created(therapist["id"], f"m{new_id()}")
                feed(queue, comm, matching.INQUIRY_CREATED, payload)
        finally:
            queue.dispose()
        env = process_env("communication_service", database_url, "127.0.0.1:9")
        env.update(
            SERVICE_TOKEN=SERVICE_TOKEN,
            THERAPIST_SERVICE_URL=url,
            PATIENT_SERVICE_URL=url,
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(smtp_port),
            SMTP_STARTTLS="false",
            LOG_JSON="false",
        )
        command = [
            sys.executable,
            "-m",
            "communication_service.cli",
            "send-emails",
            "--as-of",
            monday().isoformat(),
        ]
        runs = [
            subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [run.communicate(timeout=300)[0] for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        received = Counter(message["To"] for message in sink.messages)
    addresses = [therapist["email"] for therapist in therapists]
    tally.checked = len(addresses)
    tally.races_won_twice = sum(max(0, received[a] - 1) for a in addresses)
    assert {a: received[a] for a in addresses} == dict.fromkeys(addresses, 1)
    # no message of any other test's email twice either
    ids = Counter(message["Message-ID"] for message in sink.messages)
    assert max(ids.values()) == 1
    assert all("sent" in output for output in outputs)


# ---------------------------------------------------------------- call schedulers


def test_two_call_schedulers_at_once_book_no_slot_twice(
    database_url: str,
    therapist_service: tuple[str, Any],
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
    tally: Tally,
) -> None:
    """Two schedulers, each with its own connection pool, book follow-up calls for 15
    inquiries each of the same therapist, all at once: 30 calls in 30 different slots."""
    url, therapist_client = therapist_service
    hours = {day: ["08:00-12:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
    therapist = new_therapist(therapist_client, admin_headers, phone_hours=hours)["id"]
    comm = _communication_settings(database_url, therapist_service_url=url)
    directory = directory_of(comm)
    as_of = datetime.now(UTC) + timedelta(days=30)
    schedulers = [ServiceRuntime.build(comm, COMMUNICATION_INFRA).database for _ in range(2)]
    inquiries = [[new_id() for _ in range(15)] for _ in schedulers]
    refused: list[BaseException] = []

    def book(n: int) -> int:
        booked = 0
        for inquiry_id in inquiries[n]:
            due = InquiryFollowUpDueView(
                inquiry_id=inquiry_id, therapist_id=therapist, due_since=as_of, search_ids=[]
            )
            try:
                with schedulers[n].unit_of_work() as uow:
                    call = calls.schedule_follow_up(
                        uow, due, directory, slot_minutes=5, horizon_days=14, as_of=as_of
                    )
                    uow.commit()
            except Exception as exc:  # the race lost as an error is a failure too
                refused.append(exc)
                continue
            booked += call is not None
        return booked

    try:
        booked = _at_once(2, book)
    finally:
        for scheduler in schedulers:
            scheduler.dispose()
    with admin_engine.connect() as connection:
        slots = Counter(
            connection.execute(
                sa.text(
                    "SELECT scheduled_at FROM communication_service.phone_calls "
                    "WHERE therapist_id = :t AND status = 'scheduled'"
                ),
                {"t": therapist},
            ).scalars()
        )
    tally.checked = 30
    tally.races_won_twice = sum(count - 1 for count in slots.values() if count > 1)
    assert not refused, refused
    assert booked == [15, 15]
    assert sum(slots.values()) == 30 and max(slots.values()) == 1


# ---------------------------------------------------------------- duplicate registrations


def test_one_person_registered_20_times_at_once_is_one_record(
    patient_url: str, admin_headers: dict[str, str], admin_engine: sa.Engine, tally: Tally
) -> None:
    """business-rules.md §2 (duplicates): same name and birth date, or same email. All 20
    share the email (some in capitals); every other one has a first name of its own, so
    those match the rest by email only."""
    body = patient_body(birth_date="1961-02-03")

    def variant(n: int) -> dict[str, Any]:
        changed = dict(body)
        if n % 2:
            changed["first_name"] = f"{body['first_name']}x{n}"
        if n % 4 == 3:
            changed["email"] = body["email"].upper()
        return changed

    def register(n: int) -> requests.Response:
        return requests.post(
            f"{patient_url}/api/patients", json=variant(n), headers=admin_headers, timeout=120
        )

    responses = _at_once(20, register)
    tally.checked = len(responses)
    tally.server_errors = sum(r.status_code >= 500 for r in responses)
    created = [r.json()["id"] for r in responses if r.status_code == 201]
    tally.races_won_twice = max(0, len(created) - 1)
    assert sorted(r.status_code for r in responses) == [201] + [409] * 19, [
        r.text[:200] for r in responses
    ]
    (existing,) = created
    for response in responses:
        if response.status_code == 409:
            error = response.json()["error"]
            assert error["code"] == "duplicate_patient"
            assert error["details"] == {"existing_id": existing}
    with admin_engine.connect() as connection:
        records = connection.execute(
            sa.text(
                "SELECT count(*) FROM patient_service.patients WHERE lower(email) = :email "
                "OR (last_name = :last AND first_name LIKE :first AND birth_date = '1961-02-03')"
            ),
            {"last": body["last_name"], "email": body["email"], "first": f"{body['first_name']}%"},
        ).scalar_one()
    assert records == 1
