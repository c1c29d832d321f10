"""The event pipeline under hostile messages and an unavailable database.

One bad message must never stop a consumer: whatever its bytes, it is dead-lettered (with
its reason, never its values) and the real events around it are handled.
"""

from __future__ import annotations

import logging
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer, KafkaProducer

from matching_service.handlers import HANDLERS, SUBSCRIPTIONS
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.schemas import SEARCH_STARTED
from matching_service.settings import MatchingSettings
from patient_service.app import create_app as create_patient_app
from patient_service.handlers import SUBSCRIPTIONS as PATIENT_SUBSCRIPTIONS
from patient_service.handlers import handlers as patient_handlers
from patient_service.models import INFRA as PATIENT_INFRA
from patient_service.schemas import PATIENT_TOPIC, SEARCH_TOPIC
from patient_service.settings import PatientSettings
from shared.consumer import ConsumerRunner
from shared.db import UnitOfWork
from shared.devstack import TansuBroker
from shared.events import Envelope
from shared.kafka import RobustProducer
from shared.outbox import OutboxRelay
from shared.runtime import ServiceRuntime
from tests.helpers import background, dead_letters, patient_body, read_topic, wait_until
from tests.integration.test_event_flow import _patient_event, _projected

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]

MARKER = "SENSITIVE-Mustermann-0815"  # a payload value that must never reach logs or headers
EVENT_LIMIT = 300_000  # EVENT_MAX_BYTES for these consumers


def _produce(bootstrap: str, topic: str, values: list[bytes | None]) -> None:
    """All on one key, so they share a partition and keep their order."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2_000_000)
    for value in values:
        producer.send(topic, key=b"one-partition", value=value)
    producer.flush()
    producer.close()


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def _poison(template: Envelope) -> list[bytes | None]:
    """One message of each bad kind, built around a real event of the topic."""

    def variant(**changes: Any) -> bytes:
        return template.model_copy(update={"event_id": uuid.uuid4(), **changes}).to_bytes()

    return [
        b"[" * 100_000 + b"]" * 100_000,  # 200 KB nested 100,000 deep: RecursionError once
        b'{"x": "' + b"a" * (EVENT_LIMIT + 10) + b'"}',  # larger than EVENT_MAX_BYTES
        b"\xff\xfe\xfd not utf-8",
        b"\x00not json",
        None,  # a tombstone
        b"[1, 2, 3]",
        variant(producer="geocoding_service"),  # not the owner of the topic
        variant(payload={"deep": _nested(40)}),
        variant(payload={"patient_id": MARKER, "search_id": MARKER}),  # invalid, quotes a value
        variant(aggregate_id="recursion"),  # its handler raises RecursionError
    ]


@dataclass
class Case:
    """A consumer under test: its settings, subscriptions, real handlers and real events."""

    runtime: ServiceRuntime
    subscriptions: tuple[str, ...]
    handlers: dict[str, Callable[[UnitOfWork, Envelope], None]]
    topic: str
    real: list[Envelope]
    extra_poison: list[bytes]


def _matching_case(make_settings: Any, **_: Any) -> Case:
    settings = make_settings(MatchingSettings, consumer_max_attempts=2, event_max_bytes=EVENT_LIMIT)
    base = 2_000_000 + uuid.uuid4().int % 1_000_000
    real = [_patient_event(base + n, 1) for n in range(3)]
    implausible = _patient_event(base + 10, 2_147_483_647)  # would freeze the record forever
    return Case(
        ServiceRuntime.build(settings, MATCHING_INFRA),
        SUBSCRIPTIONS,
        dict(HANDLERS),
        PATIENT_TOPIC,
        real,
        [implausible.to_bytes()],
    )


def _patient_case(make_settings: Any, admin_headers: dict[str, str]) -> Case:
    settings = make_settings(PatientSettings, consumer_max_attempts=2, event_max_bytes=EVENT_LIMIT)
    client = create_patient_app(settings).test_client()
    real = []
    for n in range(3):
        patient = client.post("/api/patients", json=patient_body(), headers=admin_headers).json
        payload = {
            "search_id": 900 + n,
            "patient_id": patient["id"],
            "status": "active",
            "waiting_since": "2026-11-23T10:00:00Z",
            "contact_budget": 25,
        }
        real.append(
            SEARCH_STARTED.build(producer="matching_service", aggregate_id=900 + n, payload=payload)
        )
    return Case(
        ServiceRuntime.build(settings, PATIENT_INFRA),
        PATIENT_SUBSCRIPTIONS,
        dict(patient_handlers(settings)),
        SEARCH_TOPIC,
        real,
        [],
    )


@pytest.fixture
def runner(make_settings: Any) -> ConsumerRunner:
    """Matching's consumer runner, built but not started: its checks are called directly."""
    return ServiceRuntime.build(make_settings(MatchingSettings), MATCHING_INFRA).consumer(
        SUBSCRIPTIONS, HANDLERS
    )


