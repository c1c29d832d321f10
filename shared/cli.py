"""Platform admin commands: `python -m shared.cli {migrate,tokens,outbox} ...`.

Each service keeps its own copy of the tokens (its schema is its own), so `tokens create`
stores the hash of one new token in every service's `api_tokens` table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from sqlalchemy.exc import OperationalError

from shared.auth import Role, TokenStore, issue_token
from shared.db import Database, InvalidDatabaseURL, schema_metadata
from shared.infrastructure import define_infrastructure
from shared.migrations import upgrade_all
from shared.outbox import pending_summary, retry_stuck
from shared.settings import SERVICES, own_database_url


def service_url(service: str) -> str:
    """`<SERVICE>_DATABASE_URL`, else `DATABASE_URL`; exits clearly when neither is set."""
    url = own_database_url(service)
    if not url:
        raise SystemExit(f"set {service.upper()}_DATABASE_URL or DATABASE_URL")
    return url


def _stores(services: Sequence[str]) -> list[tuple[str, Database, TokenStore]]:
    result = []
    for service in services:
        database = Database(service_url(service), pool_size=1, name=f"{service}-cli")
        infra = define_infrastructure(schema_metadata(service))
        result.append((service, database, TokenStore(database, infra, None)))
    return result


def main(argv: Sequence[str] | None = None, services: Sequence[str] = SERVICES) -> int:
    """Entry point; returns the exit code."""
    try:
        return _run(argv, services)
    except InvalidDatabaseURL as exc:
        print(f"invalid database URL: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        # the driver's message names host, port, user and database, never the password
        print(f"cannot reach the database: {exc.orig}", file=sys.stderr)
        return 1


def _run(argv: Sequence[str] | None, services: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="alembic upgrade head for the service schemas")
    tokens = commands.add_parser("tokens", help="create or revoke API tokens")
    token_commands = tokens.add_subparsers(dest="action", required=True)
    create = token_commands.add_parser("create", help="create a token (printed once)")
    create.add_argument("--name", required=True)
    create.add_argument("--role", choices=[role.value for role in Role], default=Role.STAFF.value)
    revoke = token_commands.add_parser("revoke", help="revoke tokens by name or prefix")
    revoke.add_argument("name_or_prefix")
    outbox = commands.add_parser("outbox", help="unpublished and stuck outbox rows per service")
    outbox.add_argument(
        "--retry-stuck", action="store_true", help="give stuck rows new attempts (cause fixed)"
    )
    outbox.add_argument(
        "--max-attempts",
        type=int,
        default=int(os.environ.get("RELAY_MAX_ATTEMPTS") or 10),
        help="attempts after which a row counts as stuck (default: RELAY_MAX_ATTEMPTS, 10)",
    )
    args = parser.parse_args(argv)

    if args.command == "migrate":
        upgrade_all(services=services)
        print(f"migrations: {', '.join(services)} at head")
        return 0
    if args.command == "outbox":
        report = {}
        for service in services:
            database = Database(service_url(service), pool_size=1, name=f"{service}-cli")
            infra = define_infrastructure(schema_metadata(service))
            if args.retry_stuck:
                retry_stuck(database, infra, args.max_attempts)
            report[service] = pending_summary(database, infra, args.max_attempts)
            database.dispose()
        print(json.dumps(report, indent=2, default=str))
        return 0
    if args.action == "create":
        issued = issue_token(args.name, Role(args.role))
        for _, database, store in _stores(services):
            store.store(issued)
            database.dispose()
        print(issued.token)
        print(
            f"token '{issued.name}' ({issued.role}) stored hashed in: {', '.join(services)}",
            file=sys.stderr,
        )
        return 0
    revoked = 0
    for _, database, store in _stores(services):
        revoked += store.revoke(args.name_or_prefix)
        database.dispose()
    print(f"revoked {revoked} token row(s)", file=sys.stderr)
    return 0 if revoked else 1


if __name__ == "__main__":
    raise SystemExit(main())
