"""Bundle runs over matching's projections: dry runs, written inquiries with their budget and
events, the explanations, filters, and two runs at once, against a real PostgreSQL."""

from __future__ import annotations

import itertools
import random
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from matching_service.app import create_app as create_matching_app
from matching_service.models import INFRA as MATCHING_INFRA
from matching_service.placement.links import LINK_OUTCOMES, verify_link
from matching_service.schemas import BundleRunCreate
from matching_service.service import market
from matching_service.service.bundle_runs import run_bundles
from matching_service.service.inquiries import (
    PlannedInquiry,
    hold_searches,
    lock_inquiry_writes,
    write_inquiries,
)
from matching_service.settings import MatchingSettings
from shared.auth import BOOTSTRAP_ADMIN_NAME
from shared.db import Database
from shared.outbox import OutboxWriter
from shared.runtime import ServiceRuntime
from tests.conftest import ANSWER_LINK_SECRET
from tests.matching_support import (
    MarketBuilder,
    handle,
    insert_inquiry,
    location_event,
    new_id,
    unique_practice,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]

# one postal code per test (a run for it sees only that test's market)
_POSTAL_CODES = itertools.count(random.randrange(80_000, 88_000, 100))


def _region() -> str:
    return f"{next(_POSTAL_CODES):05d}"


@pytest.fixture
def settings(make_settings: Any) -> MatchingSettings:
    return make_settings(
        MatchingSettings, default_contact_budget=5, bundle_min_size=2, bundle_max_size=3
    )


@pytest.fixture
def database(settings: MatchingSettings) -> Any:
    database = ServiceRuntime.build(settings, MATCHING_INFRA).database
    yield database
    database.dispose()


@pytest.fixture
def client(settings: MatchingSettings) -> Any:
    return create_matching_app(settings).test_client()


@pytest.fixture
def builder(database: Any, client: Any, admin_headers: dict[str, str]) -> MarketBuilder:
    return MarketBuilder(database, client, admin_headers)


def _run(client: Any, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post("/api/bundle-runs", json=body, headers=headers)
    assert response.status_code == 201, response.json
    return dict(response.json)


def _count(engine: sa.Engine, sql: str, **params: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text(sql), params).scalar_one())


def _counts(engine: sa.Engine) -> tuple[int, int, int, int]:
    return (
        _count(engine, "SELECT count(*) FROM matching_service.bundle_runs"),
        _count(engine, "SELECT count(*) FROM matching_service.inquiries"),
        _count(engine, "SELECT count(*) FROM matching_service.inquiry_patients"),
        _count(engine, "SELECT count(*) FROM matching_service.outbox"),
    )


def _contacts_used(engine: sa.Engine, search_id: int) -> int:
    return _count(
        engine, "SELECT contacts_used FROM matching_service.patient_searches WHERE id = :id",
        id=search_id,
    )  # fmt: skip


def _created_events(engine: sa.Engine, inquiry_id: int) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.text(
                    "SELECT envelope FROM matching_service.outbox "
                    "WHERE event_type = 'inquiry.created' AND aggregate_id = :id"
                ),
                {"id": str(inquiry_id)},
            ).scalars()
        )


def _market(builder: MarketBuilder, region: str, searches: int = 3, **search: Any) -> Any:
    therapist_id = builder.therapist(postal_code=region)
    ids = [builder.search(postal_code=region, **search)["id"] for _ in range(searches)]
    return therapist_id, ids


