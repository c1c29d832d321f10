"""Platform admin commands: `python -m shared.cli {migrate,tokens,outbox,reconcile} ...`.

Each service keeps its own copy of the tokens (its schema is its own), so `tokens create`
stores the hash of one new token in every service's `api_tokens` table. Token commands use
the admin connection (`MIGRATIONS_DATABASE_URL`, else `DATABASE_URL`): a service's own role
may only read its tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy.exc import OperationalError, ProgrammingError

from shared.audit import acting_as
from shared.auth import (
    BOOTSTRAP_ADMIN_NAME,
    SERVICE_TOKEN_NAME,
    Role,
    TokenStore,
    bootstrap_admin_token,
    issue_token,
    service_token,
)
from shared.db import Database, InvalidDatabaseURL, schema_metadata, utcnow
from shared.infrastructure import define_infrastructure
from shared.kafka import RobustProducer, kafka_client_options
from shared.migrations import migration_url, upgrade_all
from shared.outbox import pending_summary, retry_stuck
from shared.reconcile import reconcile
from shared.retention import (
    RetentionExceeded,
    prune_published,
    replay_published,
    retention_start,
)
from shared.settings import (
    SERVICES,
    AdminSettings,
    ServiceSettings,
    load_settings,
    own_database_url,
)
from shared.topics import TOPIC_OWNERS


def service_url(service: str) -> str:
    """`<SERVICE>_DATABASE_URL`, else `DATABASE_URL`; exits clearly when neither is set."""
    url = own_database_url(service)
    if not url:
        raise SystemExit(f"set {service.upper()}_DATABASE_URL or DATABASE_URL")
    return url


@contextmanager
def token_stores(url: str, services: Sequence[str]) -> Iterator[list[tuple[str, TokenStore]]]:
    """The token table of every service, on the admin connection `url`."""
    databases = [Database(url, pool_size=1, name=f"{service}-cli") for service in services]
    try:
        yield [
            (service, TokenStore(database, define_infrastructure(schema_metadata(service))))
            for service, database in zip(services, databases, strict=True)
        ]
    finally:
        for database in databases:
            database.dispose()


def ensure_bootstrap_admin(url: str, token: str, services: Sequence[str] = SERVICES) -> list[str]:
    """Store `token` hashed as the `bootstrap-admin` admin token where it is not yet known.

    Returns the schemas it was added to; a revoked bootstrap token stays revoked.
    """
    with token_stores(url, services) as stores:
        return [service for service, store in stores if store.ensure(bootstrap_admin_token(token))]


def ensure_service_token(url: str, token: str, services: Sequence[str] = SERVICES) -> list[str]:
    """Store `token` hashed as the read-only `service` token where it is not yet known."""
    with token_stores(url, services) as stores:
        return [service for service, store in stores if store.ensure(service_token(token))]


def revoke_tokens(url: str, name_or_prefix: str, services: Sequence[str] = SERVICES) -> int:
    """Revoke the tokens with this name or prefix in every schema; one audit line per name."""
    schemas_of: dict[str, list[str]] = {}
    with token_stores(url, services) as stores:
        for service, store in stores:
            for name in store.revoke(name_or_prefix):
                schemas_of.setdefault(name, []).append(service)
    for name, schemas in sorted(schemas_of.items()):
        print(f"token revoked: name={name} schemas={','.join(schemas)}", file=sys.stderr)
    return sum(len(schemas) for schemas in schemas_of.values())


ServiceCommand = Callable[[Sequence[str]], int]


def service_main(
    argv: Sequence[str] | None, *, service: str, commands: Mapping[str, ServiceCommand], doc: str
) -> int:
    """Entry point of a service's CLI: its own commands, else the platform commands limited
    to its schema (`doc`, the module's docstring, heads the help)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in commands:
        return commands[args[0]](args[1:])
    if not args or args[0] in ("-h", "--help"):
        print(doc.strip(), end="\n\n")
    return main(args, services=(service,))


def main(argv: Sequence[str] | None = None, services: Sequence[str] = SERVICES) -> int:
    """Entry point; returns the exit code."""
    try:
        with acting_as("cli"):  # audit entries of token commands name the admin command line
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
    commands.add_parser(
        "migrate",
        help="alembic upgrade head for the service schemas (and store BOOTSTRAP_ADMIN_TOKEN)",
    )
    tokens = commands.add_parser("tokens", help="create or revoke API tokens")
    token_commands = tokens.add_subparsers(dest="action", required=True)
    create = token_commands.add_parser("create", help="create a token (printed once)")
    create.add_argument("--name", required=True)
    create.add_argument("--role", choices=[role.value for role in Role], default=Role.STAFF.value)
    revoke = token_commands.add_parser("revoke", help="revoke tokens by name or prefix")
    revoke.add_argument("name_or_prefix")
    token_commands.add_parser(
        "ensure-bootstrap",
        help=f"store BOOTSTRAP_ADMIN_TOKEN hashed as the '{BOOTSTRAP_ADMIN_NAME}' admin token "
        f"(and SERVICE_TOKEN, when set, as the read-only '{SERVICE_TOKEN_NAME}' token)",
    )
    outbox = commands.add_parser(
        "outbox",
        help="unpublished and stuck outbox rows per service; prune or replay published rows",
    )
    outbox_action = outbox.add_mutually_exclusive_group()
    outbox_action.add_argument(
        "--retry-stuck", action="store_true", help="give stuck rows new attempts (cause fixed)"
    )
    outbox_action.add_argument(
        "--prune",
        action="store_true",
        help="delete rows published more than OUTBOX_RETENTION_DAYS (14) before --as-of, in "
        "small batches (daily, docker/crontab); unpublished rows are never deleted",
    )
    outbox_action.add_argument(
        "--replay",
        action="store_true",
        help="publish the rows published since --since again (original event ids, in order "
        "per aggregate) after a broker lost acknowledged records; consumers skip what they had",
    )
    outbox.add_argument(
        "--since", type=iso_datetime, help="--replay: rows published at or after this ISO date-time"
    )
    outbox.add_argument(
        "--until",
        type=iso_datetime,
        help="--replay: rows published at or before this ISO date-time (default: --as-of)",
    )
    outbox.add_argument(
        "--service", choices=services, help="only this service's outbox (default: all)"
    )
    outbox.add_argument(
        "--as-of", type=iso_datetime, default=None, help="ISO date-time to act as (default: now)"
    )
    outbox.add_argument(
        "--max-attempts",
        type=int,
        default=int(os.environ.get("RELAY_MAX_ATTEMPTS") or 10),
        help="attempts after which a row counts as stuck (default: RELAY_MAX_ATTEMPTS, 10)",
    )
    check = commands.add_parser(
        "reconcile",
        help="compare every projection with its source; exit 1 listing missing, stale and "
        "extra ids",
    )
    check.add_argument(
        "--service",
        choices=services,
        help="only the projections this service holds or feeds (default: all)",
    )
    check.add_argument("--json", action="store_true", help="the report as JSON")
    check.add_argument(
        "--as-of",
        type=iso_datetime,
        default=None,
        help="ISO date-time cooling dates count from (default: now)",
    )
    args = parser.parse_args(argv)

    if args.command == "reconcile":
        try:
            reconciled = reconcile(
                migration_url(),
                services=(args.service,) if args.service else services,
                as_of=args.as_of,
            )
        except ProgrammingError as exc:
            print(
                f"reconcile reads every service schema; use the admin login "
                f"(MIGRATIONS_DATABASE_URL): {exc.orig}",
                file=sys.stderr,
            )
            return 2
        if args.json:
            print(json.dumps(reconciled.to_dict(), indent=2))
        else:
            print("\n".join(reconciled.lines()))
        return 0 if reconciled.ok else 1
    if args.command == "migrate":
        admin = load_settings(AdminSettings)  # a bad token is refused before migrating
        url = migration_url()
        upgrade_all(url, services=services)
        print(f"migrations: {', '.join(services)} at head")
        _ensure_configured_tokens(url, admin, services)
        return 0
    if args.command == "outbox" and not args.replay and (args.since or args.until):
        parser.error("outbox --since and --until go with --replay")
    if args.command == "outbox" and (args.prune or args.replay):
        chosen = (args.service,) if args.service else services
        as_of = args.as_of or utcnow()
        if args.prune:
            print(json.dumps({"pruned": prune_outboxes(chosen, as_of)}, indent=2))
            return 0
        if args.since is None:
            parser.error("outbox --replay needs --since DATETIME")
        try:
            replayed = replay_outboxes(chosen, since=args.since, until=args.until, as_of=as_of)
        except (RetentionExceeded, ValueError) as exc:
            print(f"outbox --replay refused: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(replayed, indent=2))
        return 0 if not any(replayed["failed"].values()) else 1
    if args.command == "outbox":
        report = {}
        for service in (args.service,) if args.service else services:
            database = Database(service_url(service), pool_size=1, name=f"{service}-cli")
            infra = define_infrastructure(schema_metadata(service))
            if args.retry_stuck:
                retry_stuck(database, infra, args.max_attempts)
            report[service] = pending_summary(database, infra, args.max_attempts)
            database.dispose()
        print(json.dumps(report, indent=2, default=str))
        return 0
    if args.action == "ensure-bootstrap":
        admin = load_settings(AdminSettings)
        if admin.bootstrap_admin_token is None:
            print("set BOOTSTRAP_ADMIN_TOKEN (at least 32 characters)", file=sys.stderr)
            return 2
        _ensure_configured_tokens(migration_url(), admin, services)
        return 0
    if args.action == "create":
        issued = issue_token(args.name, Role(args.role))
        with token_stores(migration_url(), services) as stores:
            for _, store in stores:
                store.store(issued)
        print(issued.token)
        print(
            f"token '{issued.name}' ({issued.role}) stored hashed in: {', '.join(services)}",
            file=sys.stderr,
        )
        return 0
    revoked = revoke_tokens(migration_url(), args.name_or_prefix, services)
    print(f"revoked {revoked} token row(s)", file=sys.stderr)
    return 0 if revoked else 1


def _service_settings(service: str) -> ServiceSettings:
    """The service's settings (broker, topic prefix, retention) on its own database URL."""
    return load_settings(ServiceSettings, service_name=service, database_url=service_url(service))


def prune_outboxes(services: Sequence[str], as_of: datetime) -> dict[str, int]:
    """`outbox --prune`: rows deleted per service (those published before the retention)."""
    pruned = {}
    for service in services:
        settings = _service_settings(service)
        database = Database(settings.database_url, pool_size=1, name=f"{service}-prune")
        try:
            pruned[service] = prune_published(
                database,
                define_infrastructure(schema_metadata(service)),
                as_of=as_of,
                retention_days=settings.outbox_retention_days,
            )
        finally:
            database.dispose()
        print(f"outbox prune: {service}: {pruned[service]} row(s) deleted", file=sys.stderr)
    return pruned


def replay_outboxes(
    services: Sequence[str], *, since: datetime, until: datetime | None, as_of: datetime
) -> dict[str, dict[str, int]]:
    """`outbox --replay`: rows published again (and rows the broker refused) per service.

    Every service's --since is checked against the retention before anything is sent."""
    if until is not None and until < since:
        raise ValueError(f"--until {until.isoformat()} is before --since {since.isoformat()}")
    chosen = [(service, _service_settings(service)) for service in services]
    for _, settings in chosen:
        oldest = retention_start(as_of, settings.outbox_retention_days)
        if since < oldest:
            raise RetentionExceeded(
                f"--since {since.isoformat()} is older than the outbox retention "
                f"(OUTBOX_RETENTION_DAYS={settings.outbox_retention_days}: rows published "
                f"before {oldest.isoformat()} may be pruned already)"
            )
    report: dict[str, dict[str, int]] = {"replayed": {}, "failed": {}}
    for service, settings in chosen:
        owned = [settings.topic(topic) for topic, owner in TOPIC_OWNERS.items() if owner == service]
        producer = RobustProducer(
            settings.kafka_bootstrap_servers,
            client_id=f"{service}-replay",
            topics=owned,
            partitions=settings.kafka_partitions,
            client_options=kafka_client_options(settings),
        )
        database = Database(settings.database_url, pool_size=1, name=f"{service}-replay")
        try:
            if not producer.ready():
                raise SystemExit(f"cannot reach the broker at {settings.kafka_bootstrap_servers}")
            result = replay_published(
                database,
                define_infrastructure(schema_metadata(service)),
                producer,
                since=since,
                until=until,
                as_of=as_of,
                retention_days=settings.outbox_retention_days,
                topic_prefix=settings.kafka_topic_prefix,
            )
        finally:
            producer.close()
            database.dispose()
        report["replayed"][service] = result.replayed
        report["failed"][service] = result.failed
        print(
            f"outbox replay: {service}: {result.replayed} row(s) published again"
            + (f", {result.failed} refused by the broker" if result.failed else ""),
            file=sys.stderr,
        )
    return report


def iso_datetime(value: str) -> datetime:
    """`--as-of`, `--since`, `--until` of every batch command: an ISO date or date-time; without
    a zone it is UTC. A bad value is a usage error (exit 2) that shows the expected form."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO date or date-time: {value!r} (e.g. 2026-11-30 or 2026-11-30T06:00Z)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _ensure_configured_tokens(url: str, admin: AdminSettings, services: Sequence[str]) -> None:
    """Store BOOTSTRAP_ADMIN_TOKEN and SERVICE_TOKEN (those set) hashed in every schema."""
    if admin.bootstrap_admin_token is not None:
        added = ensure_bootstrap_admin(
            url, admin.bootstrap_admin_token.get_secret_value(), services
        )
        _report_stored(BOOTSTRAP_ADMIN_NAME, added)
    if admin.service_token is not None:
        added = ensure_service_token(url, admin.service_token.get_secret_value(), services)
        _report_stored(SERVICE_TOKEN_NAME, added)


def _report_stored(name: str, added: list[str]) -> None:
    where = ", ".join(added) if added else "none (already known there, or revoked)"
    print(f"'{name}' token stored hashed in: {where}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