@pytest.fixture
def consumer(kafka_bootstrap: str, topic_prefix: str) -> Iterator[KafkaConsumer]:
    """A consumer in a group of its own that the test assigns partitions (or not)."""
    probe = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=f"{topic_prefix}probe",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    yield probe
    probe.close(autocommit=False)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.mark.parametrize("build_case", [_matching_case, _patient_case], ids=["matching", "patient"])
def test_poison_messages_of_every_kind_are_dead_lettered_and_real_events_around_them_flow(
    build_case: Callable[..., Case],
    make_settings: Any,
    admin_headers: dict[str, str],
    kafka_bootstrap: str,
    topic_prefix: str,
) -> None:
    case = build_case(make_settings, admin_headers=admin_headers)
    handled: list[str] = []

    def wrap(real_handler: Callable[[UnitOfWork, Envelope], None]) -> Any:
        def handler(uow: UnitOfWork, envelope: Envelope) -> None:
            if envelope.aggregate_id == "recursion":
                raise RecursionError("maximum recursion depth exceeded")
            real_handler(uow, envelope)
            handled.append(str(envelope.event_id))

        return handler

    consumer = case.runtime.consumer(
        case.subscriptions, {name: wrap(h) for name, h in case.handlers.items()}
    )
    poison = _poison(case.real[0]) + case.extra_poison
    values: list[bytes | None] = [case.real[0].to_bytes(), *poison[:5], case.real[1].to_bytes()]
    values += [*poison[5:], case.real[2].to_bytes()]
    _produce(kafka_bootstrap, f"{topic_prefix}{case.topic}", values)
    logs = _Collect()
    logging.getLogger("shared.consumer").addHandler(logs)
    try:
        with background(consumer.run):
            wait_until(lambda: len(handled) >= len(case.real), timeout=60)
            dead = dead_letters(read_topic(kafka_bootstrap, consumer._dlq, len(poison), timeout=60))
    finally:
        logging.getLogger("shared.consumer").removeHandler(logs)
    # a handler may run twice for one event (a batch rolled back, then replayed): count ids
    assert set(handled) == {str(event.event_id) for event in case.real}
    assert len(dead) == len(poison)  # each bad one, once
    assert consumer.reconnects == 0  # the loop never crashed
    reasons = [record["dlq.reason"] for record in dead]
    assert "nested" in reasons[0] or "recursion limit" in reasons[0]
    assert "exceeds the limit" in reasons[1] and dead[1]["dlq.value.dropped"] == "true"
    assert "null message" in reasons[4]
    assert "may not publish" in reasons[6]
    assert "nested 17 deep" in reasons[7]
    assert reasons[9] == "RecursionError" and dead[9]["dlq.attempts"] == "2"
    if case.extra_poison:
        assert "implausibly far ahead" in reasons[10]
    for record in dead:  # ids, position and reason: never a payload value
        assert record["dlq.original.topic"] == f"{topic_prefix}{case.topic}"
        assert not any(MARKER in value for name, value in record.items() if name != "value")
    assert logs.lines and not any(MARKER in line for line in logs.lines)


def test_database_read_only_for_a_while_is_retried_not_dead_lettered(
    make_settings: Any, kafka_bootstrap: str, topic_prefix: str, admin_engine: sa.Engine
) -> None:
    """A failover leaves the database read-only: events wait, none is dead-lettered."""
    consumer = ServiceRuntime.build(make_settings(MatchingSettings), MATCHING_INFRA).consumer(
        SUBSCRIPTIONS, HANDLERS
    )
    patient_id = 3_000_000 + uuid.uuid4().int % 1_000_000

    def read_only(on: bool) -> None:
        with admin_engine.begin() as connection:
            database = connection.execute(sa.text("SELECT current_database()")).scalar_one()
            setting = "SET default_transaction_read_only = on" if on else "RESET ALL"
            connection.execute(
                sa.text(f'ALTER ROLE matching_service IN DATABASE "{database}" {setting}')
            )
            connection.execute(  # live sessions keep their settings: end them
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE usename = 'matching_service' AND datname = current_database()"
                )
            )

    read_only(True)
    try:
        _produce(
            kafka_bootstrap,
            f"{topic_prefix}{PATIENT_TOPIC}",
            [_patient_event(patient_id, 1).to_bytes()],
        )
        with background(consumer.run):
            time.sleep(6.0)  # several attempts against the read-only database
            assert not _projected(admin_engine, patient_id)
            read_only(False)
            wait_until(lambda: _projected(admin_engine, patient_id), timeout=60)
    finally:
        read_only(False)
    assert read_topic(kafka_bootstrap, consumer._dlq, 0, timeout=3) == []
    assert consumer.reconnects == 0  # paused and rewound, never rebuilt


