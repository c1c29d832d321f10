"""The 116117 directory import of therapist_service: REST, CLI and the rules of business-rules.md
§3."""

from __future__ import annotations

import copy
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shared.auth import Role, TokenStore, issue_token
from shared.db import Database, role_url, schema_metadata
from shared.infrastructure import define_infrastructure
from shared.runtime import ServiceRuntime
from tests.unit.test_directory import PLZ_CSV
from therapist_service import service
from therapist_service.app import create_app
from therapist_service.cli import main
from therapist_service.directory.generator import generate_directory, read_places
from therapist_service.directory.records import SourceFile
from therapist_service.models import INFRA
from therapist_service.settings import TherapistSettings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_outboxes")]


@pytest.fixture
def client(make_settings: Any) -> Any:
    return create_app(make_settings(TherapistSettings)).test_client()


@pytest.fixture
def staff_headers(database_url: str) -> dict[str, str]:
    # stored on the admin connection, as `shared.cli tokens create` does (the role only reads)
    database = Database(database_url, pool_size=1)
    issued = issue_token(f"staff-{uuid.uuid4().hex[:6]}", Role.STAFF)
    TokenStore(database, define_infrastructure(schema_metadata("therapist_service"))).store(issued)
    database.dispose()
    return {"Authorization": f"Bearer {issued.token}"}


def entry(**changes: Any) -> dict[str, Any]:
    """A directory entry with a unique id, name and email; `contact__email=...` changes a
    nested value."""
    unique = uuid.uuid4().hex[:10]
    return edit(
        {
            "id": f"d-{unique}",
            "basic_info": {
                "salutation": "Frau",
                "title": "Dr.",
                "first_name": f"Anna{unique}",
                "last_name": "Beispiel",
            },
            "location": {
                "street": "Hauptstraße",
                "house_number": "1",
                "postal_code": "04109",
                "city": "Leipzig",
            },
            "contact": {"phone": "0341 1234567", "email": f"praxis.{unique}@example.org"},
            "languages": ["Deutsch"],
            "therapy_methods": ["Verhaltenstherapie - Erwachsene"],
            "telephone_hours": {"Mo": ["8:00-9:00"]},
        },
        **changes,
    )


