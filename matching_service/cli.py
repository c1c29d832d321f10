"""Admin and cron commands of matching_service.

- `follow-ups [--as-of DATETIME]`: the daily follow-up job: flag sent inquiries unanswered
  for FOLLOW_UP_AFTER_DAYS (inquiry.follow_up_due, once each) and close those unanswered for
  INQUIRY_CLOSE_AFTER_DAYS (no_response, cooling starts); running it again changes nothing.
- everything else: the platform commands (tokens, outbox, migrate) for this schema.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable, Sequence

from sqlalchemy.exc import OperationalError

from matching_service.models import INFRA
from matching_service.service.followups import run_follow_ups
from matching_service.settings import MatchingSettings
from shared.cli import iso_datetime, service_main
from shared.db import InvalidDatabaseURL
from shared.runtime import ServiceRuntime
from shared.settings import load_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    return service_main(argv, service="matching_service", commands=COMMANDS, doc=__doc__ or "")


def follow_ups_command(argv: Sequence[str]) -> int:
    """`follow-ups [--as-of DATETIME]`."""
    parser = argparse.ArgumentParser(
        prog="python -m matching_service.cli follow-ups",
        description="Flag sent inquiries due a follow-up call and close those left unanswered "
        "too long (cooling starts). Connects like the service (MATCHING_SERVICE_DATABASE_URL "
        "or DATABASE_URL).",
    )
    parser.add_argument(
        "--as-of",
        type=iso_datetime,
        help="run as if it were then (ISO, UTC unless given; default: now)",
    )
    args = parser.parse_args(argv)
    settings = load_settings(MatchingSettings)
    runtime = ServiceRuntime.build(settings, INFRA)
    try:
        run = run_follow_ups(
            runtime.database.unit_of_work(),
            follow_up_after_days=settings.follow_up_after_days,
            close_after_days=settings.inquiry_close_after_days,
            cooling_period_days=settings.cooling_period_days,
            as_of=args.as_of,
            correlation_id=f"follow-ups-{uuid.uuid4().hex[:16]}",
        )
    except InvalidDatabaseURL as exc:
        print(f"invalid database URL: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(f"cannot reach the database: {exc.orig}", file=sys.stderr)
        return 1
    finally:
        runtime.database.dispose()
    print(run.summary())
    return 0


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"follow-ups": follow_ups_command}


if __name__ == "__main__":
    raise SystemExit(main())