def test_batch_that_fails_at_commit_blames_no_single_message(
    make_settings: Any, admin_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one attempt per message, a batch whose commit fails must still handle them all."""
    settings = make_settings(MatchingSettings, consumer_max_attempts=1)
    consumer = ServiceRuntime.build(settings, MATCHING_INFRA).consumer(SUBSCRIPTIONS, HANDLERS)
    base = 4_000_000 + uuid.uuid4().int % 1_000_000
    events = [_patient_event(base + n, 1) for n in range(3)]
    subscribed = consumer._topics[0]

    @dataclass
    class Message:
        offset: int
        value: bytes
        topic: str = subscribed
        partition: int = 0
        key: bytes = b"k"
        headers: tuple[()] = ()

    commit = UnitOfWork.commit
    failures = {"left": 1}

    def failing_once(self: UnitOfWork) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("commit refused (a deferred check, say)")
        commit(self)

    monkeypatch.setattr(UnitOfWork, "commit", failing_once)
    consumer.handle_batch([Message(n, event.to_bytes()) for n, event in enumerate(events)])
    assert failures["left"] == 0
    assert all(_projected(admin_engine, base + n) for n in range(3))  # none dead-lettered


def test_relay_parks_nothing_while_the_broker_does_not_answer(
    make_settings: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    """Timeouts are the broker's state, not the record's fault: attempts are not counted."""
    broker = TansuBroker()
    bootstrap = broker.start()
    settings = make_settings(PatientSettings, kafka_bootstrap_servers=bootstrap)
    client = create_patient_app(settings).test_client()
    runtime = ServiceRuntime.build(settings, PATIENT_INFRA)
    producer = RobustProducer(
        bootstrap, topics=[settings.topic(PATIENT_TOPIC)], timeout_s=1.0, client_id="relay"
    )
    relay = OutboxRelay(
        runtime.database,
        PATIENT_INFRA,
        producer,
        topic_prefix=settings.kafka_topic_prefix,
        max_attempts=1,  # one counted failure would park the row
    )
    try:
        assert producer.ready()
        created = client.post("/api/patients", json=patient_body(), headers=admin_headers)
        assert broker._process is not None
        broker._process.send_signal(signal.SIGSTOP)  # alive but silent, mid-publish
        try:
            result = relay.publish_pending()
        finally:
            broker._process.send_signal(signal.SIGCONT)
        assert result.failed == 1
        with admin_engine.connect() as connection:
            attempts, error = connection.execute(
                sa.text(
                    "SELECT attempts, last_error FROM patient_service.outbox "
                    "WHERE aggregate_id = :id"
                ),
                {"id": str(created.json["id"])},
            ).one()
        assert attempts == 0 and error  # the error is kept for operators, nothing parked
        wait_until(lambda: relay.publish_pending().published == 1, timeout=60)
    finally:
        producer.close()
        broker.stop()


def test_value_just_under_the_limit_is_dead_lettered_without_its_copy_when_that_is_too_large(
    make_settings: Any, kafka_bootstrap: str, topic_prefix: str, admin_engine: sa.Engine
) -> None:
    """The dead-letter copy adds headers; when that tips it over a size limit, the context
    alone is published rather than the partition stopping at this message."""
    settings = make_settings(MatchingSettings)  # EVENT_MAX_BYTES 1 MB, producer limit 1 MB
    consumer = ServiceRuntime.build(settings, MATCHING_INFRA).consumer(SUBSCRIPTIONS, HANDLERS)
    patient_id = 5_000_000 + uuid.uuid4().int % 1_000_000
    almost = b"\x00" + b"x" * (settings.event_max_bytes - 200)  # not JSON, under the limit
    topic = f"{topic_prefix}{PATIENT_TOPIC}"
    _produce(kafka_bootstrap, topic, [almost, _patient_event(patient_id, 1).to_bytes()])
    with background(consumer.run):
        wait_until(lambda: _projected(admin_engine, patient_id), timeout=60)
        [dead] = dead_letters(read_topic(kafka_bootstrap, consumer._dlq, 1, timeout=30))
    assert dead["dlq.value.dropped"] == "true" and dead["value"] in (b"", None)
    assert dead["dlq.value.bytes"] == str(len(almost))
    assert "not a valid event envelope" in dead["dlq.reason"]


def test_a_database_blip_after_a_dead_letter_does_not_dead_letter_it_again(
    make_settings: Any, kafka_bootstrap: str, topic_prefix: str, admin_engine: sa.Engine
) -> None:
    """Messages finished before the interruption are committed, not redone."""
    settings = make_settings(MatchingSettings, consumer_max_attempts=1)
    failures = {"left": 2}

    def flaky(uow: UnitOfWork, envelope: Envelope) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        HANDLERS[envelope.event_type](uow, envelope)

    consumer = ServiceRuntime.build(settings, MATCHING_INFRA).consumer(
        SUBSCRIPTIONS, {name: flaky for name in HANDLERS}
    )
    patient_id = 6_000_000 + uuid.uuid4().int % 1_000_000
    _produce(
        kafka_bootstrap,
        f"{topic_prefix}{PATIENT_TOPIC}",
        [b"\x00not json", _patient_event(patient_id, 1).to_bytes()],
    )
    with background(consumer.run):
        wait_until(lambda: _projected(admin_engine, patient_id), timeout=60)
    dead = read_topic(kafka_bootstrap, consumer._dlq, 1, timeout=5)
    assert len(dead) == 1  # dead-lettered once, although its partition was interrupted twice
    assert failures["left"] == 0 and consumer.reconnects == 0


def test_an_interruption_keeps_a_rewound_partition_s_reset_to_the_beginning(
    runner: ConsumerRunner, consumer: KafkaConsumer, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """A partition re-read from the beginning (its broker lost the log) must not be sought
    back to its old position when the same poll is interrupted by the database."""
    from kafka import TopicPartition

    from shared.kafka import ensure_topics

    topic = f"{topic_prefix}{PATIENT_TOPIC}"
    ensure_topics(kafka_bootstrap, [topic], partitions=2)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")

    def send_three_each() -> None:
        for partition in (0, 1):
            for n in range(3):
                producer.send(topic, value=f"{partition}-{n}".encode(), partition=partition)
        producer.flush()

    first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)
    try:
        consumer.assign([first, second])

        def poll_six() -> dict[Any, list[Any]]:
            batch: dict[Any, list[Any]] = {}
            deadline = time.monotonic() + 30
            while sum(map(len, batch.values())) < 6 and time.monotonic() < deadline:
                for partition, messages in consumer.poll(timeout_ms=500).items():
                    batch.setdefault(partition, []).extend(messages)
            return batch

        send_three_each()
        poll_six()  # read: the next batch starts at offset 3 of each partition
        send_three_each()
        batch = poll_six()
        assert batch[first][0].offset == 3
        runner._rewind(consumer, [first], "test: the broker lost its log")
        runner._resume_later(consumer, batch, {}, second, done=1)
        assert consumer.position(first) == 0  # still re-read from the beginning
        assert consumer.position(second) == batch[second][1].offset  # the unfinished one
        assert consumer.committed(second) == batch[second][0].offset + 1  # the finished one
    finally:
        producer.close()


def test_a_position_past_the_end_of_its_partition_is_rewound_after_a_grace(
    runner: ConsumerRunner, consumer: KafkaConsumer, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """A broker that answers a fetch past the end of the log with "nothing yet" (Tansu does,
    Kafka says OffsetOutOfRange) would hold a consumer whose log it lost at its old position
    until the new log grows past it, and skip everything below. Past the end for the grace
    period, the partition is re-read from the beginning; at its end, it is left alone."""
    from kafka import TopicPartition

    from shared.kafka import ensure_topics

    topic = f"{topic_prefix}{PATIENT_TOPIC}"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    _produce(kafka_bootstrap, topic, [b"0", b"1", b"2"])
    runner.past_end_grace_s = 1.0
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])

    def offsets_read(count: int) -> list[int]:
        read: list[int] = []
        deadline = time.monotonic() + 30
        while len(read) < count and time.monotonic() < deadline:
            read.extend(m.offset for ms in consumer.poll(200).values() for m in ms)
        return read

    assert offsets_read(3) == [0, 1, 2]
    for _ in range(4):  # at the end: nothing to re-read
        consumer.poll(timeout_ms=300)
        runner._check_positions(consumer)
    assert runner.rewinds == 0 and consumer.position(partition) == 3

    consumer.seek(partition, 100)  # the position an older, longer log had
    started = time.monotonic()

    def rewound() -> bool:
        assert consumer.poll(timeout_ms=200) == {}  # the broker just answers "nothing yet"
        runner._check_positions(consumer)
        return runner.rewinds == 1

    wait_until(rewound, timeout=30)
    assert time.monotonic() - started >= 1.0  # not before the grace
    assert offsets_read(3) == [0, 1, 2]  # re-read from the beginning


def test_a_partition_that_stays_unfetchable_makes_the_loop_rebuild_its_consumer(
    runner: ConsumerRunner, consumer: KafkaConsumer, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """A rejoin or offset reset that never completes leaves partitions unfetchable while the
    poll loop keeps coming round (seen after a broker replacement: every partition pending
    revocation for minutes). After the grace the check raises `ConsumerStuck`, on which the
    loop closes the consumer (leaving the group) and builds a new one. Here a paused
    partition stands for the stuck one; the fetchable one alone never trips it."""
    from kafka import TopicPartition

    from shared.consumer import ConsumerStuck
    from shared.kafka import ensure_topics

    topic = f"{topic_prefix}{PATIENT_TOPIC}"
    ensure_topics(kafka_bootstrap, [topic], partitions=2)
    runner.stuck_partition_s = 1.0
    first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)
    consumer.assign([first, second])
    started = time.monotonic()
    while time.monotonic() - started < 2.0:  # both fetchable: nothing happens
        consumer.poll(timeout_ms=200)
        runner._check_fetchable(consumer)

    consumer.pause(second)
    started = time.monotonic()
    with pytest.raises(ConsumerStuck, match=rf"{topic}\[1\] not fetchable"):
        while time.monotonic() - started < 30:
            consumer.poll(timeout_ms=200)
            runner._check_fetchable(consumer)
    assert time.monotonic() - started >= 1.0  # not before the grace


def test_a_consumer_creates_its_topics_with_the_configured_partitions_before_it_joins(
    make_settings: Any, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Joined before its topics exist, a member is assigned nothing of them until a metadata
    refresh and a rejoin (an end-to-end run waited 30 s for a patient's status that way),
    and Tansu creates a topic for the first client that asks, with 4 partitions whatever
    KAFKA_PARTITIONS says. The runner creates them first, with the configured count."""
    from kafka import KafkaConsumer

    settings = make_settings(MatchingSettings, kafka_partitions=2)
    runner = ServiceRuntime.build(settings, MATCHING_INFRA).consumer(SUBSCRIPTIONS, HANDLERS)
    topics = [settings.topic(name) for name in SUBSCRIPTIONS]
    consumer = runner._consumer()
    probe = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        assert {topic: probe.partitions_for_topic(topic) for topic in topics} == {
            topic: {0, 1} for topic in topics
        }
    finally:
        probe.close()
        consumer.close(autocommit=False)


def test_records_waiting_beyond_a_committed_offset_that_does_not_move_make_the_loop_rebuild(
    runner: ConsumerRunner, consumer: KafkaConsumer, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """A consumer whose fetches stopped, or that was assigned nothing of a topic (both seen
    after a broker replacement: nothing read for minutes while the loop came round), is
    caught by asking the broker for every partition of its topics: records waiting beyond
    the group's committed offset at two checks, that offset unmoved, raise `ConsumerStuck`.
    A committed offset that moves, nothing waiting, or a pause for the database never do."""
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    from shared.consumer import ConsumerStuck
    from shared.kafka import ensure_topics

    topic = f"{topic_prefix}{PATIENT_TOPIC}"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    runner.progress_interval_s = 0.3
    partition = TopicPartition(topic, 0)
    # a member of the group that is assigned nothing (no subscription, no assignment)

    def check() -> None:
        time.sleep(0.4)
        runner._check_progress(consumer)

    def commit(offset: int) -> None:
        consumer.commit({partition: OffsetAndMetadata(offset, "", -1)})

    # the runner reads the partitions from the consumer's metadata, which a subscribed
    # consumer keeps; this one fetches them once
    assert consumer.partitions_for_topic(topic) == {0}
    for _ in range(3):  # nothing waiting
        check()

    for value in (b"0", b"1", b"2"):
        # one batch each: Tansu's end offset is its last batch's base offset + 1
        _produce(kafka_bootstrap, topic, [value])
    check()  # first sight: 3 waiting beyond no commit
    commit(1)
    check()  # moved: not stuck
    runner._interrupted = True  # the loop paused for the database meanwhile
    check()  # starts afresh
    check()  # first sight again
    with pytest.raises(
        ConsumerStuck, match=rf"{topic}\[0\] \(committed 1 of 3, not assigned here\)"
    ):
        check()

    commit(3)  # caught up
    for _ in range(3):
        check()
