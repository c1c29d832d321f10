"""The API under load: mixed staff traffic against the services on a realistic database.

1. Loads a platform in bulk (benchmarks/api_data.py: 40,000 therapists, 100,000 patients,
   20,000 active searches, their inquiries, answers, emails and calls) with COPY into a
   fresh database, postal codes from --zipcodes (else ../shared/data/zipcodes.de.csv, else
   a synthetic map).
2. Starts the services' HTTP processes as `make run` does (gunicorn, shared/gunicorn_conf.py,
   WEB_CONCURRENCY worker processes with 8 threads each, their own database roles); no
   broker or worker is needed: writes stop at each service's outbox.
3. Drives staff traffic at each rate for --duration seconds: list, filter, detail, create,
   update and answer (PUT /api/inquiries/{id}/response) across the services. Open loop:
   requests start on a fixed schedule whatever the answers take (a slow server does not
   slow the load down), sent by a pool of client threads with keep-alive connections.
4. Prints p50/p95/p99 and errors per service, endpoint class and rate, the machine's load
   and CPU use while each rate ran.

Load generator: a small thread pool (http.client) rather than locust: it needs nothing
beyond the standard library, costs little CPU per request on a machine that runs the
servers too, and its open-loop schedule is exactly the rate asked for.

Database: BENCH_DATABASE_URL, else TEST_DATABASE_URL (a superuser URL; a database is created
and dropped), else an embedded PostgreSQL.

Usage: python benchmarks/bench_api.py [--rates 50,200,500] [--duration 30]
       [--services patient,therapist,matching,communication] [--scale 1.0]
       [--zipcodes FILE] [--threads 16] [--json FILE] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api_data import FOLLOW_UP_AFTER_DAYS, Platform, Sizes, load_platform  # noqa: E402
from bench_support import fresh_database, postgres_admin_url  # noqa: E402

from shared.auth import Role, issue_token, service_token  # noqa: E402
from shared.cli import token_stores  # noqa: E402
from shared.db import driver_url  # noqa: E402
from shared.devstack import (  # noqa: E402
    free_ports,
    process_env,
    wait_for_port,
    web_command,
)

SERVICES = ("patient", "therapist", "matching", "communication")
READ_CLASSES = ("list", "filter", "detail")
WRITE_CLASSES = ("create", "update", "answer")
TARGET_MS = {"read": 25.0, "write": 50.0}
# staff traffic is mostly reading (assumed mix of endpoint classes)
MIX = {"list": 25, "filter": 30, "detail": 30, "create": 5, "update": 7, "answer": 3}


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class Call:
    """One request to send."""

    service: str
    kind: str
    method: str
    path: str
    body: dict[str, Any] | None = None


class Traffic:
    """Realistic staff requests over the loaded platform; each write touches a row once."""

    def __init__(self, platform: Platform, services: tuple[str, ...], seed: int) -> None:
        self.p = platform
        self.services = services
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.sent = list(platform.sent_inquiries.items())
        self.rng.shuffle(self.sent)
        self.pausable = list(platform.active_search_ids)
        self.rng.shuffle(self.pausable)
        self.patients_to_update = list(platform.patient_ids)
        self.rng.shuffle(self.patients_to_update)
        self.created = 0

    def next(self) -> Call:
        """The next request: a service, then an endpoint class it has, by the mix."""
        with self.lock:
            service = self.rng.choice(self.services)
            makers = _MAKERS[service]
            kinds = [kind for kind in MIX if kind in makers]
            kind = self.rng.choices(kinds, weights=[MIX[k] for k in kinds])[0]
            return makers[kind](self)

    def _pick(self, items: list[Any]) -> Any:
        return items[self.rng.randrange(len(items))]

    def _prefix(self) -> str:
        return self._pick(self.p.prefixes)

    def _pop(self, items: list[Any], what: str) -> Any:
        if not items:
            raise SystemExit(f"no {what} left to write: a shorter --duration or a larger --scale")
        return items.pop()

    def _name(self) -> str:
        return quote(self.rng.choice(["Mül", "schmidt", "Anna", "weber", "Kle", "jonas", "Hoff"]))

    # patient_service
    def patient_list(self) -> Call:
        page = self.rng.choice([1, 1, 1, 2, 3, 5])
        return Call("patient", "list", "GET", f"/api/patients?page={page}&per_page=20")

    def patient_filter(self) -> Call:
        choice = self.rng.randrange(4)
        if choice == 0:
            status = self.rng.choice(["searching", "registered", "in_therapy"])
            query = f"status={status}"
        elif choice == 1:
            query = f"postal_code_prefix={self._prefix()}"
        elif choice == 2:
            query = f"status=searching&postal_code_prefix={self._prefix()}"
        else:
            query = f"search={self._name()}"
        return Call("patient", "filter", "GET", f"/api/patients?{query}")

    def patient_detail(self) -> Call:
        return Call("patient", "detail", "GET", f"/api/patients/{self._pick(self.p.patient_ids)}")

    def patient_create(self) -> Call:
        self.created += 1
        body = {
            "gender": self.rng.choice(["female", "male"]),
            "first_name": "Lena",
            "last_name": f"Neu{uuid.uuid4().hex[:8]}",
            "postal_code": self._pick(self.p.postal_codes),
            "birth_date": f"19{self.rng.randint(50, 99)}-0{self.rng.randint(1, 9)}-15",
            "email": f"neu.{uuid.uuid4().hex[:12]}@example.org",
        }
        return Call("patient", "create", "POST", "/api/patients", body)

    def patient_update(self) -> Call:
        patient_id = self._pop(self.patients_to_update, "patients")
        body = {"phone": f"0151 {self.rng.randint(1000000, 9999999)}"}
        return Call("patient", "update", "PATCH", f"/api/patients/{patient_id}", body)

    # therapist_service
    def therapist_list(self) -> Call:
        page = self.rng.choice([1, 1, 1, 2, 3, 5])
        return Call("therapist", "list", "GET", f"/api/therapists?page={page}&per_page=20")

    def therapist_filter(self) -> Call:
        choice = self.rng.randrange(4)
        if choice == 0:
            query = f"postal_code_prefix={self._prefix()}"
        elif choice == 1:
            query = f"status=active&therapy_method={self.rng.choice(['analytic', 'systemic'])}"
        elif choice == 2:
            query = f"potentially_available=true&postal_code_prefix={self._prefix()}"
        else:
            query = f"q={self._name()}"
        return Call("therapist", "filter", "GET", f"/api/therapists?{query}")

    def therapist_detail(self) -> Call:
        therapist_id = self._pick(self.p.therapist_ids)
        return Call("therapist", "detail", "GET", f"/api/therapists/{therapist_id}")

    def therapist_create(self) -> Call:
        body = {
            "first_name": "Jonas",
            "last_name": f"Neu{uuid.uuid4().hex[:8]}",
            "postal_code": self._pick(self.p.postal_codes),
            "salutation": "Herr",
        }
        return Call("therapist", "create", "POST", "/api/therapists", body)

    def therapist_update(self) -> Call:
        therapist_id = self._pick(self.p.therapist_ids)
        body = {"potentially_available": self.rng.random() < 0.5}
        return Call("therapist", "update", "PATCH", f"/api/therapists/{therapist_id}", body)

    # matching_service
    def matching_list(self) -> Call:
        page = self.rng.choice([1, 1, 2, 3])
        if self.rng.random() < 0.5:
            return Call("matching", "list", "GET", f"/api/patient-searches?page={page}")
        return Call("matching", "list", "GET", f"/api/inquiries?page={page}")

    def matching_filter(self) -> Call:
        choice = self.rng.randrange(7)
        queries = [
            "/api/patient-searches?status=active",
            f"/api/patient-searches?status=active&postal_code_prefix={self._prefix()}",
            "/api/patient-searches?status=active&waiting_longer_than_days=60",
            f"/api/inquiries?therapist_id={self._pick(self.p.therapist_ids)}",
            f"/api/inquiries?status={self.rng.choice(['sent', 'answered'])}",
            "/api/inquiries?overdue=true",
            f"/api/inquiries?postal_code_prefix={self._prefix()}",
        ]
        return Call("matching", "filter", "GET", queries[choice])

    def matching_detail(self) -> Call:
        if self.rng.random() < 0.5:
            search_id = self._pick(self.p.search_ids)
            return Call("matching", "detail", "GET", f"/api/patient-searches/{search_id}")
        return Call("matching", "detail", "GET", f"/api/inquiries/{self._pick(self.p.inquiry_ids)}")

    def matching_update(self) -> Call:
        search_id = self._pop(self.pausable, "active searches")
        body = {"status": "paused", "reason": "patient on holiday"}
        return Call("matching", "update", "PATCH", f"/api/patient-searches/{search_id}", body)

    def matching_answer(self) -> Call:
        inquiry_id, search_ids = self._pop(self.sent, "sent inquiries")
        body = {
            "response_type": "full_rejection",
            "channel": "email",
            "patients": [{"search_id": s, "outcome": "rejected_capacity"} for s in search_ids],
        }
        return Call("matching", "answer", "PUT", f"/api/inquiries/{inquiry_id}/response", body)

    # communication_service
    def communication_list(self) -> Call:
        page = self.rng.choice([1, 1, 2, 3])
        return Call("communication", "list", "GET", f"/api/emails?page={page}")

    def communication_filter(self) -> Call:
        choice = self.rng.randrange(5)
        queries = [
            f"/api/emails?therapist_id={self._pick(self.p.therapist_ids)}",
            f"/api/emails?patient_id={self._pick(self.p.patient_ids)}",
            "/api/emails?kind=inquiry&status=sent",
            f"/api/emails?date={datetime.now(UTC).date().isoformat()}",
            f"/api/phone-calls?date={self._pick(self.p.call_days).isoformat()}",
        ]
        return Call("communication", "filter", "GET", queries[choice])

    def communication_detail(self) -> Call:
        return Call("communication", "detail", "GET", f"/api/emails/{self._pick(self.p.email_ids)}")


_MAKERS: dict[str, dict[str, Callable[[Traffic], Call]]] = {
    "patient": {
        "list": Traffic.patient_list,
        "filter": Traffic.patient_filter,
        "detail": Traffic.patient_detail,
        "create": Traffic.patient_create,
        "update": Traffic.patient_update,
    },
    "therapist": {
        "list": Traffic.therapist_list,
        "filter": Traffic.therapist_filter,
        "detail": Traffic.therapist_detail,
        "create": Traffic.therapist_create,
        "update": Traffic.therapist_update,
    },
    "matching": {
        "list": Traffic.matching_list,
        "filter": Traffic.matching_filter,
        "detail": Traffic.matching_detail,
        "update": Traffic.matching_update,
        "answer": Traffic.matching_answer,
    },
    "communication": {
        "list": Traffic.communication_list,
        "filter": Traffic.communication_filter,
        "detail": Traffic.communication_detail,
    },
}


# ---------------------------------------------------------------- the load generator


@dataclass(frozen=True)
class Result:
    """How one request went."""

    service: str
    kind: str
    status: int
    ms: float
    late_ms: float  # how long after its scheduled start it was sent


class Client:
    """One thread's keep-alive connections, one per service."""

    def __init__(self, ports: dict[str, int], token: str) -> None:
        self.ports = ports
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.connections: dict[str, http.client.HTTPConnection] = {}

    def send(self, call: Call) -> int:
        body = json.dumps(call.body).encode() if call.body is not None else None
        for attempt in (1, 2):
            connection = self.connections.get(call.service)
            if connection is None:
                connection = http.client.HTTPConnection(
                    "127.0.0.1", self.ports[call.service], timeout=30
                )
                self.connections[call.service] = connection
            try:
                connection.request(call.method, call.path, body=body, headers=self.headers)
                response = connection.getresponse()
                response.read()
                return response.status
            except (http.client.HTTPException, OSError):
                connection.close()
                self.connections.pop(call.service, None)
                if attempt == 2:
                    return 0
        return 0


