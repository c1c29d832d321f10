"""docs/events.md is the catalogue of the events in the code: every `EventType` of the
services' schemas, with its topic, version, producer, consumers and payload fields; the topic
table names each topic's owner (shared/topics.py) and its consumers (the services'
SUBSCRIPTIONS)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from shared.events import EventType
from shared.settings import SERVICES
from shared.topics import TOPIC_OWNERS

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = (ROOT / "docs" / "events.md").read_text()


def _event_types(value: Any) -> Iterator[EventType]:
    if isinstance(value, EventType):
        yield value
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _event_types(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _event_types(item)


def defined_events() -> dict[str, list[EventType]]:
    """service -> every EventType its schemas module defines (its own and its views)."""
    found: dict[str, list[EventType]] = {}
    for service in SERVICES:
        module = importlib.import_module(f"{service}.schemas")
        events = {id(e): e for value in vars(module).values() for e in _event_types(value)}
        found[service] = list(events.values())
    return found


def subscriptions() -> dict[str, tuple[str, ...]]:
    return {
        service: tuple(importlib.import_module(f"{service}.handlers").SUBSCRIPTIONS)
        for service in SERVICES
    }


SETTINGS_EXTRA: dict[str, Any] = {"service_token": "t" * 40}


def handled_events() -> dict[str, set[str]]:
    """service -> the event types its worker's handler table handles."""
    settings_of = {
        "patient_service": ("patient_service.settings", "PatientSettings", "handlers"),
        "geocoding_service": ("geocoding_service.settings", "GeocodingSettings", "handlers"),
        "communication_service": (
            "communication_service.settings",
            "CommunicationSettings",
            "handlers_for",
        ),
    }
    handled: dict[str, set[str]] = {}
    for service in SERVICES:
        module = importlib.import_module(f"{service}.handlers")
        table: Mapping[str, Any]
        if service in settings_of:
            settings_module, settings_class, factory = settings_of[service]
            cls = getattr(importlib.import_module(settings_module), settings_class)
            settings = cls(database_url="postgresql://x@localhost/x", **SETTINGS_EXTRA)
            table = getattr(module, factory)(settings)
        else:
            table = module.HANDLERS
        handled[service] = set(table)
    return handled


def table_rows(header: str) -> list[list[str]]:
    """The rows of the markdown table whose header line starts with `header`."""
    lines = CATALOGUE.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def names(cell: str) -> set[str]:
    """Service or event names written in backticks in a table cell."""
    return set(re.findall(r"`([a-z_.]+)`", cell))


def sections() -> dict[str, tuple[int, str]]:
    """event name -> (version, section text), from every `## a / b / c (vN)` heading; a bare
    name continues the aggregate of the name before it (`phone_call.scheduled / completed`).
    A heading `... as <service> reads them` describes a consumer's view, not the event."""
    found: dict[str, tuple[int, str]] = {}
    parts = re.split(r"^## ", CATALOGUE, flags=re.M)[1:]
    for part in parts:
        heading, _, body = part.partition("\n")
        match = re.match(r"(.+?) \(v(\d+)\)", heading)
        if not match or " as " in match.group(1):
            continue  # not an event section, or one consumer's view of events
        aggregate = ""
        for item in re.findall(r"[a-z_.]+", match.group(1)):
            if "." in item:
                aggregate = item.split(".")[0]
            else:
                item = f"{aggregate}.{item}"
            found.setdefault(item, (int(match.group(2)), body))
    return found


EVENTS = defined_events()
PRODUCED = {
    event.name: (service, event)
    for service, events in EVENTS.items()
    for event in events
    if TOPIC_OWNERS[event.topic] == service
}


def test_every_event_type_in_the_code_is_in_the_index_with_its_topic_and_version() -> None:
    index = {row[0].strip("`"): row for row in table_rows("| event | version | topic |")}
    every_name = {event.name for events in EVENTS.values() for event in events}
    assert set(index) == every_name
    handled = handled_events()
    for name, row in index.items():
        event_types = [
            event for events in EVENTS.values() for event in events if event.name == name
        ]
        topics = {event.topic for event in event_types}
        assert len(topics) == 1, (name, topics)
        (topic,) = topics
        assert row[1] == f"v{max(event.version for event in event_types)}", name
        assert row[2] == f"`{topic}`", name
        assert names(row[3]) == {TOPIC_OWNERS[topic]}, name
        consumers = {service for service, events in handled.items() if name in events}
        assert names(row[4]) == consumers, name


def test_every_produced_event_is_only_published_by_the_owner_of_its_topic() -> None:
    for events in EVENTS.values():
        for event in events:
            assert event.name in PRODUCED, f"{event.name}: a view without a producer"


def test_topic_table_names_owners_and_subscribers() -> None:
    rows = table_rows("| topic | owner | consumed by |")
    topics = [row[0].strip("`") for row in rows]
    assert sorted(topics) == sorted(TOPIC_OWNERS)  # each topic once
    subscribed = subscriptions()
    for row in rows:
        topic = row[0].strip("`")
        assert names(row[1]) == {TOPIC_OWNERS[topic]}, topic
        expected = {service for service, topics in subscribed.items() if topic in topics}
        assert names(row[2]) == expected, topic


@pytest.mark.parametrize("name", sorted(PRODUCED))
def test_each_event_has_a_section_with_topic_version_and_every_payload_field(name: str) -> None:
    _producer, event = PRODUCED[name]
    found = sections()
    assert name in found, f"no section heading names {name}"
    version, body = found[name]
    assert version == event.version
    assert f"`{event.topic}`" in body
    missing = [field for field in event.payload.model_fields if field not in body]
    assert not missing, f"{name}: payload fields not described: {missing}"
