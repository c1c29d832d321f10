"""The scheduler: crontab parsing, due times, one run per line at a time, each command with
its own service's database login and no other service's password."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.scheduler import (
    DEFAULT_CRONTAB,
    ROOT,
    CrontabError,
    Job,
    Scheduler,
    child_env,
    main,
    parse_crontab,
)

T0 = datetime(2026, 11, 30, 9, 0, 30, tzinfo=UTC)


def test_crontab_lines_become_jobs_and_the_rest_is_skipped() -> None:
    jobs = parse_crontab(
        textwrap.dedent(
            """\
            # comment
            MAILTO=""

            */5 * * * *  cd /srv/placement && python -m matching_service.cli follow-ups
            0 3 * * 1-5  python3 -m shared.cli outbox
            """
        )
    )
    assert [(job.line, job.schedule) for job in jobs] == [(4, "*/5 * * * *"), (5, "0 3 * * 1-5")]
    assert jobs[0].argv == ("python", "-m", "matching_service.cli", "follow-ups")
    assert jobs[0].service == "matching_service" and jobs[1].service is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("* * * * *", "five time fields and a command"),
        ("* * * * python -m x", "line 1: Bad day-of-week"),
        ("61 * * * * python -m shared.cli outbox", "line 1: Bad minute"),
        ("* * * * * rm -rf /", "python -m <module>"),
        ("* * * * * python evil.py", "python -m <module>"),
    ],
)
def test_a_bad_line_is_refused_with_its_number(line: str, message: str) -> None:
    with pytest.raises(CrontabError, match=message):
        parse_crontab(line)


def test_due_times_follow_the_schedule() -> None:
    every_minute = Job(1, "* * * * *", ("python", "-m", "x"))
    hourly = Job(2, "7 * * * *", ("python", "-m", "y"))
    assert every_minute.next_after(T0) == datetime(2026, 11, 30, 9, 1, tzinfo=UTC)
    assert hourly.next_after(T0) == datetime(2026, 11, 30, 9, 7, tzinfo=UTC)
    scheduler = Scheduler([every_minute, hourly])
    later = datetime(2026, 11, 30, 9, 5, tzinfo=UTC)
    assert [job.line for job in scheduler.due(T0, later)] == [1]
    assert [job.line for job in scheduler.due(T0, later.replace(minute=7))] == [1, 2]


def test_a_command_gets_its_own_service_login_and_no_other_password() -> None:
    job = Job(1, "* * * * *", ("python", "-m", "matching_service.cli", "follow-ups"))
    env = child_env(
        job,
        {
            "MATCHING_SERVICE_DATABASE_URL": "postgresql://matching_service@db/placement",
            "MATCHING_SERVICE_DB_PASSWORD": "m-secret",
            "PATIENT_SERVICE_DB_PASSWORD": "p-secret",
            "BOOTSTRAP_ADMIN_TOKEN": "admin",
            "DATABASE_URL": "postgresql://someone@db/placement",
            "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
        },
    )
    assert env["DATABASE_URL"] == "postgresql://matching_service@db/placement"
    assert env["PGPASSWORD"] == "m-secret"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert "PATIENT_SERVICE_DB_PASSWORD" not in env and "BOOTSTRAP_ADMIN_TOKEN" not in env
    assert not any(name.endswith("_DB_PASSWORD") for name in env)


def test_a_line_still_running_is_not_started_again(tmp_path: Path) -> None:
    marker = tmp_path / "runs"
    code = f"import time; open({str(marker)!r}, 'a').write('x'); time.sleep(1.5)"
    job = Job(1, "* * * * *", ("python", "-m", "timeit", "-n", "1", "-r", "1", code))
    scheduler = Scheduler([job], environ={"PATH": "/usr/bin:/bin"})
    assert scheduler.start(job) is True
    assert scheduler.start(job) is False  # the first run is still going
    assert scheduler.wait(timeout=30) == {1: 0}
    assert scheduler.start(job) is True  # done: the next turn starts it
    scheduler.wait(timeout=30)
    assert marker.read_text() == "xx"


def test_run_all_now_passes_as_of_and_reports_failures(tmp_path: Path) -> None:
    seen = tmp_path / "argv"
    crontab = tmp_path / "crontab"
    crontab.write_text(
        f"* * * * * python -m tests.unit.scheduler_probe {seen}\n"
        "* * * * * python -m tests.unit.scheduler_probe --fail\n"
    )
    assert main(["--crontab", str(crontab), "--run-all-now", "--as-of", "2026-12-01T06:00"]) == 1
    assert seen.read_text().split() == ["--as-of", "2026-12-01T06:00:00+00:00"]


def test_an_unreadable_crontab_is_refused(tmp_path: Path) -> None:
    assert main(["--crontab", str(tmp_path / "missing")]) == 2


def test_the_shipped_crontab_parses() -> None:
    jobs = parse_crontab(DEFAULT_CRONTAB.read_text())
    assert {job.argv[2] for job in jobs} >= {"communication_service.cli", "matching_service.cli"}
    assert all(job.argv[0] == "python" for job in jobs)


@pytest.mark.parametrize(
    "job", parse_crontab(DEFAULT_CRONTAB.read_text()), ids=lambda job: " ".join(job.argv[2:])
)
def test_every_shipped_command_exists_and_takes_as_of(job: Job) -> None:
    module, command = job.argv[2], job.argv[3]
    result = subprocess.run(
        [sys.executable, "-m", module, command, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "--as-of" in result.stdout


def test_a_bad_as_of_is_a_usage_error_naming_the_expected_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crontab = tmp_path / "crontab"
    crontab.write_text("0 6 * * * python -c pass\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["--crontab", str(crontab), "--run-all-now", "--as-of", "next tuesday"])
    assert exit_info.value.code == 2
    assert "not an ISO date or date-time: 'next tuesday'" in capsys.readouterr().err