def drive(
    traffic: Traffic, ports: dict[str, int], token: str, rate: float, seconds: float, threads: int
) -> list[Result]:
    """Send `rate` requests per second for `seconds`, on schedule, from `threads` threads."""
    total = max(int(rate * seconds), 1)
    calls = [traffic.next() for _ in range(total)]
    work: queue.Queue[tuple[float, Call] | None] = queue.Queue()
    results: list[Result] = []
    lock = threading.Lock()

    def worker() -> None:
        client = Client(ports, token)
        mine: list[Result] = []
        while (item := work.get()) is not None:
            due, call = item
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            started = time.perf_counter()
            status = client.send(call)
            mine.append(
                Result(
                    call.service,
                    call.kind,
                    status,
                    (time.perf_counter() - started) * 1000,
                    (started - due) * 1000,
                )
            )
        with lock:
            results.extend(mine)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    start = time.perf_counter() + 0.2
    for index, call in enumerate(calls):
        due = start + index / rate
        # hand each request over shortly before it is due: the queue stays short
        ahead = due - 0.05 - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
        work.put((due, call))
    for _ in pool:
        work.put(None)
    for thread in pool:
        thread.join()
    return results


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def cpu_ticks() -> tuple[int, int]:
    """Busy and total jiffies of the machine (/proc/stat)."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pids: set[int] | None = None, group: int | None = None) -> dict[int, float]:
    """CPU seconds (user + system) of the given processes, or of a process group's."""
    out: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or (pids is not None and int(entry) not in pids):
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if group is not None and int(fields[2]) != group:
            continue
        out[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICK
    return out


class CpuMeter:
    """CPU used by the services, by PostgreSQL's backends of the bench database and by this
    process (the load generator) between `start` and `stop`."""

    def __init__(self, stack: Stack, admin: sa.Engine, database: str) -> None:
        self.stack, self.admin, self.database = stack, admin, database

    def _backends(self) -> set[int]:
        with self.admin.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :name"),
                {"name": self.database},
            )
            return {int(pid) for (pid,) in rows}

    def _sample(self) -> tuple[dict[int, float], dict[int, float], float]:
        services: dict[int, float] = {}
        for process in self.stack.processes:
            services.update(process_cpu(group=process.pid))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return services, process_cpu(self._backends()), usage.ru_utime + usage.ru_stime

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> dict[str, float]:
        after = self._sample()

        def used(old: dict[int, float], new: dict[int, float]) -> float:
            return sum(cpu - old.get(pid, 0.0) for pid, cpu in new.items())

        return {
            "services": used(self.before[0], after[0]),
            "postgresql": used(self.before[1], after[1]),
            "load_generator": after[2] - self.before[2],
        }


