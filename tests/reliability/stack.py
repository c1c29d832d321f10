"""A platform of the reliability suite's own: a fresh database, a broker and the five real
worker processes, with the accounting its fault tests end on.

Every fault test runs on a stack of its own, so the whole database is the test's and the
comparisons are exact: every outbox row against every consumer's `processed_events` (an
event lost), a projection row written twice at one source version (an event applied twice,
seen through a trigger, below) and `shared.reconcile` (every projection equal to its source).

Writes go through the services' own Flask apps in the test process (each with its own
connection pool); the relays and consumers are the real `python -m <service>.worker`
processes, which the tests kill, restart and cut off.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from communication_service.handlers import handlers_for
from communication_service.settings import CommunicationSettings
from geocoding_service.handlers import handlers as geocoding_handlers
from geocoding_service.settings import GeocodingSettings
from matching_service.app import create_app as create_matching_app
from matching_service.handlers import HANDLERS as MATCHING_HANDLERS
from matching_service.settings import MatchingSettings
from patient_service.app import create_app as create_patient_app
from patient_service.handlers import handlers as patient_handlers
from patient_service.settings import PatientSettings
from shared.cli import ensure_bootstrap_admin, ensure_service_token
from shared.db import driver_url, role_url
from shared.devstack import (
    ROOT,
    TansuBroker,
    drop_database,
    ensure_database,
    free_port,
    process_env,
)
from shared.migrations import upgrade_all
from shared.reconcile import ReconciliationReport, reconcile
from shared.settings import SERVICES, ServiceSettings
from tests.conftest import ADMIN_TOKEN, ANSWER_LINK_SECRET, SERVICE_TOKEN
from tests.helpers import patient_body
from tests.integration.test_therapist_api import therapist_body
from tests.unit.test_geocoding_rules import TSV
from therapist_service.app import create_app as create_therapist_app
from therapist_service.handlers import HANDLERS as THERAPIST_HANDLERS
from therapist_service.settings import TherapistSettings

SETTINGS: dict[str, type[ServiceSettings]] = {
    "patient_service": PatientSettings,
    "therapist_service": TherapistSettings,
    "matching_service": MatchingSettings,
    "communication_service": CommunicationSettings,
    "geocoding_service": GeocodingSettings,
}
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
POSTAL_CODE = "04109"  # in the PLZ data loaded (TSV): every entity is located

# Projections keyed by a source version: each (row, version) is written once. A second
# write of the same version is an event applied twice. Table -> (version column, key columns)
VERSIONED = {
    "matching_service.patient_projection": ("version", ("patient_id",)),
    "matching_service.therapist_projection": ("version", ("therapist_id",)),
    "matching_service.locations": ("version", ("entity_type", "entity_id")),
    "geocoding_service.entity_locations": ("source_version", ("entity_type", "entity_id")),
}

_PROBE = """
CREATE SCHEMA IF NOT EXISTS reliability_probe;
CREATE TABLE IF NOT EXISTS reliability_probe.writes (
    tbl text NOT NULL, key text NOT NULL, version text, at timestamptz DEFAULT clock_timestamp()
);
CREATE OR REPLACE FUNCTION reliability_probe.log_write() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    new_row jsonb := to_jsonb(NEW);
    key text := '';
    i int;
BEGIN
    IF TG_OP = 'UPDATE' AND (to_jsonb(OLD) ->> TG_ARGV[0])
            IS NOT DISTINCT FROM (new_row ->> TG_ARGV[0]) THEN
        RETURN NULL;  -- the same version again (a location's coordinates, a status): no event
    END IF;
    FOR i IN 1 .. TG_NARGS - 1 LOOP
        key := key || ':' || coalesce(new_row ->> TG_ARGV[i], '');
    END LOOP;
    INSERT INTO reliability_probe.writes (tbl, key, version)
    VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, key, new_row ->> TG_ARGV[0]);
    RETURN NULL;