def edit(value: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of an entry with `a__b=...` set."""
    result = copy.deepcopy(value)
    for path, new in changes.items():
        *parents, key = path.split("__")
        target = result
        for parent in parents:
            target = target[parent]
        target[key] = new
    return result


def post_import(client: Any, headers: dict[str, str], *entries: dict[str, Any]) -> dict[str, Any]:
    body = {"metadata": {"postal_code": "04109"}, "therapists": list(entries)}
    response = client.post("/api/therapist-imports", json=body, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def therapist(client: Any, headers: dict[str, str], imported: dict[str, Any]) -> dict[str, Any]:
    """The therapist an entry was imported as (found by its unique first name), as the API
    shows it."""
    query = {"q": imported["basic_info"]["first_name"], "per_page": 100}
    listed = client.get("/api/therapists", headers=headers, query_string=query)
    assert listed.status_code == 200
    found = [t for t in listed.json["items"] if t["directory_id"] == imported["id"]]
    assert len(found) == 1, f"{len(found)} therapists hold directory id {imported['id']}"
    return found[0]


def events(engine: sa.Engine, therapist_id: int | None = None) -> list[dict[str, Any]]:
    """This test's therapist outbox envelopes (of one therapist), oldest first."""
    query = "SELECT envelope FROM therapist_service.outbox WHERE published_at IS NULL"
    if therapist_id is not None:
        query += " AND aggregate_id = :id"
    with engine.connect() as connection:
        rows = connection.execute(sa.text(query + " ORDER BY id"), {"id": str(therapist_id)})
        return [envelope for (envelope,) in rows]


def test_new_entries_are_created_in_the_platforms_format_with_one_event_each(
    client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    first = entry(
        telephone_hours={"Do": ["12:00-12:50", "8:00-8:30"], "Mo": ["8:00-9:00"]},
        therapy_methods=["Analytische Psychotherapie", "Verhaltenstherapie - Erwachsene"],
        basic_info__salutation="Herr",
        contact__fax="0341 1234568",
    )
    report = post_import(client, admin_headers, first, entry())
    assert (report["created"], report["updated"], report["unchanged"]) == (2, 0, 0)
    assert report["skipped"] == [] and report["errors"] == []

    created = therapist(client, admin_headers, first)
    assert created["street"] == "Hauptstraße 1"
    assert created["gender"] == "male" and created["salutation"] == "Herr"
    assert created["phone_hours"] == {
        "mon": ["08:00-09:00"],
        "thu": ["08:00-08:30", "12:00-12:50"],
    }
    assert created["therapy_methods"] == ["behavioural", "analytic"]
    assert created["fax"] == "0341 1234568"
    assert created["status"] == "active" and created["version"] == 1
    [event] = events(admin_engine, created["id"])
    assert event["event_type"] == "therapist.created"
    assert "email" not in event["payload"] and event["payload"]["has_email"] is True


def test_only_therapists_treating_adults_are_imported(
    client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    children = entry(therapy_methods=["Verhaltenstherapie - Kinder und Jugendliche"])
    unknown = entry(therapy_methods=["Hypnose", "Gruppenpsychotherapie - Erwachsene"])
    mixed = entry(
        therapy_methods=[
            "Systemische Therapie - Kinder und Jugendliche",
            "Tiefenpsychologisch fundierte Psychotherapie - Erwachsene",
        ]
    )
    adults_too = entry(therapy_methods=["Verhaltenstherapie - Jugendliche und Erwachsene"])
    report = post_import(client, admin_headers, children, unknown, mixed, adults_too)
    assert report["created"] == 2
    assert report["skipped"] == [
        {"directory_id": children["id"], "reason": "no_adult_treatment", "file": None},
        {"directory_id": unknown["id"], "reason": "unrecognised_methods", "file": None},
    ]
    assert therapist(client, admin_headers, mixed)["therapy_methods"] == ["psychodynamic"]
    assert therapist(client, admin_headers, adults_too)["therapy_methods"] == ["behavioural"]
    assert len(events(admin_engine)) == 2


def test_a_known_directory_id_is_matched_even_after_a_move(
    client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    original = entry()
    post_import(client, admin_headers, original)
    before = therapist(client, admin_headers, original)
    moved = edit(original, location__postal_code="10115", location__city="Berlin")

    report = post_import(client, admin_headers, moved)

    assert (report["created"], report["updated"]) == (0, 1)
    after = therapist(client, admin_headers, original)
    assert after["id"] == before["id"]
    assert (after["postal_code"], after["city"], after["version"]) == ("10115", "Berlin", 2)
    updated = events(admin_engine, after["id"])[-1]
    assert updated["event_type"] == "therapist.updated"
    assert updated["payload"]["changed_fields"] == ["city", "postal_code"]


def test_a_therapist_staff_added_is_matched_by_name_and_postal_code(
    client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    incoming = entry(basic_info__title=None)
    added = client.post(
        "/api/therapists",
        json={
            "first_name": incoming["basic_info"]["first_name"].upper(),
            "last_name": "Beispiel",
            "postal_code": "04109",
            "potentially_available": True,
        },
        headers=admin_headers,
    ).json

    report = post_import(client, admin_headers, incoming)

    assert (report["created"], report["updated"]) == (0, 1)
    linked = therapist(client, admin_headers, incoming)
    assert linked["id"] == added["id"]
    assert linked["first_name"] == incoming["basic_info"]["first_name"]  # the directory's
    assert linked["potentially_available"] is True  # staff's
    assert "directory_id" in events(admin_engine, added["id"])[-1]["payload"]["changed_fields"]


def test_a_name_change_is_matched_by_first_name_postal_code_street_and_title(
    client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    before = entry()
    post_import(client, admin_headers, before)
    known = therapist(client, admin_headers, before)
    # the directory lists her under a new id and her married name
    married = edit(before, id=f"d-{uuid.uuid4().hex[:10]}", basic_info__last_name="Neumann")

    report = post_import(client, admin_headers, married)

    assert (report["created"], report["updated"]) == (0, 1)
    renamed = therapist(client, admin_headers, married)
    assert renamed["id"] == known["id"]
    assert renamed["last_name"] == "Neumann"
    changed = events(admin_engine, known["id"])[-1]["payload"]["changed_fields"]
    assert changed == ["directory_id", "last_name"]


def test_a_colleague_never_takes_over_a_therapist_a_later_entry_names_exactly(
    client: Any, admin_headers: dict[str, str]
) -> None:
    mueller = entry(basic_info__title="Dipl.-Psych.", basic_info__last_name="Müller")
    first_name = mueller["basic_info"]["first_name"]
    added = client.post(
        "/api/therapists",
        json={
            "title": "Dipl.-Psych.",
            "first_name": first_name,
            "last_name": "Müller",
            "street": "Hauptstr. 1",
            "postal_code": "04109",
            "potentially_available": False,
        },
        headers=admin_headers,
    ).json
    block = {"reason": "asked not to be contacted"}
    assert (
        client.post(
            f"/api/therapists/{added['id']}/block", json=block, headers=admin_headers
        ).status_code
        == 200
    )
    # her colleague at the same address, same first name and title, listed first
    schmidt = edit(mueller, id=f"d-{uuid.uuid4().hex[:10]}", basic_info__last_name="Schmidt")

    report = post_import(client, admin_headers, schmidt, mueller)

    assert (report["created"], report["updated"]) == (1, 1)
    kept = therapist(client, admin_headers, mueller)
    assert kept["id"] == added["id"] and kept["last_name"] == "Müller"
    assert kept["status"] == "blocked"
    colleague = therapist(client, admin_headers, schmidt)
    assert colleague["id"] != added["id"] and colleague["status"] == "active"


def test_staff_owned_fields_survive_every_reimport(
    client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    original = entry()
    post_import(client, admin_headers, original)
    therapist_id = therapist(client, admin_headers, original)["id"]
    staff_fields = {
        "potentially_available": True,
        "availability_notes": "ab März zwei Plätze",
        "informed_about_platform": True,
        "preferred_diagnoses": ["F3"],
        "patient_age_min": 25,
        "working_hours": {"tue": ["09:00-17:00"]},
    }
    assert (
        client.patch(
            f"/api/therapists/{therapist_id}", json=staff_fields, headers=admin_headers
        ).status_code
        == 200
    )
    block = {"reason": "asked not to be contacted"}
    blocked = client.post(
        f"/api/therapists/{therapist_id}/block", json=block, headers=admin_headers
    ).json
    events_before = len(events(admin_engine))

    again = post_import(client, admin_headers, original)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 1)
    assert len(events(admin_engine)) == events_before
    new_phone = post_import(client, admin_headers, edit(original, contact__phone="0341 7654321"))
    assert new_phone["updated"] == 1

    after = therapist(client, admin_headers, original)
    assert after["phone"] == "0341 7654321"
    assert after["status"] == "blocked" and after["block_reason"] == block["reason"]
    assert after["blocked_at"] == blocked["blocked_at"]
    assert {name: after[name] for name in staff_fields} == staff_fields


def test_a_stored_email_is_never_overwritten_nor_cleared_and_an_empty_one_is_filled(
    client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    original = entry()
    post_import(client, admin_headers, original)
    ours = therapist(client, admin_headers, original)

    other = post_import(client, admin_headers, edit(original, contact__email="neu@example.org"))
    empty = post_import(client, admin_headers, edit(original, contact__email=""))
    assert other["unchanged"] == empty["unchanged"] == 1
    assert therapist(client, admin_headers, original)["email"] == ours["email"]

    without = entry(contact__email="  ")
    post_import(client, admin_headers, without)
    bare = therapist(client, admin_headers, without)
    assert bare["email"] is None and bare["practice_key"] == f"t{bare['id']}"
    filled = post_import(client, admin_headers, edit(without, contact__email="a@example.org"))
    assert filled["updated"] == 1
    now = therapist(client, admin_headers, without)
    assert now["email"] == "a@example.org" and now["practice_key"].startswith("p")
    update = events(admin_engine, bare["id"])[-1]["payload"]
    assert update["changed_fields"] == ["email"] and update["practice_key"] == now["practice_key"]


def test_importing_the_same_file_twice_changes_nothing_and_emits_no_event(
    client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    entries = [entry() for _ in range(5)] + [
        entry(therapy_methods=["Verhaltenstherapie - Kinder und Jugendliche"])
    ]
    first = post_import(client, admin_headers, *entries)
    versions = {e["id"]: therapist(client, admin_headers, e)["version"] for e in entries[:5]}
    outbox = len(events(admin_engine))

    second = post_import(client, admin_headers, *entries)

    assert (first["created"], second["created"], second["updated"]) == (5, 0, 0)
    assert second["unchanged"] == 5 and len(second["skipped"]) == 1
    assert len(events(admin_engine)) == outbox
    assert {e["id"]: therapist(client, admin_headers, e)["version"] for e in entries[:5]} == (
        versions
    )


def test_a_broken_entry_is_reported_with_its_id_and_the_rest_imports(
    client: Any, admin_headers: dict[str, str]
) -> None:
    good = [entry(), entry()]
    bad_plz = entry(location__postal_code="0410")
    bad_email = entry(contact__email="not an email")
    bad_hours = entry(telephone_hours={"Mo": ["9:00-8:00"]})
    no_name = entry(basic_info__last_name="")
    repeated = edit(good[0], contact__phone="0341 99")

    report = post_import(
        client, admin_headers, good[0], bad_plz, {"basic_info": {}}, bad_email, bad_hours,
        no_name, good[1], repeated,
    )  # fmt: skip

    assert report["created"] == 2
    errors = {error["directory_id"]: error["reason"] for error in report["errors"]}
    assert errors.keys() == {bad_plz["id"], None, bad_email["id"], bad_hours["id"], no_name["id"]}
    assert errors[bad_plz["id"]].startswith("postal_code: String should match pattern")
    assert errors[None] == "id: a non-empty text or number is required"
    assert errors[bad_email["id"]].startswith("email: value is not a valid email address")
    assert errors[bad_hours["id"]] == "telephone_hours.Mo: a time range ends before it starts"
    assert errors[no_name["id"]].startswith("last_name: ")
    assert report["skipped"] == [
        {"directory_id": good[0]["id"], "reason": "duplicate_directory_id", "file": None}
    ]
    assert therapist(client, admin_headers, good[0])["phone"] == "0341 1234567"


def test_members_writing_the_practice_email_in_another_case_share_one_practice(
    client: Any, admin_headers: dict[str, str]
) -> None:
    address = f"Praxis.{uuid.uuid4().hex[:8]}@Example.org"
    members = [entry(contact__email=address), entry(contact__email=address.upper())]
    members.append(entry(contact__email=address.lower()))
    post_import(client, admin_headers, *members)
    keys = {therapist(client, admin_headers, m)["practice_key"] for m in members}
    assert len(keys) == 1
    practice = client.get(f"/api/practices/{keys.pop()}", headers=admin_headers).json
    assert {m["directory_id"] for m in practice["members"]} == {m["id"] for m in members}


def test_only_admins_import_and_read_import_reports(
    client: Any, staff_headers: dict[str, str]
) -> None:
    body = {"metadata": {}, "therapists": [entry()]}
    assert client.post("/api/therapist-imports", json=body, headers=staff_headers).status_code == (
        403
    )
    assert client.get("/api/therapist-imports", headers=staff_headers).status_code == 403
    assert client.get("/api/therapist-imports/1", headers=staff_headers).status_code == 403
    assert client.post("/api/therapist-imports", json=body).status_code == 401


def test_the_report_is_stored_and_served(client: Any, admin_headers: dict[str, str]) -> None:
    report = post_import(client, admin_headers, entry(), entry(location__postal_code="x"))
    assert set(report) == {
        "id", "source", "created", "updated", "unchanged", "skipped", "errors", "started_at",
        "finished_at",
    }  # fmt: skip
    assert report["started_at"] <= report["finished_at"]
    stored = client.get(f"/api/therapist-imports/{report['id']}", headers=admin_headers)
    assert stored.status_code == 200 and stored.json == report
    listed = client.get("/api/therapist-imports", headers=admin_headers).json
    assert set(listed) == {"items", "total", "total_exact", "page", "per_page"}
    summary = {
        **{k: v for k, v in report.items() if k not in ("skipped", "errors")},
        "skipped_count": 0,
        "error_count": 1,
    }
    assert listed["items"][0] == summary  # newest first, counts instead of the lists
    missing = client.get("/api/therapist-imports/2147483647", headers=admin_headers)
    assert missing.status_code == 404


# ---------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"first_name": "Anna", "postal_code": "04109"}, {"metadata", "therapists"}),
        ({"metadata": {}, "therapists": "Anna"}, {"therapists"}),
        ({"metadata": [], "therapists": []}, {"metadata"}),
        ({"metadata": {}, "therapists": [1, {"id": "a"}]}, {"therapists.0"}),
        ([{"id": "a"}], {"body"}),
    ],
)
def test_a_body_that_is_not_a_directory_file_is_422_naming_the_field(
    client: Any, admin_headers: dict[str, str], body: Any, fields: set[str]
) -> None:
    response = client.post("/api/therapist-imports", json=body, headers=admin_headers)
    assert response.status_code == 422
    assert {detail["field"] for detail in response.json["error"]["details"]} == fields


def test_control_characters_are_reported_per_entry_and_refused_in_the_metadata(
    client: Any, admin_headers: dict[str, str]
) -> None:
    broken = entry(basic_info__last_name="Bei\x00spiel", contact={"x\x85y": "z"})
    good = entry()

    report = post_import(client, admin_headers, broken, good)

    assert report["created"] == 1
    assert report["errors"] == [
        {
            "directory_id": broken["id"],
            "reason": "basic_info.last_name: must not contain control characters",
            "file": None,
        }
    ]
    therapist(client, admin_headers, good)
    body = {"metadata": {"source": "scrape\x1b"}, "therapists": [entry()]}
    response = client.post("/api/therapist-imports", json=body, headers=admin_headers)
    assert response.status_code == 422
    assert [d["field"] for d in response.json["error"]["details"]] == ["metadata.source"]


def test_ten_thousand_therapists_in_one_body_import_within_the_limit(
    client: Any, admin_headers: dict[str, str], admin_engine: sa.Engine
) -> None:
    run = uuid.uuid4().hex[:8]
    entries = [
        entry(id=f"bulk-{run}-{n}", location__postal_code=f"{10000 + n % 500:05d}")
        for n in range(10_000)
    ]
    raw = json.dumps({"metadata": {}, "therapists": entries}).encode()
    assert 1_048_576 < len(raw) < 20 * 1024 * 1024  # over the platform default, in the limit

    response = client.post(
        "/api/therapist-imports",
        data=raw,
        content_type="application/json",
        headers=admin_headers,
    )

    assert response.status_code == 201, response.json
    assert response.json["created"] == 10_000 and response.json["errors"] == []
    with admin_engine.connect() as connection:
        count = connection.execute(
            sa.text("SELECT count(*) FROM therapist_service.therapists WHERE directory_id LIKE :p"),
            {"p": f"bulk-{run}-%"},
        ).scalar_one()
    assert count == 10_000


def test_a_body_over_the_import_limit_is_413(
    client: Any, admin_headers: dict[str, str], make_settings: Any
) -> None:
    over_default = b" " * (20 * 1024 * 1024 + 1)
    response = client.post(
        "/api/therapist-imports",
        data=over_default,
        content_type="application/json",
        headers=admin_headers,
    )
    assert response.status_code == 413
    assert response.json["error"]["code"] == "request_entity_too_large"

    settings = make_settings(TherapistSettings, directory_import_max_bytes=4096)
    small = create_app(settings).test_client()
    body = {"metadata": {}, "therapists": [entry() for _ in range(20)]}
    refused = small.post("/api/therapist-imports", json=body, headers=admin_headers)
    assert refused.status_code == 413
    assert "at most 4096 bytes" in refused.json["error"]["message"]


# ---------------------------------------------------------------- concurrency


def test_two_imports_of_the_same_file_at_once_create_no_duplicates(
    make_settings: Any, admin_engine: sa.Engine
) -> None:
    run = uuid.uuid4().hex[:8]
    entries = [
        entry(id=f"race-{run}-{n}", location__postal_code=f"{20000 + n % 7:05d}")
        for n in range(300)
    ]
    reports: list[Any] = []
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def run_import() -> None:
        database = ServiceRuntime.build(make_settings(TherapistSettings), INFRA).database
        try:
            start.wait()
            reports.append(
                service.import_directory(
                    database.unit_of_work(),
                    [SourceFile(None, entries)],
                    source="race",
                    batch_size=25,
                )
            )
        except BaseException as exc:
            failures.append(exc)
        finally:
            database.dispose()

    threads = [threading.Thread(target=run_import) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert sum(r.created for r in reports) == 300
    assert sum(r.created + r.unchanged for r in reports) == 600
    with admin_engine.connect() as connection:
        stored = connection.execute(
            sa.text(
                "SELECT count(*), count(DISTINCT directory_id) FROM therapist_service.therapists "
                "WHERE directory_id LIKE :p"
            ),
            {"p": f"race-{run}-%"},
        ).one()
    assert tuple(stored) == (300, 300)
    created = [e for e in events(admin_engine) if e["event_type"] == "therapist.created"]
    assert len(created) == 300


def test_two_imports_naming_one_new_person_under_different_ids_create_one_therapist(
    make_settings: Any, admin_engine: sa.Engine
) -> None:
    for _ in range(3):  # a race: a few rounds make an unlucky interleaving likely
        person = entry()
        files = [edit(person, id=f"d-{uuid.uuid4().hex[:10]}") for _ in range(2)]

        assert not _import_at_once(make_settings, files)

        with admin_engine.connect() as connection:
            stored = connection.execute(
                sa.text("SELECT count(*) FROM therapist_service.therapists WHERE first_name = :f"),
                {"f": person["basic_info"]["first_name"]},
            ).scalar_one()
        assert stored == 1


def _import_at_once(make_settings: Any, contents: list[dict[str, Any]]) -> list[BaseException]:
    """Each entry imported as its own file by its own thread, all started together; the
    failures."""
    failures: list[BaseException] = []
    start = threading.Barrier(len(contents))

    def run_import(content: dict[str, Any]) -> None:
        database = ServiceRuntime.build(make_settings(TherapistSettings), INFRA).database
        try:
            start.wait()
            service.import_directory(
                database.unit_of_work(), [SourceFile(None, [content])], source="race", batch_size=25
            )
        except BaseException as exc:
            failures.append(exc)
        finally:
            database.dispose()

    threads = [threading.Thread(target=run_import, args=(c,)) for c in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return failures


def test_a_run_that_stops_keeps_what_it_committed_and_says_so_in_its_report(
    make_settings: Any, client: Any, admin_headers: dict[str, str]
) -> None:
    first = entry()

    def files() -> Any:
        yield SourceFile("a.json", [first])
        raise OSError("disk gone")

    database = ServiceRuntime.build(make_settings(TherapistSettings), INFRA).database
    try:
        with pytest.raises(OSError):
            service.import_directory(
                database.unit_of_work(), files(), source="stopping", batch_size=1
            )
    finally:
        database.dispose()

    listed = client.get("/api/therapist-imports", headers=admin_headers).json["items"][0]
    report = client.get(f"/api/therapist-imports/{listed['id']}", headers=admin_headers).json
    assert (report["source"], report["created"], listed["error_count"]) == ("stopping", 1, 1)
    assert report["errors"] == [
        {"directory_id": None, "reason": "import stopped: OSError", "file": None}
    ]
    assert report["finished_at"] is not None
    assert therapist(client, admin_headers, first)["status"] == "active"


# ---------------------------------------------------------------- command line


@pytest.fixture
def directory_folder(tmp_path: Path) -> Path:
    csv_path = tmp_path / "zipcodes.csv"
    csv_path.write_text(PLZ_CSV, encoding="utf-8")
    folder = tmp_path / "directory"
    generate_directory(folder, read_places(csv_path), therapists=60, seed=11)
    return folder


def _phones(folder: Path, name: str) -> dict[str, str]:
    document = json.loads((folder / name).read_text())
    return {e["id"]: e["contact"]["phone"] for e in document["therapists"]}


def test_cli_imports_urgent_first_then_the_newest_dated_file_of_each_area(
    directory_folder: Path,
    database_url: str,
    admin_engine: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("THERAPIST_SERVICE_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", role_url(database_url, "therapist_service"))

    assert main(["import-directory", str(directory_folder)]) == 0

    output = capsys.readouterr().out.splitlines()
    progress = [line.split("] ", 1)[1].split(":")[0] for line in output if line.startswith("[")]
    urgent = sorted(p.name for p in (directory_folder / "urgent").glob("*.json"))
    dated = sorted(p.name for p in (directory_folder / "20260105").glob("*.json"))
    assert progress == [
        *(f"urgent/{name}" for name in urgent),
        *(f"20260105/{name}" for name in dated if name not in urgent),
    ]
    assert "passed over 20251229/" in "\n".join(output)
    assert output[-1].startswith(f"{len(progress)} files imported (report ")
    older = {p.name for p in (directory_folder / "20251229").glob("*.json")} - set(urgent)
    assert older and urgent
    expected: dict[str, str] = {}
    for name in older:
        expected.update(_phones(directory_folder, f"20260105/{name}"))  # not the older phones
    for name in urgent:
        expected.update(_phones(directory_folder, f"urgent/{name}"))
    with admin_engine.connect() as connection:
        stored = dict(
            connection.execute(
                sa.text(
                    "SELECT directory_id, phone FROM therapist_service.therapists "
                    "WHERE directory_id = ANY(:ids)"
                ),
                {"ids": list(expected)},
            ).all()
        )
    assert stored.items() <= expected.items() and stored  # children-only ones are not there

    assert main(["import-directory", str(directory_folder), "--quiet"]) == 0
    totals = capsys.readouterr().out.strip()
    assert " 0 created, 0 updated, " in totals and " 0 errors" in totals


def test_cli_reports_a_file_it_cannot_read_and_imports_the_others(
    directory_folder: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("THERAPIST_SERVICE_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", role_url(database_url, "therapist_service"))
    (directory_folder / "urgent" / "99999.json").write_text("{not json")
    (directory_folder / "urgent" / "99998.json").write_text('{"therapists": 5}')
    bad_metadata = {"metadata": {"source": "scrape\u001b[2J"}, "therapists": []}
    (directory_folder / "urgent" / "99997.json").write_text(json.dumps(bad_metadata))

    assert main(["import-directory", str(directory_folder), "--quiet"]) == 1

    captured = capsys.readouterr()
    assert "error: urgent/99998.json is not a directory file: metadata: Field required" in (
        captured.err
    )
    assert "error: urgent/99999.json is not valid JSON" in captured.err
    assert (
        "error: urgent/99997.json is not a directory file: metadata: must not contain control"
        in captured.err
    )
    assert " errors" in captured.out and "files imported" in captured.out
    assert main(["import-directory", str(directory_folder / "missing")]) == 2


def test_cli_generates_a_directory_or_says_where_postal_codes_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path = tmp_path / "zipcodes.csv"
    csv_path.write_text(PLZ_CSV, encoding="utf-8")
    out = tmp_path / "out"
    args = ["generate-directory", "--out", str(out), "--therapists", "25", "--seed", "3"]
    assert main([*args, "--plz-data", str(csv_path)]) == 0
    assert capsys.readouterr().out.startswith("25 therapists in ")
    assert sorted(p.name for p in out.iterdir()) == ["20251229", "20260105", "urgent"]

    monkeypatch.setenv("PLZ_DATA", str(tmp_path / "absent.csv"))
    assert main(args) == 2
    assert "cannot read postal-code data" in capsys.readouterr().err
