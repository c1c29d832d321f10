"""Database access: engines, schema-bound declarative bases and the unit of work.

Safe behind PgBouncer in transaction mode: nothing here keeps session state between
transactions (no session `SET`, no advisory session locks, no LISTEN, no server-side
prepared statements; psycopg2 does not prepare), and every table is schema-qualified.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg2.extras
from sqlalchemy import (
    DateTime,
    MetaData,
    Select,
    Table,
    cast,
    create_engine,
    func,
    insert,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, UTC-aware."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A `timestamptz` column that refuses naive datetimes and always returns UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given for a timestamptz column")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None


def schema_metadata(schema: str) -> MetaData:
    """Metadata whose tables all live in `schema`, with stable constraint names."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


# `type_annotation_map` of every service's declarative base: datetimes are timestamptz in UTC
TYPE_ANNOTATION_MAP: dict[Any, Any] = {datetime: UTCDateTime}


class InvalidDatabaseURL(ValueError):
    """A database URL that cannot be used; the message never quotes it (it may hold a password)."""


def parse_database_url(url: str) -> URL:
    """`url` parsed, or InvalidDatabaseURL saying what is wrong without repeating it."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is no number (it quotes it)
        raise InvalidDatabaseURL(
            "not a database URL (expected postgresql://user:password@host:port/database)"
        ) from None
    if parsed.host and "@" in parsed.host:
        # an unescaped '@' in the password: the driver would quote the rest as the host name
        raise InvalidDatabaseURL(
            "its host contains '@': URL-encode special characters of the password "
            "(@ as %40, : as %3A, / as %2F, % as %25, # as %23)"
        )
    return parsed


def masked_url(url: str) -> str:
    """`url` with the password replaced by `***`, for logs and banners."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(unparsable database URL)"


def driver_url(url: str) -> str:
    """`url` with the psycopg2 driver (SQLAlchemy 2.1 picks psycopg 3 for plain `postgresql://`)."""
    parsed = parse_database_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def json_dumps(value: Any) -> str:
    """JSON text of a column value (orjson: a bundle run writes thousands of documents)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def make_engine(url: str, *, pool_size: int = 5, application_name: str = "") -> Engine:
    """An engine for `url`; pre-ping survives PgBouncer and database restarts."""
    connect_args: dict[str, Any] = {}
    if application_name:
        connect_args["application_name"] = application_name
    # json/jsonb columns are read with orjson too (psycopg2 parses them, once per process is
    # enough; registering again replaces the same function)
    psycopg2.extras.register_default_json(globally=True, loads=orjson.loads)
    psycopg2.extras.register_default_jsonb(globally=True, loads=orjson.loads)
    return create_engine(
        driver_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        hide_parameters=True,  # SQL errors are logged; their parameters are personal data
        connect_args=connect_args,
        json_serializer=json_dumps,
    )


# Lists count their matches up to this many: enough for any page staff reach, and a count
# that stays cheap on a table of 100,000 rows (an index scan of at most this many entries).
COUNT_LIMIT = 10_000


def count_upto(
    session: Session, statement: Select[Any], limit: int = COUNT_LIMIT
) -> tuple[int, bool]:
    """How many rows `statement` (a select of a table with its conditions) finds, counted up
    to `limit`: `(count, exact)`; beyond the limit `(limit, False)`."""
    found: Select[Any] = (
        statement.with_only_columns(literal_column("1"), maintain_column_froms=True)
        .order_by(None)
        .limit(limit + 1)
    )
    count = int(session.execute(select(func.count()).select_from(found.subquery())).scalar_one())
    return min(count, limit), count <= limit


def ids_where(column: Any, condition: Any) -> Any:
    """The values of `column` where `condition` holds, as one array (for `x = ANY(...)`):
    computed once, then looked up in the index of x. An `IN (subquery)` lets the planner
    hash-join the whole other table instead (e.g. every inquiry, to keep those of the
    therapists of one postal-code prefix)."""
    values = select(func.array_agg(column)).where(condition).scalar_subquery()
    # the cast makes it `x = ANY ((SELECT array_agg ...))`: an array, not a row per value
    return cast(values, ARRAY(column.type))


def role_url(url: str, role: str, password: str | None = None) -> str:
    """The same server and database as `url`, logged in as `role` (password URL-encoded)."""
    parsed: URL = parse_database_url(url).set(username=role, password=password)
    return parsed.render_as_string(hide_password=False)


class UnitOfWork:
    """One business transaction: the rows it changes and the events it emits commit together."""

    def __init__(self, session_factory: Callable[[], Session], outbox: Any = None) -> None:
        self._session_factory = session_factory
        self._outbox = outbox
        self.session: Session
        self._events: list[Any] = []
        self._rows: list[tuple[Table, list[dict[str, Any]]]] = []

    def __enter__(self) -> UnitOfWork:
        self.session = self._session_factory()
        self._events = []
        self._rows = []
        return self

    def __exit__(self, *exc_info: object) -> None:
        # close() rolls back anything uncommitted and detaches loaded objects without
        # expiring them, so results stay readable after the unit of work ends.
        self.session.close()

    def emit(self, event: Any) -> None:
        """Queue a domain event; `commit` writes it to the outbox in the same transaction."""
        self._events.append(event)

    def insert_on_commit(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Queue rows for `table`; `commit` inserts them in the statement that writes the
        events (a round trip fewer than an INSERT of their own), or alone without events."""
        self._rows.append((table, rows))

    def commit(self) -> None:
        """Write queued rows and events to the outbox and commit everything at once."""
        rows, self._rows = self._rows, []
        if self._events:
            if self._outbox is None:
                raise RuntimeError("this unit of work has no outbox but events were emitted")
            self._outbox.write(self.session, self._events, rows)
            self._events = []
        else:
            for table, values in rows:
                self.session.execute(insert(table), values)
        self.session.commit()


