"""The platform's scheduled commands, run from one crontab file (`docker/crontab`).

The same file serves three ways of running the platform: `make run` and the compose stack's
`cron` container run `python -m shared.scheduler`, which reads it; on a plain host its lines
go into the crontab of a user whose environment holds the services' settings. Every command
is safe to run twice at once (the commands lock what they work on), so an overlap between
hosts does no harm; this scheduler still never starts a command while its previous run of the
same line is running.

Each command runs with the database login of its own service: for `python -m
<service>.cli ...` the child gets `DATABASE_URL` from `<SERVICE>_DATABASE_URL` and
`PGPASSWORD` from `<SERVICE>_DB_PASSWORD` when set, and no other service's password.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cronsim import CronSim, CronSimError

from shared.cli import iso_datetime
from shared.settings import SERVICES

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CRONTAB = ROOT / "docker" / "crontab"
_ENV_LINE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
log = logging.getLogger("scheduler")


class CrontabError(ValueError):
    """A crontab line that cannot be scheduled; the message names the line."""


@dataclass(frozen=True)
class Job:
    """One crontab line: when (five cron fields) and what (a `python -m` command)."""

    line: int
    schedule: str
    argv: tuple[str, ...]

    @property
    def service(self) -> str | None:
        """The service whose command this is (`python -m <service>.cli ...`), if any."""
        module = self.argv[2] if len(self.argv) > 2 and self.argv[1] == "-m" else ""
        service = module.split(".")[0]
        return service if service in SERVICES else None

    def next_after(self, moment: datetime) -> datetime:
        """The first time strictly after `moment` this job is due (UTC)."""
        return next(CronSim(self.schedule, moment.astimezone(UTC)))


def parse_crontab(text: str) -> list[Job]:
    """The jobs of a crontab: comments, blank lines and `NAME=value` lines are skipped; every
    command must be `python -m <module> ...` (run without a shell)."""
    jobs = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or _ENV_LINE.match(line):
            continue
        fields = line.split(None, 5)
        if len(fields) < 6:
            raise CrontabError(f"line {number}: expected five time fields and a command")
        schedule, command = " ".join(fields[:5]), fields[5]
        try:
            CronSim(schedule, datetime.now(UTC))
        except CronSimError as exc:
            raise CrontabError(f"line {number}: {exc}") from None
        argv = tuple(shlex.split(_strip_cd(command)))
        if len(argv) < 3 or argv[0] not in ("python", "python3") or argv[1] != "-m":
            raise CrontabError(f"line {number}: the command must be 'python -m <module> ...'")
        jobs.append(Job(number, schedule, argv))
    return jobs


def _strip_cd(command: str) -> str:
    """Plain-host lines start with `cd /path/to/project && `; the scheduler runs from ROOT."""
    return re.sub(r"^cd\s+\S+\s*&&\s*", "", command)


def child_env(job: Job, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of one command: ours without any service's password, plus its own
    service's database URL and password."""
    env = {name: value for name, value in environ.items() if not name.endswith("_DB_PASSWORD")}
    env.pop("BOOTSTRAP_ADMIN_TOKEN", None)
    env.setdefault("PYTHONPATH", str(ROOT))
    service = job.service
    if service is not None:
        prefix = service.upper()
        url = environ.get(f"{prefix}_DATABASE_URL")
        if url:
            env["DATABASE_URL"] = url
        password = environ.get(f"{prefix}_DB_PASSWORD")
        if password:
            env["PGPASSWORD"] = password
    return env


@dataclass
class Scheduler:
    """Runs due jobs as child processes, one run per job at a time."""

    jobs: Sequence[Job]
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    running: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, job: Job, as_of: datetime | None = None) -> bool:
        """Start `job` unless its previous run is still going; True if started."""
        previous = self.running.get(job.line)
        if previous is not None and previous.poll() is None:
            log.warning("line %s still running, skipped this turn: %s", job.line, _show(job))
            return False
        argv = [sys.executable, *job.argv[1:]]
        if as_of is not None:
            argv += ["--as-of", as_of.isoformat()]
        log.info("line %s started: %s", job.line, _show(job))
        self.running[job.line] = subprocess.Popen(argv, env=child_env(job, self.environ), cwd=ROOT)
        return True

    def due(self, since: datetime, until: datetime) -> Iterator[Job]:
        """The jobs due in (since, until]."""
        return (job for job in self.jobs if job.next_after(since) <= until)

    def wait(self, timeout: float | None = None) -> dict[int, int | None]:
        """Wait for the running children (up to `timeout` seconds); their exit codes by line."""
        deadline = None if timeout is None else time.monotonic() + timeout
        codes: dict[int, int | None] = {}
        for line, process in self.running.items():
            left = None if deadline is None else max(deadline - time.monotonic(), 0)
            try:
                codes[line] = process.wait(left)
            except subprocess.TimeoutExpired:
                codes[line] = None
        return codes

    def run_forever(self, stop: threading.Event) -> None:
        """Start each job when it is due, until `stop` is set."""
        last = datetime.now(UTC)
        while not stop.is_set():
            upcoming = min((job.next_after(last) for job in self.jobs), default=None)
            if upcoming is None:
                stop.wait()
                break
            if stop.wait(max((upcoming - datetime.now(UTC)).total_seconds(), 0)):
                break
            now = datetime.now(UTC)
            for job in self.due(last, now):
                self.start(job)
            last = now
        for process in self.running.values():
            if process.poll() is None:
                process.terminate()
        self.wait(timeout=30)


def _show(job: Job) -> str:
    return " ".join(job.argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the crontab until SIGTERM, or once (`--run-all-now`)."""
    parser = argparse.ArgumentParser(prog="python -m shared.scheduler", description=__doc__)
    parser.add_argument("--crontab", type=Path, default=DEFAULT_CRONTAB)
    parser.add_argument(
        "--run-all-now",
        action="store_true",
        help="start every job once, wait for them and exit with the worst exit code",
    )
    parser.add_argument(
        "--as-of", type=iso_datetime, help="with --run-all-now: pass --as-of to each"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(message)s")
    try:
        jobs = parse_crontab(args.crontab.read_text())
    except (OSError, CrontabError) as exc:
        print(f"{args.crontab}: {exc}", file=sys.stderr)
        return 2
    scheduler = Scheduler(jobs)
    if args.run_all_now:
        for job in jobs:
            scheduler.start(job, args.as_of)
        failed = [line for line, code in scheduler.wait().items() if code]
        for line in failed:
            print(f"line {line} failed", file=sys.stderr)
        return 1 if failed else 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("%d job(s) from %s", len(jobs), args.crontab)
    scheduler.run_forever(stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