# ---------------------------------------------------------------- the stack


class Stack:
    """The services' gunicorn processes, as `make run` starts them."""

    def __init__(self, url: str, services: tuple[str, ...], var: Path, workers: int) -> None:
        self.url = url
        self.services = services
        self.var = var
        self.workers = workers
        self.processes: list[subprocess.Popen[bytes]] = []
        self.ports: dict[str, int] = {}

    def start(self, service_secret: str) -> dict[str, int]:
        gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
        ports = free_ports(len(SERVICES) + 1)
        self.ports = {service: ports[i] for i, service in enumerate(SERVICES)}
        broker = f"127.0.0.1:{ports[-1]}"  # nothing listens: writes stop at the outbox
        os.environ["WEB_CONCURRENCY"] = str(self.workers)
        for service in self.services:
            name = f"{service}_service"
            env = process_env(name, self.url, broker)
            env.update(
                SERVICE_TOKEN=service_secret,
                LOG_LEVEL=os.environ.get("LOG_LEVEL", "WARNING"),
                PROMETHEUS_MULTIPROC_DIR=str(self.var / "prometheus" / service),
                ANSWER_LINK_SECRET="bench-answer-link-secret-0123456789abcdef",
                THERAPIST_SERVICE_URL=f"http://127.0.0.1:{self.ports['therapist']}",
                PATIENT_SERVICE_URL=f"http://127.0.0.1:{self.ports['patient']}",
            )
            log = (self.var / f"{service}.log").open("wb")
            command = web_command(gunicorn, name, self.ports[service])
            self.processes.append(
                subprocess.Popen(
                    command, shell=True, env=env, cwd=ROOT, stdout=log, stderr=log,
                    start_new_session=True,
                )
            )  # fmt: skip
        for service in self.services:
            wait_for_port("127.0.0.1", self.ports[service], timeout=60)
        return self.ports

    def stop(self) -> None:
        for process in self.processes:
            try:
                os.killpg(process.pid, 15)
            except ProcessLookupError:
                continue
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()