def test_a_dry_run_proposes_inquiries_but_stores_only_its_record(
    builder: MarketBuilder, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    region = _region()
    therapist_id, search_ids = _market(builder, region)
    before = _counts(admin_engine)
    run = _run(client, admin_headers, postal_code_prefix=region, dry_run=True)
    assert run["dry_run"] is True
    (proposed,) = run["inquiries"]
    assert (proposed["id"], proposed["therapist_id"]) == (None, therapist_id)
    assert sorted(proposed["search_ids"]) == sorted(search_ids)
    assert (run["searches_considered"], run["therapists_considered"]) == (3, 1)
    assert run["inquiries_created"] == 0
    runs, inquiries, patients, outbox = _counts(admin_engine)
    assert (runs, inquiries, patients, outbox) == (before[0] + 1, *before[1:])
    assert all(_contacts_used(admin_engine, sid) == 0 for sid in search_ids)
    stored = client.get(f"/api/bundle-runs/{run['id']}", headers=admin_headers)
    assert stored.status_code == 200 and stored.json == run


def test_a_run_writes_inquiries_with_positions_uses_budget_and_emits_signed_links(
    builder: MarketBuilder,
    client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
    settings: MatchingSettings,
) -> None:
    region = _region()
    therapist_id, search_ids = _market(builder, region)
    as_of = datetime.now(UTC).replace(microsecond=0)
    run = _run(client, admin_headers, postal_code_prefix=region, as_of=as_of.isoformat())
    (created,) = run["inquiries"]
    assert created["id"] is not None and created["therapist_id"] == therapist_id
    assert sorted(created["search_ids"]) == sorted(search_ids)
    assert (run["inquiries_created"], run["created_by"]) == (1, BOOTSTRAP_ADMIN_NAME)
    detail = client.get(f"/api/inquiries/{created['id']}", headers=admin_headers).json
    assert (detail["origin"], detail["bundle_run_id"], detail["status"]) == (
        "bundle_run",
        run["id"],
        "unsent",
    )
    assert (detail["original_size"], detail["current_size"]) == (3, 3)
    assert [p["search_id"] for p in detail["patients"]] == created["search_ids"]
    assert [p["position"] for p in detail["patients"]] == [1, 2, 3]
    assert all(_contacts_used(admin_engine, sid) == 1 for sid in search_ids)

    (envelope,) = _created_events(admin_engine, created["id"])
    payload = envelope["payload"]
    assert payload["origin"] == "bundle_run" and payload["bundle_run_id"] == run["id"]
    valid_until = datetime.fromisoformat(payload["answer_links_valid_until"])
    assert valid_until == as_of + timedelta(days=settings.answer_link_days)
    first = payload["patients"][0]
    assert first["search_id"] == created["search_ids"][0] and first["position"] == 1
    assert first["reference"] == f"PS-{first['search_id']}"
    assert first["insurer_type"] == "statutory"
    assert first["age"] == as_of.year - 1990  # born 1 January 1990
    assert (first["gender"], first["diagnosis"], first["symptoms"]) == (
        "female",
        "F32.1",
        ["low_mood"],
    )
    assert first["two_year_rule_flag"] is False and first["distance_km"] is not None
    assert set(first["answer_links"]) == set(LINK_OUTCOMES)
    for outcome, url in first["answer_links"].items():
        prefix = f"{settings.answer_link_base_url}/answers/"
        assert url.startswith(prefix)
        claim = verify_link(ANSWER_LINK_SECRET, url.removeprefix(prefix), as_of)
        assert (claim.inquiry_id, claim.search_id, claim.outcome.value) == (
            created["id"],
            first["search_id"],
            outcome,
        )
    search = client.get(f"/api/patient-searches/{search_ids[0]}", headers=admin_headers).json
    assert search["contacts_used"] == 1
    assert [(i["inquiry_id"], i["therapist_id"], i["status"], i["patient_status"]) for i in
            search["inquiries"]] == [(created["id"], therapist_id, "unsent", "open")]  # fmt: skip


def test_searches_left_out_are_explained_budget_used_up_and_no_location(
    builder: MarketBuilder,
    client: Any,
    admin_headers: dict[str, str],
    admin_engine: sa.Engine,
    database: Any,
) -> None:
    region = _region()
    _, search_ids = _market(builder, region, searches=4)
    spent, unlocated = search_ids[0], search_ids[1]
    with admin_engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE matching_service.patient_searches SET contacts_used = contact_budget "
                "WHERE id = :id"
            ),
            {"id": spent},
        )
        patient_id = connection.execute(
            sa.text("SELECT patient_id FROM matching_service.patient_searches WHERE id = :id"),
            {"id": unlocated},
        ).scalar_one()
    # a location computed for another postal code than the patient's: not located
    handle(database, location_event("patient", patient_id, postal_code="00001", version=2))
    run = _run(client, admin_headers, postal_code_prefix=region)
    reasons = {item["search_id"]: item["reason"] for item in run["left_out"]}
    assert reasons == {spent: "budget_used_up", unlocated: "no_location"}
    assert sorted(run["inquiries"][0]["search_ids"]) == sorted(search_ids[2:])


def test_therapists_cooling_or_with_an_open_inquiry_are_explained_not_contactable(
    builder: MarketBuilder, client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    region = _region()
    cooling, search_ids = _market(builder, region)
    busy = builder.therapist(postal_code=region)
    unlocated = builder.therapist(postal_code=region)
    handle(builder.database, location_event("therapist", unlocated, postal_code="00001", version=2))
    elsewhere = builder.search(postal_code=_region())["id"]
    insert_inquiry(admin_engine, busy, [elsewhere], status="sent", sent_at=datetime.now(UTC))
    with admin_engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO matching_service.cooling_periods (practice_key, therapist_ids, "
                "starts_on, until) SELECT practice_key, '[]', :start, :until "
                "FROM matching_service.therapist_projection WHERE therapist_id = :id"
            ),
            {"id": cooling, "start": date.today(), "until": date.today() + timedelta(days=28)},
        )
    run = _run(client, admin_headers, postal_code_prefix=region)
    reasons = {item["therapist_id"]: item["reason"] for item in run["therapists_without_inquiry"]}
    assert reasons == {
        cooling: "not_contactable: cooling",
        busy: "not_contactable: open_inquiry",
        unlocated: "no_location",
    }
    assert run["inquiries"] == []
    assert {item["reason"] for item in run["left_out"]} == {"no_therapist_in_range"}
    assert {item["search_id"] for item in run["left_out"]} == set(search_ids)


