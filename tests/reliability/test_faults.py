"""Faults under load: a burst of writes across the services while the broker is replaced, a
worker is killed, PostgreSQL restarts or a consumer's handler fails for a while.

Each scenario runs on a stack of its own (tests/reliability/stack.py: a fresh database, a
broker, the five real worker processes) and ends with the same accounting, once the
platform is quiet:
- no event lost: every outbox row of a type a consumer handles is in that consumer's
  `processed_events`;
- none applied twice: no versioned projection row written twice at one source version
  (a trigger logs every committed write of a new version);
- every projection equal to its source (`shared.reconcile`);
- no server error (a 503 "not now" while the database is away is retried, and counted).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.settings import MatchingSettings
from shared.db import driver_url
from shared.devstack import ROOT, EmbeddedPostgres, drop_database, ensure_database
from shared.migrations import upgrade_all
from shared.runtime import ServiceRuntime
from tests.matching_support import handle, new_id, therapist_event
from tests.reliability.conftest import Tally
from tests.reliability.stack import VERSIONED, Burst, Stack, install_probe, stack
from tests.reliability.stack import service_settings as stack_settings

# a burst, a fault and the wait for the platform to catch up: more than the default 300 s
# on a busy machine
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

WRITES = 1000  # the broker scenario's burst
SHORTER = 600  # the other scenarios' (their faults come early enough in it)
_timers: list[threading.Timer] = []


def later(seconds: float, action: Callable[..., object], *args: object) -> None:
    """Run `action(*args)` in `seconds`, while the burst goes on."""
    timer = threading.Timer(seconds, action, args=args)
    _timers.append(timer)
    timer.start()


def wait_for_timers() -> None:
    """Every fault's second half (a restart) has happened."""
    while _timers:
        _timers.pop().join(timeout=120)


def finish(running: Stack, burst: Burst, tally: Tally) -> None:
    """Wait for the platform to go quiet, record the figures, assert them."""
    accounting = running.settle()
    report = running.reconcile()
    tally.events_lost = accounting.events_lost + accounting.unpublished
    tally.duplicates_applied = accounting.duplicates
    tally.server_errors = len(burst.server_errors)
    tally.checked = accounting.compared
    started, followed = running.search_counts()
    print(
        f"writes {burst.writes}, refused (503) {burst.refused}, patients {len(burst.patients)}, "
        f"therapists {len(burst.therapists)}, searches {started} ({followed} followed), "
        f"events compared {accounting.compared}, lost {accounting.lost}, "
        f"unpublished {accounting.unpublished}, duplicates {accounting.duplicates}"
    )
    context = "\n".join(report.lines()) + "\n" + running.log_tail()
    assert burst.server_errors == [], burst.server_errors
    assert accounting.unpublished == 0, context
    assert accounting.events_lost == 0, f"{accounting.lost}\n{context}"
    assert accounting.duplicates == 0, context
    assert accounting.probed == set(VERSIONED), accounting.probed  # the probe saw writes
    assert report.ok, context
    assert started > 20 and followed == started  # searches were part of the burst


def test_broker_killed_and_replaced_twice_during_a_burst_then_replayed(
    pg_admin_url: str, tmp_path: Path, tally: Tally
) -> None:
    """The in-memory broker loses its log with the process: what it had acknowledged but
    consumers had not read yet is gone from Kafka, still in the outboxes. The runbook's
    repair, `python -m shared.cli outbox --replay --since`, publishes it again with its
    original event ids; consumers skip the ones they had."""
    with stack(pg_admin_url, tmp_path) as running:
        since = datetime.now(UTC) - timedelta(seconds=5)

        def replace_broker(written: int) -> None:
            if written in (300, 650):
                # the broker of the first fault must be back before the second kill: on a
                # fast machine 350 writes take less than the 2 s restart delay, and two
                # starts racing would leave one broker process unowned
                wait_for_timers()
                running.broker.kill()
                tally.fault(f"broker killed after {written} writes")
                # writes go on meanwhile: they wait in the outboxes
                later(2.0, running.broker.start)

        burst = Burst(running)
        burst.run(WRITES, replace_broker)
        wait_for_timers()
        running.settle(timeout=60)  # the relays catch up on the new broker
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "shared.cli",
                "outbox",
                "--replay",
                "--since",
                since.isoformat(),
            ],
            env={
                **os.environ,
                "DATABASE_URL": running.url,
                "KAFKA_BOOTSTRAP_SERVERS": running.broker.bootstrap,
                "PYTHONPATH": str(ROOT),
            },
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        finish(running, burst, tally)