def staff_token(url: str) -> str:
    """A new staff token stored in every service's schema (the admin connection)."""
    issued = issue_token("bench-api", Role.STAFF)
    with token_stores(url, [f"{s}_service" for s in SERVICES]) as stores:
        for _, store in stores:
            store.store(issued)
    return issued.token


def store_service_token(url: str, secret: str) -> None:
    with token_stores(url, [f"{s}_service" for s in SERVICES]) as stores:
        for _, store in stores:
            store.ensure(service_token(secret))


# ---------------------------------------------------------------- the run


def summarise(results: list[Result], rate: float, seconds: float) -> list[dict[str, Any]]:
    """One record per service and endpoint class, and one for all of them."""
    groups: dict[tuple[str, str], list[Result]] = defaultdict(list)
    for result in results:
        groups[(result.service, result.kind)].append(result)
        groups[("all", "all")].append(result)
    records = []
    for (service, kind), items in sorted(groups.items()):
        ms = [r.ms for r in items]
        records.append(
            {
                "rate": rate,
                "service": service,
                "class": kind,
                "requests": len(items),
                "per_s": round(len(items) / seconds, 1),
                "p50_ms": round(percentile(ms, 0.50), 1),
                "p95_ms": round(percentile(ms, 0.95), 1),
                "p99_ms": round(percentile(ms, 0.99), 1),
                "errors": sum(1 for r in items if r.status == 0 or r.status >= 500),
                "refused": sum(1 for r in items if 400 <= r.status < 500),
                "late_p95_ms": round(percentile([r.late_ms for r in items], 0.95), 1),
            }
        )
    return records