END $$;
"""


def install_probe(engine: sa.Engine) -> None:
    """Triggers that log every committed write of a new version to a versioned projection."""
    with engine.begin() as connection:
        connection.execute(sa.text(_PROBE))
        for table, (version, keys) in VERSIONED.items():
            arguments = ", ".join(f"'{name}'" for name in (version, *keys))
            connection.execute(
                sa.text(
                    f"CREATE TRIGGER reliability_probe AFTER INSERT OR UPDATE ON {table} "
                    f"FOR EACH ROW EXECUTE FUNCTION reliability_probe.log_write({arguments})"
                )
            )


def handled_event_types() -> dict[str, set[str]]:
    """Event types each consumer has a handler for (events of other types are skipped)."""
    settings = {
        name: service_settings(cls, "postgresql://x@127.0.0.1/x", "127.0.0.1:1")
        for name, cls in SETTINGS.items()
    }
    return {
        "patient_service": set(patient_handlers(settings["patient_service"])),
        "therapist_service": set(THERAPIST_HANDLERS),
        "matching_service": set(MATCHING_HANDLERS),
        "communication_service": set(handlers_for(settings["communication_service"])),
        "geocoding_service": set(geocoding_handlers(settings["geocoding_service"])),
    }


def service_settings(cls: type[ServiceSettings], url: str, bootstrap: str, **extra: Any) -> Any:
    """Settings of a service on `url` as its own role."""
    service = cls.model_fields["service_name"].default
    values: dict[str, Any] = {
        "database_url": role_url(url, service),
        "kafka_bootstrap_servers": bootstrap,
        "log_json": False,
    }
    if "answer_link_secret" in cls.model_fields:
        values["answer_link_secret"] = ANSWER_LINK_SECRET
    if "service_token" in cls.model_fields:
        values["service_token"] = SERVICE_TOKEN
    return cls(**{**values, **extra})


@dataclass
class Accounting:
    """What the stack's database says once the platform is quiet."""

    unpublished: int  # outbox rows not yet published, all services
    lost: dict[str, int]  # per consumer: events of a type it handles, never processed
    duplicates: int  # (projection row, version) written more than once
    compared: int  # (event, consumer) pairs compared
    probed: set[str]  # versioned projections the probe saw writes to

    @property
    def events_lost(self) -> int:
        return sum(self.lost.values())

    @property
    def settled(self) -> bool:
        return self.unpublished == 0 and self.events_lost == 0


