"""A local PgBouncer in transaction pooling mode in front of a PostgreSQL server, for the
tests (`TEST_PGBOUNCER=1`) and `make run` (`DEV_PGBOUNCER=1`): what production runs, so that
anything that breaks under transaction pooling (session advisory locks, session `SET`,
LISTEN, server-side prepared statements) fails here first.

It needs Debian's `pgbouncer` binary (`apt-get install pgbouncer`). Logins are trusted like
those of the server behind it; the user list names the superuser and the five service roles.
PgBouncer refuses to run as root: as root it runs as the owner of the server's socket
directory (the embedded server's own user), else as `postgres` or `nobody`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from shared.devstack import free_port, wait_for_port
from shared.settings import SERVICES

BINARY_PATHS = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


def pgbouncer_binary() -> str | None:
    """Path of the pgbouncer binary, if installed."""
    found = shutil.which("pgbouncer")
    return found or next((path for path in BINARY_PATHS if os.access(path, os.X_OK)), None)


def _target(url: sa.engine.URL) -> tuple[str, int]:
    """Host (or socket directory) and port of the server behind `url`."""
    host = url.host or str(url.query.get("host") or "/var/run/postgresql")
    return host, url.port or 5432


def _run_as(host: str) -> str | None:
    """The user to drop to when started as root (None: not root)."""
    if os.geteuid() != 0:
        return None
    if host.startswith("/"):
        owner = pwd.getpwuid(os.stat(host).st_uid).pw_name
        if owner != "root":
            return owner
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("PgBouncer does not run as root and no other user was found")


@dataclass
class PgBouncer:
    """PgBouncer on 127.0.0.1:`port` forwarding every database to the server of `server_url`."""

    server_url: str
    port: int = field(default_factory=free_port)
    pool_size: int = 20
    _process: subprocess.Popen[bytes] | None = None
    _dir: Path | None = None

    def start(self) -> PgBouncer:
        """Write the configuration and start PgBouncer; returns self once it listens."""
        binary = pgbouncer_binary()
        if binary is None:
            raise RuntimeError("pgbouncer is not installed (apt-get install pgbouncer)")
        url = sa.engine.make_url(self.server_url)
        host, port = _target(url)
        self._dir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self._dir.chmod(0o755)
        users = [url.username or "postgres", *SERVICES]
        (self._dir / "users.txt").write_text("".join(f'"{user}" ""\n' for user in users))
        (self._dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={host} port={port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self._dir / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 1000\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            "server_reset_query =\n"
            "log_connections = 0\n"
            "log_disconnections = 0\n"
            f"logfile = {self._dir / 'pgbouncer.log'}\n"
        )
        for name in ("users.txt", "pgbouncer.ini"):
            (self._dir / name).chmod(0o644)
        command = [binary, "-q", str(self._dir / "pgbouncer.ini")]
        user = _run_as(host)
        if user is not None:
            command[1:1] = ["-u", user]
            account = pwd.getpwnam(user)
            os.chown(self._dir, account.pw_uid, account.pw_gid)  # it writes its log there
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        try:
            wait_for_port("127.0.0.1", self.port, timeout=10)
        except TimeoutError:
            log = self._dir / "pgbouncer.log"
            detail = log.read_text()[-2000:] if log.exists() else "(no log)"
            self.stop()
            raise RuntimeError(f"PgBouncer did not start:\n{detail}") from None
        return self

    def url_for(self, url: str) -> str:
        """`url` (same login and database) through this PgBouncer."""
        parsed = sa.engine.make_url(url)
        return parsed.set(host="127.0.0.1", port=self.port, query={}).render_as_string(
            hide_password=False
        )

    def stop(self) -> None:
        """Stop PgBouncer and remove its configuration."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
