"""Admin and cron commands of communication_service.

- `send-emails [--as-of DATETIME] [--limit N]`: send the queued emails that are due (at most
  one inquiry email per practice per EMAIL_MIN_DAYS_BETWEEN days; the rest waits); exit 1
  when an email failed for good.
- `queue-weekly-updates [--as-of DATETIME]`: queue for every patient whose inquiries went out
  in the last 7 days how many went out (sent by the next `send-emails`; once per ISO week).
- everything else: the platform commands (tokens, outbox, migrate) for this schema.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from sqlalchemy.exc import OperationalError

from communication_service.contacts import directory_of
from communication_service.mailer import Mailer
from communication_service.models import INFRA
from communication_service.service import emails
from communication_service.service.sending import Sender, send_due_emails
from communication_service.settings import CommunicationSettings
from shared.cli import iso_datetime, service_main
from shared.db import InvalidDatabaseURL
from shared.runtime import ServiceRuntime
from shared.settings import load_settings


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    return service_main(argv, service="communication_service", commands=COMMANDS, doc=__doc__ or "")


def sender_of(settings: CommunicationSettings) -> Sender:
    """The SMTP server, contact directory and figures the settings name."""
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return Sender(
        mailer=Mailer(
            host=settings.smtp_host,
            port=settings.smtp_port,
            mail_from=settings.mail_from,
            starttls=settings.smtp_starttls,
            user=settings.smtp_user,
            password=password,
            timeout_seconds=settings.smtp_timeout_seconds,
        ),
        directory=directory_of(settings),
        platform_phone=settings.platform_phone,
        min_days_between=settings.email_min_days_between,
        max_attempts=settings.email_max_attempts,
        slot_minutes=settings.phone_slot_minutes,
        horizon_days=settings.phone_search_horizon_days,
    )


def send_emails_command(argv: Sequence[str]) -> int:
    """`send-emails [--as-of DATETIME] [--limit N]`."""
    parser = argparse.ArgumentParser(
        prog="python -m communication_service.cli send-emails",
        description="Send the queued emails that are due through SMTP (SMTP_HOST, SMTP_PORT, "
        "...). Overlapping runs never send one email twice.",
    )
    parser.add_argument(
        "--as-of", type=iso_datetime, help="the moment to send as (default: now, UTC)"
    )
    parser.add_argument("--limit", type=int, help="send at most this many emails")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    settings = load_settings(CommunicationSettings)
    runtime = ServiceRuntime.build(settings, INFRA)
    try:
        report = send_due_emails(
            runtime.database, sender_of(settings), as_of=args.as_of, limit=args.limit
        )
    except InvalidDatabaseURL as exc:
        print(f"invalid database URL: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(f"cannot reach the database: {exc.orig}", file=sys.stderr)
        return 1
    finally:
        runtime.database.dispose()
    outcomes = ("sent", "deferred", "retry", "failed", "replaced_by_call", "cancelled")
    print(", ".join(f"{report[name]} {name}" for name in outcomes))
    return 1 if report["failed"] else 0


def queue_weekly_updates_command(argv: Sequence[str]) -> int:
    """`queue-weekly-updates [--as-of DATETIME]`."""
    parser = argparse.ArgumentParser(
        prog="python -m communication_service.cli queue-weekly-updates",
        description="Queue the weekly update to patients: how many practices were asked for "
        "them in the 7 days up to --as-of (sent to patients with an email and consent).",
    )
    parser.add_argument(
        "--as-of", type=iso_datetime, help="the end of the week (default: now, UTC)"
    )
    args = parser.parse_args(argv)
    runtime = ServiceRuntime.build(load_settings(CommunicationSettings), INFRA)
    try:
        queued = emails.queue_weekly_updates(runtime.database.unit_of_work(), as_of=args.as_of)
    except OperationalError as exc:
        print(f"cannot reach the database: {exc.orig}", file=sys.stderr)
        return 1
    finally:
        runtime.database.dispose()
    print(f"{queued} weekly updates queued")
    return 0


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "send-emails": send_emails_command,
    "queue-weekly-updates": queue_weekly_updates_command,
}


if __name__ == "__main__":
    raise SystemExit(main())