def test_a_run_for_a_region_or_for_therapists_writes_only_theirs(
    builder: MarketBuilder, client: Any, admin_headers: dict[str, str]
) -> None:
    region, other = _region(), _region()
    inside, _ = _market(builder, region)
    outside, _ = _market(builder, other)
    run = _run(client, admin_headers, postal_code_prefix=region)
    assert [i["therapist_id"] for i in run["inquiries"]] == [inside]
    assert outside not in {t["therapist_id"] for t in run["therapists_without_inquiry"]}

    chosen = builder.therapist(postal_code=other)
    unknown = new_id()
    run = _run(client, admin_headers, postal_code_prefix=other, therapist_ids=[chosen, unknown])
    assert [i["therapist_id"] for i in run["inquiries"]] == [chosen]
    assert run["therapists_without_inquiry"] == [
        {"therapist_id": unknown, "reason": "unknown_therapist"}
    ]
    assert run["therapist_ids"] == [chosen, unknown] and run["postal_code_prefix"] == other


def test_two_runs_at_once_never_double_a_practice_or_exceed_a_budget(
    builder: MarketBuilder,
    database: Any,
    settings: MatchingSettings,
    admin_engine: sa.Engine,
) -> None:
    region = _region()
    therapists = [builder.therapist(postal_code=region) for _ in range(3)]
    searches = [builder.search(postal_code=region)["id"] for _ in range(6)]
    with admin_engine.begin() as connection:  # one contact each: one inquiry per search at most
        connection.execute(
            sa.text(
                "UPDATE matching_service.patient_searches SET contact_budget = 1 "
                "WHERE id = ANY(:ids)"
            ),
            {"ids": searches},
        )
    barrier = threading.Barrier(2)
    runs: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            request = BundleRunCreate(postal_code_prefix=region)
            runs.append(
                run_bundles(database.unit_of_work(), request, settings=settings, created_by="t")
            )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    first, second = sorted(runs, key=lambda r: r.inquiries_created, reverse=True)
    assert first.inquiries_created >= 2 and second.inquiries_created == 0
    written = {i["therapist_id"] for i in first.inquiries}
    second_reasons = {t["therapist_id"]: t["reason"] for t in second.therapists_without_inquiry}
    assert all(second_reasons[t] == "not_contactable: open_inquiry" for t in written)
    assert (
        _count(
            admin_engine,
            "SELECT count(*) FROM (SELECT practice_key FROM matching_service.inquiries "
            "WHERE therapist_id = ANY(:ids) AND status IN ('unsent', 'sent') "
            "GROUP BY practice_key HAVING count(*) > 1) AS doubled",
            ids=therapists,
        )
        == 0
    )
    assert all(_contacts_used(admin_engine, sid) <= 1 for sid in searches)
    assert sum(_contacts_used(admin_engine, sid) for sid in searches) == sum(
        len(i["search_ids"]) for i in first.inquiries
    )


def test_runs_for_two_regions_at_once_give_a_shared_practice_one_inquiry_events_copied(
    builder: MarketBuilder, settings: MatchingSettings, admin_engine: sa.Engine
) -> None:
    """Two regions, one practice with a therapist in each: the runs serialise on the writers'
    lock, so the practice gets one open inquiry; the outbox rows go in by COPY (the bulk
    path), one inquiry.created per inquiry written."""
    practice = unique_practice()
    regions = [_region(), _region()]
    therapists = [builder.therapist(postal_code=r, practice_key=practice) for r in regions]
    for region in regions:
        for _ in range(3):
            builder.search(postal_code=region)
    database = Database(settings.database_url, outbox=OutboxWriter(MATCHING_INFRA, copy_from=1))
    barrier = threading.Barrier(2)
    runs: list[Any] = []
    errors: list[BaseException] = []

    def run(region: str) -> None:
        try:
            barrier.wait(timeout=10)
            request = BundleRunCreate(postal_code_prefix=region)
            runs.append(
                run_bundles(database.unit_of_work(), request, settings=settings, created_by="t")
            )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(region,)) for region in regions]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        database.dispose()
    assert not errors, errors
    first, second = sorted(runs, key=lambda r: r.inquiries_created, reverse=True)
    assert (first.inquiries_created, second.inquiries_created) == (1, 0)
    (written,) = first.inquiries
    assert written["therapist_id"] in therapists
    assert second.therapists_without_inquiry == [
        {
            "therapist_id": next(t for t in therapists if t != written["therapist_id"]),
            "reason": "not_contactable: open_inquiry",
        }
    ]
    assert (
        _count(
            admin_engine,
            "SELECT count(*) FROM matching_service.inquiries "
            "WHERE practice_key = :p AND status IN ('unsent', 'sent')",
            p=practice,
        )
        == 1
    )
    (envelope,) = _created_events(admin_engine, written["id"])
    assert [p["search_id"] for p in envelope["payload"]["patients"]] == written["search_ids"]