def verdict(record: dict[str, Any]) -> str:
    if record["class"] == "all":
        return ""
    target = TARGET_MS["read" if record["class"] in READ_CLASSES else "write"]
    ok = record["p95_ms"] < target and record["errors"] == 0 and record["refused"] == 0
    return f"< {target:.0f} ms {'ok' if ok else 'MISSED'}"


def print_table(records: list[dict[str, Any]], machine: dict[str, Any]) -> None:
    rate = records[0]["rate"]
    print(
        f"\n{rate:.0f} requests/s offered: {machine['sent_per_s']:.0f}/s sent, machine CPU "
        f"{machine['cpu_busy_pct']:.0f} % busy, load average {machine['load_1m']:.2f}, "
        f"client threads late p95 {machine['late_p95_ms']:.0f} ms"
    )
    services = machine["cpu_ms_per_request_services"]
    database = machine["cpu_ms_per_request_postgresql"]
    client = machine["cpu_ms_per_request_load_generator"]
    print(
        f"  CPU per request: services {services:.1f} ms, PostgreSQL {database:.1f} ms, load "
        f"generator {client:.1f} ms: {rate:.0f}/s need "
        f"{rate * (services + database + client) / 1000:.2f} of {os.cpu_count()} cores"
    )
    print(
        f"  {'service':<14}{'class':<8}{'requests':>9}{'/s':>7}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}{'errors':>8}{'4xx':>6}  target"
    )
    for r in records:
        print(
            f"  {r['service']:<14}{r['class']:<8}{r['requests']:>9}{r['per_s']:>7.1f}"
            f"{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['errors']:>8}"
            f"{r['refused']:>6}  {verdict(r)}"
        )