@dataclass
class Stack:
    """The database, broker and worker processes of one fault test."""

    admin_url: str  # superuser URL of the server
    home: Path
    name: str = field(default_factory=lambda: f"rel_{uuid.uuid4().hex[:10]}")
    broker: TansuBroker = field(default_factory=TansuBroker)
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    url: str = ""
    engine: sa.Engine | None = None
    clients: dict[str, Any] = field(default_factory=dict)
    worker_env: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------ set-up

    def start(self, services: tuple[str, ...] = SERVICES) -> Stack:
        self.url = ensure_database(self.admin_url, self.name)
        upgrade_all(self.url)
        ensure_bootstrap_admin(self.url, ADMIN_TOKEN)
        ensure_service_token(self.url, SERVICE_TOKEN)
        self.engine = sa.create_engine(driver_url(self.url), pool_pre_ping=True)
        install_probe(self.engine)
        self.broker.start()
        self._load_plz()
        for service in services:
            self.start_worker(service)
        apps = {
            "patient_service": create_patient_app,
            "therapist_service": create_therapist_app,
            "matching_service": create_matching_app,
        }
        for service, create in apps.items():
            settings = service_settings(SETTINGS[service], self.url, self.broker.bootstrap)
            self.clients[service] = create(settings).test_client()
        return self

    def _load_plz(self) -> None:
        path = self.home / "DE.txt"
        path.write_text(TSV + "\n")
        env = process_env("geocoding_service", self.url, self.broker.bootstrap)
        result = subprocess.run(
            [sys.executable, "-m", "geocoding_service.cli", "import-plz", str(path)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def env_of(self, service: str) -> dict[str, str]:
        env = process_env(service, self.url, self.broker.bootstrap)
        env.update(
            SERVICE_TOKEN=SERVICE_TOKEN,
            LOG_JSON="false",
            RELAY_IDLE_SECONDS="0.05",
            KAFKA_SESSION_TIMEOUT_MS="6000",
            # a consumer stuck after a broker replacement restarts well within a settle
            CONSUMER_STALL_SECONDS="30",
            ANSWER_LINK_SECRET=ANSWER_LINK_SECRET,
            # communication reads contact data only when sending: nobody answers there
            THERAPIST_SERVICE_URL=f"http://127.0.0.1:{free_port()}",
            PATIENT_SERVICE_URL=f"http://127.0.0.1:{free_port()}",
        )
        env.update(self.worker_env)
        return env

    def start_worker(self, service: str) -> None:
        log = (self.home / f"{service}.log").open("ab")
        self.workers[service] = subprocess.Popen(
            [sys.executable, "-m", f"{service}.worker"],
            env=self.env_of(service),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill_worker(self, service: str) -> None:
        """SIGKILL, as the kernel's OOM killer or a lost host would."""
        process = self.workers.pop(service)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        for process in self.workers.values():
            process.terminate()
        for process in self.workers.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.workers.clear()
        self.broker.stop()
        if self.engine is not None:
            self.engine.dispose()
        self.clients.clear()
        drop_database(self.admin_url, self.name)

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for path in sorted(self.home.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)

    # ------------------------------------------------------------ accounting

    def account(self) -> Accounting:
        """Outbox rows against each consumer's processed events; probe duplicates."""
        assert self.engine is not None
        types = HANDLED_TYPES
        outboxes = " UNION ALL ".join(
            f"SELECT event_id, event_type FROM {schema}.outbox" for schema in SERVICES
        )
        lost: dict[str, int] = {}
        compared = 0
        with self.engine.connect() as connection:
            unpublished = sum(
                connection.execute(
                    sa.text(f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL")
                ).scalar_one()
                for schema in SERVICES
            )
            for consumer, handled in types.items():
                total, missing = connection.execute(
                    sa.text(
                        f"SELECT count(*), count(*) FILTER (WHERE p.event_id IS NULL) "
                        f"FROM ({outboxes}) o LEFT JOIN {consumer}.processed_events p "
                        "ON p.event_id = o.event_id WHERE o.event_type = ANY(:types)"
                    ),
                    {"types": sorted(handled)},
                ).one()
                compared += total
                lost[consumer] = missing
            duplicates = connection.execute(
                sa.text(
                    "SELECT count(*) FROM (SELECT 1 FROM reliability_probe.writes "
                    "GROUP BY tbl, key, version HAVING count(*) > 1) d"
                )
            ).scalar_one()
            probed = set(
                connection.execute(
                    sa.text("SELECT DISTINCT tbl FROM reliability_probe.writes")
                ).scalars()
            )
        return Accounting(unpublished, lost, duplicates, compared, probed)

    def settle(self, timeout: float = 240.0) -> Accounting:
        """Wait until every outbox row is published and every event handled (or time out);
        the accounting then."""
        deadline = time.monotonic() + timeout
        while True:
            accounting = self.account()
            if accounting.settled or time.monotonic() > deadline:
                return accounting
            time.sleep(0.5)

    def reconcile(self) -> ReconciliationReport:
        return reconcile(self.url)

    def search_counts(self) -> tuple[int, int]:
        """(searches in matching, patients patient_service follows a search of)."""
        assert self.engine is not None
        with self.engine.connect() as connection:
            return (
                connection.execute(
                    sa.text("SELECT count(*) FROM matching_service.patient_searches")
                ).scalar_one(),
                connection.execute(
                    sa.text(
                        "SELECT count(*) FROM patient_service.patients WHERE search_id IS NOT NULL"
                    )
                ).scalar_one(),
            )


HANDLED_TYPES = handled_event_types()


@contextmanager
def stack(admin_url: str, home: Path, services: tuple[str, ...] = SERVICES) -> Iterator[Stack]:
    """A started stack, stopped and its database dropped afterwards."""
    running = Stack(admin_url, home)
    try:
        yield running.start(services)
    finally:
        running.stop()


# ---------------------------------------------------------------- the burst of writes


@dataclass
class Burst:
    """A mix of writes across services: patients registered and changed, therapists created,
    imported and changed, searches started for patients matching has located."""

    stack: Stack
    seed: int = 7
    patients: list[int] = field(default_factory=list)
    therapists: list[int] = field(default_factory=list)
    searched: set[int] = field(default_factory=set)
    writes: int = 0
    refused: int = 0  # 503: the service said "not now" (retried)
    server_errors: list[str] = field(default_factory=list)  # any other 5xx

    def run(
        self, count: int, on_write: Callable[[int], None] | None = None, warm_up: int = 100
    ) -> None:
        """`count` writes; `on_write(n)` after each (the tests inject faults there).

        The first `warm_up` writes register patients; the burst then waits until matching has
        located half of them, so that searches can start from the mix on however fast the
        writes go compared with the events."""
        chooser = random.Random(self.seed)
        began = time.monotonic()
        for _ in range(count):
            if self.writes < warm_up:
                kind = "patient"
            else:
                if self.writes == warm_up:
                    self._wait_for_located(warm_up // 2)
                kind = chooser.choices(
                    ["patient", "patient_change", "therapist", "therapist_change", "search"],
                    weights=[35, 20, 15, 15, 15],
                )[0]
            self._write(kind, chooser)
            self.writes += 1
            if self.writes % 100 == 0:
                print(
                    f"{self.writes} writes in {time.monotonic() - began:.0f}s "
                    f"({len(self.searched)} searches started)",
                    file=sys.stderr,
                    flush=True,
                )
            if on_write is not None:
                on_write(self.writes)

    def _write(self, kind: str, chooser: random.Random) -> None:
        clients = self.stack.clients
        if kind == "patient_change" and self.patients:
            patient = chooser.choice(self.patients)
            self._send(
                clients["patient_service"],
                "patch",
                f"/api/patients/{patient}",
                {"max_travel_km": chooser.randint(5, 60)},
            )
        elif kind == "therapist_change" and self.therapists:
            therapist = chooser.choice(self.therapists)
            languages = chooser.choice([["Deutsch"], ["Deutsch", "Englisch"], ["Türkisch"]])
            self._send(
                clients["therapist_service"],
                "patch",
                f"/api/therapists/{therapist}",
                {"languages": languages},
            )
        elif kind in ("therapist", "therapist_change"):
            body = self._send(
                clients["therapist_service"],
                "post",
                "/api/therapists",
                therapist_body(postal_code=POSTAL_CODE),
            )
            if body is not None:
                self.therapists.append(body["id"])
        elif kind == "search" and (patient := self._searchable()) is not None:
            self._send(
                clients["matching_service"],
                "post",
                "/api/patient-searches",
                {"patient_id": patient},
            )
            self.searched.add(patient)
        else:
            body = self._send(
                clients["patient_service"],
                "post",
                "/api/patients",
                patient_body(postal_code=POSTAL_CODE),
            )
            if body is not None:
                self.patients.append(body["id"])

    def _wait_for_located(self, count: int, timeout: float = 120.0) -> None:
        assert self.stack.engine is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.stack.engine.connect() as connection:
                located = connection.execute(
                    sa.text(
                        "SELECT count(*) FROM matching_service.locations "
                        "WHERE entity_type = 'patient'"
                    )
                ).scalar_one()
            if located >= count:
                return
            time.sleep(0.2)
        raise AssertionError(f"matching located fewer than {count} patients in {timeout}s")

    def _searchable(self) -> int | None:
        """A patient matching has located and no search was started for yet."""
        assert self.stack.engine is not None
        try:
            with self.stack.engine.connect() as connection:
                return connection.execute(
                    sa.text(
                        "SELECT l.entity_id FROM matching_service.locations l "
                        "JOIN matching_service.patient_projection p ON p.patient_id = l.entity_id "
                        "WHERE l.entity_type = 'patient' AND l.entity_id <> ALL(:done) "
                        "ORDER BY l.entity_id LIMIT 1"
                    ),
                    {"done": sorted(self.searched) or [0]},
                ).scalar_one_or_none()
        except sa.exc.OperationalError:
            return None  # the database is away (the restart scenario): write something else

    def _send(self, client: Any, method: str, path: str, body: dict[str, Any]) -> Any:
        """One request, repeated while the service answers 503 (at most 60 s)."""
        deadline = time.monotonic() + 60
        while True:
            response = getattr(client, method)(path, json=body, headers=HEADERS)
            if response.status_code == 503 and time.monotonic() < deadline:
                self.refused += 1
                time.sleep(0.5)
                continue
            if response.status_code >= 500:
                self.server_errors.append(f"{method.upper()} {path}: {response.status_code}")
                return None
            assert response.status_code < 400, (path, response.status_code, response.json)
            return response.json