def test_workers_killed_mid_batch_and_restarted(
    pg_admin_url: str, tmp_path: Path, tally: Tally
) -> None:
    """SIGKILL leaves a consumer's batch uncommitted (offsets and transaction) and a relay's
    rows published but not marked: both are redone after the restart, and nothing twice."""
    with stack(pg_admin_url, tmp_path) as running:
        kills = {
            150: "matching_service",  # consumer of patients, therapists, locations; relay
            250: "geocoding_service",  # consumer and relay of location events
            350: "patient_service",  # relay of patient events, consumer of search events
            450: "matching_service",
        }

        def kill(written: int) -> None:
            service = kills.get(written)
            if service is None:
                return
            wait_for_timers()  # the previous kill's restart has happened
            running.kill_worker(service)
            tally.fault(f"{service} worker SIGKILL after {written} writes")
            later(1.5, running.start_worker, service)

        burst = Burst(running)
        burst.run(SHORTER, kill)
        wait_for_timers()
        finish(running, burst, tally)


def test_postgresql_restarted_under_load(tmp_path: Path, tally: Tally) -> None:
    """A server of the test's own, stopped and started again twice during the burst: the
    APIs answer 503 meanwhile (retried), workers reconnect and go on."""
    home = Path(tempfile.mkdtemp(prefix="placement-rel-pg-"))
    server = EmbeddedPostgres(home / "data")
    admin_url = server.start()
    try:
        with stack(admin_url, tmp_path) as running:

            def start_again() -> None:
                assert server.start() == admin_url

            def restart(written: int) -> None:
                if written in (200, 400):
                    wait_for_timers()  # the first restart is done before the second stop
                    server.stop()
                    tally.fault(f"PostgreSQL restarted after {written} writes")
                    later(3.0, start_again)  # writes go on meanwhile: 503, repeated

            burst = Burst(running)
            burst.run(SHORTER, restart)
            wait_for_timers()
            finish(running, burst, tally)
            assert burst.refused > 0  # the burst did meet the database away
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_a_consumer_s_handler_failing_for_a_while_then_recovering(
    pg_admin_url: str, tmp_path: Path, tally: Tally
) -> None:
    """matching's writes fail for 15 s (its database role read-only, as after a failover):
    every event it polls meanwhile fails in its handler. Nothing may be dead-lettered or
    skipped; once writes work again, it catches up."""
    with stack(pg_admin_url, tmp_path) as running:
        assert running.engine is not None

        def read_only(on: bool) -> None:
            assert running.engine is not None
            with running.engine.begin() as connection:
                setting = "SET default_transaction_read_only = on" if on else "RESET ALL"
                connection.execute(
                    sa.text(f'ALTER ROLE matching_service IN DATABASE "{running.name}" {setting}')
                )
                connection.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE usename = 'matching_service' AND datname = current_database()"
                    )
                )

        def fail_for_a_while(written: int) -> None:
            if written == 200:
                read_only(True)
                tally.fault("matching's handler failing (read-only database) for 15 s")
                later(15.0, read_only, False)

        try:
            burst = Burst(running)
            burst.run(SHORTER, fail_for_a_while)
            wait_for_timers()
            finish(running, burst, tally)
        finally:
            read_only(False)


def test_the_probe_counts_a_projection_row_written_twice_at_one_version(
    pg_admin_url: str, tmp_path: Path
) -> None:
    """What the scenarios' "none applied twice" rests on: a handler that wrote a version it
    had written already (here: the row deleted and inserted again) is counted."""
    running = Stack(pg_admin_url, tmp_path)
    running.url = ensure_database(pg_admin_url, running.name)
    try:
        upgrade_all(running.url)
        running.engine = sa.create_engine(driver_url(running.url))
        install_probe(running.engine)
        settings = stack_settings(MatchingSettings, running.url, "127.0.0.1:9")
        database = ServiceRuntime.build(settings, MATCHING_INFRA).database
        therapist = new_id()
        try:
            handle(database, therapist_event(therapist, 1))
            handle(database, therapist_event(therapist, 2))
            handle(database, therapist_event(therapist, 2))  # again: the version guard holds
            assert running.account().duplicates == 0
            with running.engine.begin() as connection:
                connection.execute(
                    sa.text(
                        "DELETE FROM matching_service.therapist_projection WHERE therapist_id = :t"
                    ),
                    {"t": therapist},
                )
            handle(database, therapist_event(therapist, 2))  # written at version 2 again
            assert running.account().duplicates == 1
        finally:
            database.dispose()
    finally:
        assert running.engine is not None
        running.engine.dispose()
        drop_database(pg_admin_url, running.name)