def run(admin_url: str, args: argparse.Namespace, var: Path) -> list[dict[str, Any]]:
    sizes = Sizes.scaled(args.scale)
    name = f"bench_api_{uuid.uuid4().hex[:8]}"
    records: list[dict[str, Any]] = []
    with ExitStack() as cleanup:
        url = cleanup.enter_context(fresh_database(admin_url, name=name))
        platform = load_platform(url, sizes=sizes, seed=args.seed, zipcodes=args.zipcodes)
        print(
            "loaded with COPY in {:.1f} s: {}".format(
                platform.seconds, ", ".join(f"{n} {t}" for t, n in platform.counts.items())
            ),
            flush=True,
        )
        secret = secrets.token_urlsafe(32)
        store_service_token(url, secret)
        token = staff_token(url)
        stack = Stack(url, args.services, var, args.workers)
        cleanup.callback(stack.stop)
        ports = stack.start(secret)
        print(
            f"services up: {', '.join(args.services)} ({args.workers} gunicorn workers x 8 "
            f"threads each); follow-up after {FOLLOW_UP_AFTER_DAYS} days",
            flush=True,
        )
        traffic = Traffic(platform, args.services, args.seed)
        admin = sa.create_engine(driver_url(admin_url))
        cleanup.callback(admin.dispose)
        meter = CpuMeter(stack, admin, name)
        if args.warmup > 0:
            drive(traffic, ports, token, min(args.rates), args.warmup, args.threads)
        for rate in args.rates:
            busy0, total0 = cpu_ticks()
            meter.start()
            started = time.perf_counter()
            results = drive(traffic, ports, token, rate, args.duration, args.threads)
            elapsed = time.perf_counter() - started
            spent = meter.stop()
            busy1, total1 = cpu_ticks()
            machine = {
                "sent_per_s": len(results) / elapsed,
                "cpu_busy_pct": 100.0 * (busy1 - busy0) / max(total1 - total0, 1),
                "load_1m": os.getloadavg()[0],
                "late_p95_ms": percentile([r.late_ms for r in results], 0.95),
                **{f"cpu_ms_per_request_{k}": 1000 * v / len(results) for k, v in spent.items()},
            }
            summary = summarise(results, rate, elapsed)
            for record in summary:
                record.update({f"machine_{k}": round(v, 2) for k, v in machine.items()})
            print_table(summary, machine)
            records.extend(summary)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="50,200,500", help="requests/s, comma-separated")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per rate")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds at the lowest rate")
    parser.add_argument("--services", default=",".join(SERVICES))
    parser.add_argument("--scale", type=float, default=1.0, help="times the default sizes")
    parser.add_argument("--threads", type=int, default=16, help="client threads")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", 2)))
    parser.add_argument("--seed", type=int, default=20260302)
    parser.add_argument("--zipcodes", type=Path, help="postal-code CSV (default ../shared/data)")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 2 %% of the data, 3 s at 20/s"
    )
    args = parser.parse_args()
    if args.quick:
        args.scale, args.rates, args.duration, args.warmup = 0.02, "20", 3.0, 0.0
    args.rates = [float(rate) for rate in str(args.rates).split(",") if rate.strip()]
    args.services = tuple(s.strip() for s in args.services.split(",") if s.strip())
    unknown = set(args.services) - set(SERVICES)
    if unknown:
        parser.error(f"unknown services: {', '.join(sorted(unknown))} (of {', '.join(SERVICES)})")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="bench-api-") as tmp,
        postgres_admin_url(Path(tmp) / "pg") as admin_url,
    ):
        records = run(admin_url, args, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