def test_runs_are_listed_newest_first(client: Any, admin_headers: dict[str, str]) -> None:
    region = _region()
    older = _run(client, admin_headers, postal_code_prefix=region, dry_run=True)
    newer = _run(client, admin_headers, postal_code_prefix=region, dry_run=True)
    page = client.get("/api/bundle-runs?per_page=2", headers=admin_headers).json
    assert [item["id"] for item in page["items"]] == [newer["id"], older["id"]]
    assert page["total"] >= 2 and page["per_page"] == 2
    assert "left_out" not in page["items"][0]  # the lists are in the detail
    assert page["items"][0]["searches_considered"] == newer["searches_considered"]
    assert client.get("/api/bundle-runs/2147483647", headers=admin_headers).status_code == 404


def test_a_bad_run_request_is_422(client: Any, admin_headers: dict[str, str]) -> None:
    for body in (
        {"postal_code_prefix": "1"},
        {"postal_code_prefix": "1a"},
        {"therapist_ids": []},
        {"therapist_ids": [0]},
        {"dry_run": "yes"},
        {"as_of": "2026-03-02T09:00:00"},  # no time zone
        {"as_of": "0001-01-01T00:00:00Z"},
        {"strategy": "baseline"},
    ):
        response = client.post("/api/bundle-runs", json=body, headers=admin_headers)
        assert response.status_code == 422, body


def test_searches_changed_after_the_read_lose_their_places_at_write_time(
    builder: MarketBuilder,
    database: Any,
    settings: MatchingSettings,
    admin_engine: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    region = _region()
    therapist_id, (cancelled, spent, kept) = _market(builder, region)
    read = market.load_searches

    def read_then_change(*args: Any, **kwargs: Any) -> Any:
        searches = read(*args, **kwargs)
        with admin_engine.begin() as connection:  # another writer, between read and write
            connection.execute(
                sa.text(
                    "UPDATE matching_service.patient_searches SET status = 'cancelled' "
                    "WHERE id = :cancelled; UPDATE matching_service.patient_searches "
                    "SET contacts_used = contact_budget WHERE id = :spent"
                ),
                {"cancelled": cancelled, "spent": spent},
            )
        return searches

    monkeypatch.setattr(market, "load_searches", read_then_change)
    run = run_bundles(
        database.unit_of_work(),
        BundleRunCreate(postal_code_prefix=region),
        settings=settings,
        created_by="t",
    )
    assert run.inquiries == [] and run.inquiries_created == 0
    assert {item["search_id"]: item["reason"] for item in run.left_out} == {
        cancelled: "search_no_longer_active",
        spent: "budget_used_up",
        kept: "inquiry_below_minimum_at_write",  # one patient left, the minimum is two
    }
    assert run.therapists_without_inquiry == [
        {"therapist_id": therapist_id, "reason": "inquiry_below_minimum_at_write"}
    ]
    assert _contacts_used(admin_engine, kept) == 0
    assert (
        _count(
            admin_engine,
            "SELECT count(*) FROM matching_service.inquiries WHERE therapist_id = :t",
            t=therapist_id,
        )
        == 0
    )


def test_the_writer_skips_a_practice_that_has_an_open_inquiry(
    builder: MarketBuilder, database: Any, settings: MatchingSettings, admin_engine: sa.Engine
) -> None:
    region = _region()
    therapist_id, (first, second, _) = _market(builder, region)
    insert_inquiry(admin_engine, therapist_id, [first], status="unsent")
    with database.unit_of_work() as uow:
        lock_inquiry_writes(uow.session)
        held = hold_searches(uow.session, [second])
        (search,) = market.load_searches(uow.session, search_ids=[second])
        practice = market.contactability(uow.session, date.today(), [therapist_id])
        plan = PlannedInquiry(therapist_id, practice[therapist_id].practice_key, ((second, 1.0),))
        result = write_inquiries(
            uow, [plan], held, {second: search}, origin="manual", settings=settings,
            as_of=datetime.now(UTC),
        )  # fmt: skip
        uow.commit()
    assert result.written == [] and result.practice_taken == [plan]
    assert _contacts_used(admin_engine, second) == 0
    assert (
        _count(
            admin_engine,
            "SELECT count(*) FROM matching_service.inquiries WHERE therapist_id = :t",
            t=therapist_id,
        )
        == 1
    )