class ReadingUnitOfWork(UnitOfWork):
    """A unit of work for reads: its statements run without a transaction around them (no
    BEGIN before, no ROLLBACK after: two round trips fewer per request).

    Under READ COMMITTED each statement of a transaction sees its own snapshot anyway, so a
    read sees nothing it would not see in a transaction. A write through it (e.g. an audit
    entry) commits on its own when it runs: it must be one statement, and no events are
    written (they would not commit together with anything)."""

    def __init__(self, database: Database) -> None:
        super().__init__(database._sessions)
        self._database = database
        self._scope = ExitStack()

    def __enter__(self) -> ReadingUnitOfWork:
        self._scope = ExitStack()
        connection = self._scope.enter_context(self._database.autocommit())
        self.session = self._scope.enter_context(Session(connection, expire_on_commit=False))
        self._events = []
        self._rows = []
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._scope.close()

    def emit(self, event: Any) -> None:
        """Refused: events commit with the change that caused them, which needs a transaction."""
        raise RuntimeError("a reading unit of work writes no events (use unit_of_work())")


class Database:
    """Engine and unit-of-work factory of one service."""

    def __init__(self, url: str, *, outbox: Any = None, pool_size: int = 5, name: str = "") -> None:
        self.engine = make_engine(url, pool_size=pool_size, application_name=name)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.outbox = outbox

    def unit_of_work(self) -> UnitOfWork:
        """A new unit of work; use it as a context manager."""
        return UnitOfWork(self._sessions, self.outbox)

    def reading(self) -> ReadingUnitOfWork:
        """A unit of work for a read (no transaction; see `ReadingUnitOfWork`)."""
        return ReadingUnitOfWork(self)

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection without a transaction, for one read statement: no BEGIN and no
        ROLLBACK around it (two round trips fewer than a session; e.g. the token check of
        every request)."""
        with self.engine.connect() as connection:
            # the driver's own switch, set and reset on the client: an isolation level set
            # through SQLAlchemy costs a SET round trip each way instead
            driver = connection.connection.dbapi_connection
            driver.autocommit = True  # type: ignore[union-attr]
            try:
                yield connection
            finally:
                driver.autocommit = False  # type: ignore[union-attr]

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A plain session for reads and infrastructure code (relay, idempotency guard)."""
        with self._sessions() as session:
            yield session

    def dispose(self) -> None:
        """Close all pooled connections."""
        self.engine.dispose()
