"""geocoding_service against real PostgreSQL (and a real broker for the worker), with
Nominatim and OSRM played by a local HTTP server (tests/geo_fakes.py).

The module has a database of its own (tests/integration/conftest.py): the postal codes it
imports never meet other tests.
"""

from __future__ import annotations

import functools
import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from geocoding_service import service
from geocoding_service.app import create_app
from geocoding_service.handlers import handlers
from geocoding_service.models import INFRA
from geocoding_service.providers import providers_from_settings
from geocoding_service.schemas import PATIENT_EVENTS, THERAPIST_EVENTS
from geocoding_service.settings import GeocodingSettings
from shared.auth import Role, issue_token
from shared.cli import token_stores
from shared.db import role_url
from shared.devstack import ROOT, drop_database, ensure_database, free_port
from shared.events import Envelope
from shared.migrations import upgrade_all
from shared.runtime import ServiceRuntime
from shared.settings import SERVICES
from tests.conftest import ADMIN_TOKEN
from tests.geo_fakes import ROUTE, FakeGeoServer
from tests.helpers import wait_until
from tests.unit.test_geocoding_rules import CSV, TSV, tsv_line

pytestmark = pytest.mark.integration

USER_AGENT = "placement-tests/1.0 (tests@example.org)"
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LEIPZIG = (51.3397, 12.3731)  # 04109 in the fixture data


def _geocoding(geo_settings_for: Callable[..., Any], plz_tsv: Path, **overrides: Any) -> Any:
    """A geocoding app's test client with the fixture postal codes loaded."""
    client = create_app(geo_settings_for(GeocodingSettings, **overrides)).test_client()
    response = client.post("/api/admin/plz-imports", json={"source": str(plz_tsv)}, headers=HEADERS)
    assert response.status_code == 200, response.json
    return client


@pytest.fixture
def client(geo_settings_for: Callable[..., Any], plz_tsv: Path) -> Any:
    """Geocoding without Nominatim and OSRM (centroids and estimates only)."""
    return _geocoding(geo_settings_for, plz_tsv)


@pytest.fixture
def fake() -> Iterator[FakeGeoServer]:
    """Nominatim and OSRM on a free local port."""
    with FakeGeoServer(places={"teststraße": (51.3411, 12.3702)}, slow_seconds=1.5) as server:
        yield server


def _with_providers(
    geo_settings_for: Callable[..., Any], plz_tsv: Path, fake: FakeGeoServer
) -> Any:
    return _geocoding(
        geo_settings_for,
        plz_tsv,
        nominatim_url=fake.url,
        nominatim_user_agent=USER_AGENT,
        nominatim_min_interval_seconds=0,  # the shared limit has its own test below
        nominatim_timeout_seconds=0.5,
        osrm_url=fake.url,
        osrm_timeout_seconds=0.5,
    )


def _street() -> str:
    """An address nobody asked for yet (the geocode cache is shared by the module)."""
    return f"Teststraße {uuid.uuid4().hex[:8]} 1, 04109 Leipzig"


# ---------------------------------------------------------------- PLZ import and lookup


def test_plz_with_several_places_answers_their_mean_places_and_state(client: Any) -> None:
    response = client.get("/api/plz/01945", headers=HEADERS)
    assert response.status_code == 200
    body = response.json
    assert body["postal_code"] == "01945"
    assert body["lat"] == pytest.approx((51.4167 + 51.4045 + 51.4) / 3, abs=1e-6)
    assert body["lon"] == pytest.approx((13.9333 + 13.8829 + 14.0) / 3, abs=1e-6)
    assert body["places"] == ["Grünewald", "Guteborn", "Hermsdorf"]
    assert body["state"] == "Brandenburg"


@pytest.mark.parametrize(
    ("plz", "status"),
    [("99997", 404), ("0410", 422), ("abcde", 422), ("041090", 422), ("٠٤١٠٩", 422)],
)
def test_unknown_plz_is_404_and_a_malformed_one_422(client: Any, plz: str, status: int) -> None:
    response = client.get(f"/api/plz/{plz}", headers=HEADERS)
    assert response.status_code == status
    assert set(response.json["error"]) == {"code", "message", "details"}


def test_second_import_of_the_same_file_changes_nothing(client: Any, plz_tsv: Path) -> None:
    again = client.post("/api/admin/plz-imports", json={"source": str(plz_tsv)}, headers=HEADERS)
    assert again.status_code == 200
    report = again.json
    assert (report["created"], report["updated"], report["unchanged"]) == (0, 0, 3)
    assert (report["rows"], report["skipped_other_countries"]) == (5, 1)
    assert report["format"] == "geonames tsv"


def test_zip_and_csv_formats_import_the_same_postal_codes(
    client: Any, tmp_path: Path, geo_engine: sa.Engine
) -> None:
    moved = TSV.replace("51.3397\t12.3731", "51.34\t12.38").replace("04109", "04177")
    archive = tmp_path / "DE.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("readme.txt", "GeoNames")
        zipped.writestr("DE.txt", moved)
    report = client.post("/api/admin/plz-imports", json={"source": str(archive)}, headers=HEADERS)
    assert report.json["format"] == "zip (geonames tsv)"
    assert report.json["created"] == 1  # 04177; 01945 unchanged
    assert client.get("/api/plz/04177", headers=HEADERS).json["lat"] == 51.34
    csv_file = tmp_path / "zipcodes.de.csv"
    csv_file.write_text(CSV.replace("04109", "04178"))
    report = client.post("/api/admin/plz-imports", json={"source": str(csv_file)}, headers=HEADERS)
    assert report.json["format"] == "csv"
    assert report.json["created"] == 1 and report.json["updated"] == 1  # 01945 has 2 places now
    assert client.get("/api/plz/04178", headers=HEADERS).json["places"] == ["Leipzig, Zentrum"]


def test_bad_file_is_refused_whole_with_line_and_reason(client: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    good = tsv_line("04299", "Leipzig", "Sachsen", 51.31, 12.41)
    bad.write_text(
        good
        + "\n"
        + tsv_line("04317", "Leipzig", "Sachsen", 51.33, 12.42).replace("51.33", "x")
        + "\n"
    )
    response = client.post("/api/admin/plz-imports", json={"source": str(bad)}, headers=HEADERS)
    assert response.status_code == 422
    error = response.json["error"]
    assert error["code"] == "invalid_plz_data"
    assert error["details"] == [
        {"field": "source", "line": 2, "message": "latitude is not a number between -90 and 90"}
    ]
    assert client.get("/api/plz/04299", headers=HEADERS).status_code == 404  # nothing written


@pytest.mark.parametrize("source", ["/nonexistent/DE.zip", "/dev/zero", "/", "0" * 1000])
def test_unreadable_source_is_422_naming_it(client: Any, source: str) -> None:
    response = client.post("/api/admin/plz-imports", json={"source": source}, headers=HEADERS)
    assert response.status_code == 422
    assert response.json["error"]["details"][0]["field"] == "source"


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local static HTTP server over a temporary directory: (base URL, directory)."""
    port = free_port()
    handler = functools.partial(_QuietFiles, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", tmp_path
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def test_import_from_a_url_reads_the_downloaded_zip(
    client: Any, file_server: tuple[str, Path]
) -> None:
    base, directory = file_server
    with zipfile.ZipFile(directory / "DE.zip", "w") as zipped:
        zipped.writestr("DE.txt", tsv_line("04229", "Leipzig", "Sachsen", 51.32, 12.34) + "\n")
    response = client.post(
        "/api/admin/plz-imports", json={"source": f"{base}/DE.zip"}, headers=HEADERS
    )
    assert response.status_code == 200, response.json
    assert response.json["source"] == f"{base}/DE.zip"
    assert client.get("/api/plz/04229", headers=HEADERS).json["lat"] == 51.32
    missing = client.post(
        "/api/admin/plz-imports", json={"source": f"{base}/none.zip"}, headers=HEADERS
    )
    assert missing.status_code == 422
    assert "HTTP 404" in missing.json["error"]["message"]


def test_dev_stack_says_plainly_when_no_plz_source_is_reachable(
    pg_admin_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from shared.devstack import load_plz_data

    name = f"geo_empty_{uuid.uuid4().hex[:8]}"
    url = ensure_database(pg_admin_url, name)
    try:
        upgrade_all(url)
        assert not load_plz_data(f"http://127.0.0.1:{free_port()}/DE.zip", url, "127.0.0.1:1")
    finally:
        drop_database(pg_admin_url, name)
    out = capfd.readouterr().out
    assert "PLZ data NOT loaded from http://127.0.0.1:" in out
    assert "The other services run" in out


def test_plz_import_needs_the_admin_role_and_a_source(client: Any, geo_database: str) -> None:
    staff = issue_token(f"staff-{uuid.uuid4().hex[:6]}", Role.STAFF)
    with token_stores(geo_database, ["geocoding_service"]) as [(_, store)]:
        store.store(staff)
    refused = client.post(
        "/api/admin/plz-imports",
        json={"source": "/tmp/x"},
        headers={"Authorization": f"Bearer {staff.token}"},
    )
    assert refused.status_code == 403
    missing = client.post("/api/admin/plz-imports", json={}, headers=HEADERS)
    assert missing.status_code == 422 and "PLZ_DATA" in missing.json["error"]["message"]


def test_cli_imports_with_progress_and_refuses_a_bad_file_with_exit_code(
    geo_database: str, plz_tsv: Path, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": role_url(geo_database, "geocoding_service"),
        "PYTHONPATH": str(ROOT),
        "LOG_JSON": "false",
    }
    command = [sys.executable, "-m", "geocoding_service.cli", "import-plz"]
    done = subprocess.run(
        [*command, str(plz_tsv)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "read 5 rows (geonames tsv): 3 postal codes" in done.stdout
    assert "written 3/3 postal codes" in done.stdout
    skipped = subprocess.run(
        [*command, "--if-empty", "/nonexistent"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert skipped.returncode == 0 and "nothing to do" in skipped.stdout
    bad = tmp_path / "DE.txt"
    bad.write_text(TSV + "\nDE\t04109\tLeipzig\n")
    failed = subprocess.run(
        [*command, str(bad)], env=env, capture_output=True, text=True, timeout=120
    )
    assert failed.returncode == 1
    assert "line 6: expected 12 tab-separated columns, found 3" in failed.stderr


# ---------------------------------------------------------------- geocode


def test_geocode_without_a_geocoder_answers_the_plz_centroid(client: Any) -> None:
    response = client.get(
        "/api/geocode", query_string={"address": "Markt 1, 04109 Leipzig"}, headers=HEADERS
    )
    assert response.status_code == 200
    assert response.json == {
        "lat": LEIPZIG[0],
        "lon": LEIPZIG[1],
        "precision": "plz",
        "source": "plz_centroid",
        "postal_code": "04109",
        "fallback_reason": None,
    }


@pytest.mark.parametrize(
    ("address", "status"),
    [("Markt 1, 99996 Nirgendwo", 404), ("Markt 1", 404), ("ab", 422), ("x" * 301, 422)],
)
def test_address_that_cannot_be_located_is_404_and_a_malformed_one_422(
    client: Any, address: str, status: int
) -> None:
    response = client.get("/api/geocode", query_string={"address": address}, headers=HEADERS)
    assert response.status_code == status


def test_geocode_asks_nominatim_once_with_our_user_agent_then_uses_the_cache(
    geo_settings_for: Callable[..., Any], plz_tsv: Path, fake: FakeGeoServer
) -> None:
    client = _with_providers(geo_settings_for, plz_tsv, fake)
    address = _street()
    answers = [
        client.get("/api/geocode", query_string={"address": address}, headers=HEADERS).json
        for _ in range(2)
    ]
    assert (
        answers[0]
        == answers[1]
        == {
            "lat": 51.3411,
            "lon": 12.3702,
            "precision": "address",
            "source": "nominatim",
            "postal_code": None,
            "fallback_reason": None,
        }
    )
    [seen] = fake.hits("/search")
    assert seen.user_agent == USER_AGENT
    assert seen.query["q"] == [address] and seen.query["format"] == ["json"]
    differently_written = address.upper().replace(", ", ",")
    client.get("/api/geocode", query_string={"address": differently_written}, headers=HEADERS)
    assert len(fake.hits("/search")) == 1  # the same address, normalised: a cache hit


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (429, "rate limited"),
        (500, "nominatim failed: HTTP 500"),
        (503, "nominatim failed: HTTP 503"),
        ("timeout", "timed out"),
        ("garbage", "nominatim"),
    ],
)
def test_nominatim_failure_falls_back_to_the_plz_centroid_labelled_and_uncached(
    geo_settings_for: Callable[..., Any],
    plz_tsv: Path,
    fake: FakeGeoServer,
    failure: int | str,
    reason: str,
) -> None:
    client = _with_providers(geo_settings_for, plz_tsv, fake)
    address = _street()
    fake.fail_next(failure)
    response = client.get("/api/geocode", query_string={"address": address}, headers=HEADERS)
    assert response.status_code == 200
    body = response.json
    assert (body["precision"], body["source"], body["postal_code"]) == (
        "plz",
        "plz_centroid",
        "04109",
    )
    assert reason in body["fallback_reason"]
    again = client.get("/api/geocode", query_string={"address": address}, headers=HEADERS).json
    assert again["precision"] == "address"  # a failure is not cached: asked again
    assert len(fake.hits("/search")) == 2


def test_address_nominatim_does_not_know_falls_back_and_is_not_asked_again(
    geo_settings_for: Callable[..., Any], plz_tsv: Path, fake: FakeGeoServer
) -> None:
    client = _with_providers(geo_settings_for, plz_tsv, fake)
    address = f"Unbekannter Weg {uuid.uuid4().hex[:6]}, 04109 Leipzig"
    for _ in range(2):
        body = client.get("/api/geocode", query_string={"address": address}, headers=HEADERS).json
        assert body["precision"] == "plz"
        assert body["fallback_reason"] == "nominatim found no such address"
    assert len(fake.hits("/search")) == 1


def test_nominatim_rate_limit_holds_across_two_processes(
    geo_database: str, fake: FakeGeoServer
) -> None:
    """Two processes asking at once: N requests reach Nominatim over at least N-1 seconds."""
    script = (
        "import sys\n"
        "from geocoding_service import service\n"
        "from geocoding_service.models import INFRA\n"
        "from geocoding_service.providers import providers_from_settings\n"
        "from geocoding_service.settings import GeocodingSettings\n"
        "from shared.runtime import ServiceRuntime\n"
        "settings = GeocodingSettings()\n"
        "database = ServiceRuntime.build(settings, INFRA).database\n"
        "providers = providers_from_settings(settings)\n"
        "for address in sys.argv[1:]:\n"
        "    service.locate_address(database.unit_of_work(), providers, address)\n"
    )
    env = {
        **os.environ,
        "DATABASE_URL": role_url(geo_database, "geocoding_service"),
        "NOMINATIM_URL": fake.url,
        "NOMINATIM_USER_AGENT": USER_AGENT,
        "NOMINATIM_MAX_WAIT_SECONDS": "30",
        "PYTHONPATH": str(ROOT),
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, *(_street() for _ in range(3))],
            env=env,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()[-2000:]
    arrivals = sorted(seen.at for seen in fake.hits("/search"))
    assert len(arrivals) == 6
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert arrivals[-1] - arrivals[0] >= 5 - 0.05, gaps
    assert min(gaps) >= 0.9, gaps


# ---------------------------------------------------------------- distances


def _random_point() -> str:
    """Coordinates no other test routes between (the route cache is shared)."""
    return f"{random.uniform(50, 53):.5f},{random.uniform(9, 14):.5f}"


def test_distance_without_osrm_is_great_circle_times_detour_per_mode(client: Any) -> None:
    answers = {
        mode: client.get(
            "/api/distance",
            query_string={"from": "04109", "to": "52.52,13.405", "mode": mode},
            headers=HEADERS,
        ).json
        for mode in ("car", "transit")
    }
    car, transit = answers["car"], answers["transit"]
    assert car["source"] == transit["source"] == "geodesic"
    assert car["fallback_reason"] is None
    great_circle = car["distance_km"] / 1.3
    assert great_circle == pytest.approx(149.5, abs=1.0)
    assert transit["distance_km"] == pytest.approx(great_circle * 1.5, abs=0.02)
    assert car["duration_min"] == pytest.approx(car["distance_km"] / 50 * 60, abs=0.1)
    assert transit["duration_min"] == pytest.approx(transit["distance_km"] / 25 * 60, abs=0.1)
    default = client.get(
        "/api/distance", query_string={"from": "04109", "to": "52.52,13.405"}, headers=HEADERS
    )
    assert default.json == car  # car unless asked


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ({"from": "0410", "to": "04109"}, 422, "from"),
        ({"from": "04109", "to": "91.0,13.4"}, 422, "to"),
        ({"from": "04109", "to": "52.5;13.4"}, 422, "to"),
        ({"from": "04109", "to": "04109", "mode": "bike"}, 422, "mode"),
        ({"to": "04109"}, 422, "from"),
        ({"from": "99995", "to": "04109"}, 404, None),
    ],
)
def test_malformed_point_is_422_naming_it_and_unknown_plz_404(
    client: Any, query: dict[str, str], status: int, field: str | None
) -> None:
    response = client.get("/api/distance", query_string=query, headers=HEADERS)
    assert response.status_code == status, response.json
    if field:
        assert field in {detail["field"] for detail in response.json["error"]["details"]}


def test_distance_from_osrm_is_the_road_route_and_is_cached(
    geo_settings_for: Callable[..., Any], plz_tsv: Path, fake: FakeGeoServer
) -> None:
    client = _with_providers(geo_settings_for, plz_tsv, fake)
    query = {"from": _random_point(), "to": "04109", "mode": "car"}
    answers = [
        client.get("/api/distance", query_string=query, headers=HEADERS).json for _ in range(2)
    ]
    assert (
        answers[0]
        == answers[1]
        == {
            "distance_km": round(ROUTE["distance"] / 1000, 2),
            "duration_min": round(ROUTE["duration"] / 60, 1),
            "mode": "car",
            "source": "osrm",
            "fallback_reason": None,
        }
    )
    [seen] = fake.hits("/route/v1/")
    lat, lon = query["from"].split(",")
    assert (
        seen.path
        == f"/route/v1/driving/{float(lon):.6f},{float(lat):.6f};{LEIPZIG[1]:.6f},{LEIPZIG[0]:.6f}"
    )
    assert seen.query == {"overview": ["false"]}
    transit = client.get(
        "/api/distance", query_string={**query, "mode": "transit"}, headers=HEADERS
    )
    assert transit.json["source"] == "geodesic"  # OSRM routes no public transport here
    assert len(fake.hits("/route/v1/")) == 1


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (429, "HTTP 429"),
        (500, "HTTP 500"),
        ("timeout", "timed out"),
        ("garbage", "HTTP 200"),
        ("no_route", "no route"),
    ],
)
def test_osrm_failure_falls_back_to_the_estimate_labelled(
    geo_settings_for: Callable[..., Any],
    plz_tsv: Path,
    fake: FakeGeoServer,
    failure: int | str,
    reason: str,
) -> None:
    client = _with_providers(geo_settings_for, plz_tsv, fake)
    query = {"from": _random_point(), "to": "04109", "mode": "car"}
    fake.fail_next(failure)
    body = client.get("/api/distance", query_string=query, headers=HEADERS).json
    assert body["source"] == "geodesic"
    assert reason in body["fallback_reason"]
    again = client.get("/api/distance", query_string=query, headers=HEADERS).json
    assert again["source"] == "osrm"  # nothing was cached from the failure


def test_distances_answer_every_pair_in_order_like_the_single_endpoint(client: Any) -> None:
    pairs = [
        {"from": "04109", "to": "01945"},
        {"from": "99994", "to": "04109"},
        {"from": "52.52,13.405", "to": "10115"},
        {"from": "04109", "to": "04109"},
    ]
    response = client.post(
        "/api/distances", json={"mode": "transit", "pairs": pairs}, headers=HEADERS
    )
    assert response.status_code == 200
    body = response.json
    assert body["mode"] == "transit" and body["source"] == "geodesic"
    results = body["results"]
    assert results[1] == {
        "distance_km": None,
        "duration_min": None,
        "error": "postal code 99994 is not known",
    }
    assert results[3] == {"distance_km": 0.0, "duration_min": 0.0, "error": None}
    for pair, result in zip(pairs, results, strict=True):
        if result["error"] is None:
            single = client.get(
                "/api/distance", query_string={**pair, "mode": "transit"}, headers=HEADERS
            ).json
            assert (result["distance_km"], result["duration_min"]) == (
                single["distance_km"],
                single["duration_min"],
            )


def test_ten_thousand_pairs_are_answered_quickly_and_one_more_is_422(client: Any) -> None:
    points = ["04109", "01945", "10115", "51.05,13.74", "48.137,11.575"]
    pairs = [{"from": random.choice(points), "to": random.choice(points)} for _ in range(10_000)]
    started = time.perf_counter()
    response = client.post("/api/distances", json={"pairs": pairs}, headers=HEADERS)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert len(response.json["results"]) == 10_000
    assert elapsed < 2.0  # target < 1 s (docs/benchmarks.md); margin for a loaded machine
    too_many = client.post("/api/distances", json={"pairs": [*pairs, pairs[0]]}, headers=HEADERS)
    assert too_many.status_code == 422
    assert too_many.json["error"]["details"][0]["field"] == "pairs"
    bad = client.post(
        "/api/distances", json={"pairs": [{"from": "x", "to": "04109"}]}, headers=HEADERS
    )
    assert bad.status_code == 422
    assert bad.json["error"]["details"][0]["field"] == "pairs.0.from"


# ---------------------------------------------------------------- locations from events


def _drain(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        for schema in SERVICES:
            connection.execute(
                sa.text(
                    f"UPDATE {schema}.outbox SET published_at = now() WHERE published_at IS NULL"
                )
            )


def _location_events(engine: sa.Engine, aggregate_id: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.text(
                    "SELECT envelope FROM geocoding_service.outbox WHERE aggregate_id = :id "
                    "ORDER BY id"
                ),
                {"id": aggregate_id},
            ).scalars()
        )


def _handle(database: Any, handler_table: Any, envelope: Envelope) -> None:
    with database.unit_of_work() as uow:
        handler_table[envelope.event_type](uow, envelope)
        uow.commit()


def _patient_event(patient_id: int, version: int, postal_code: str) -> Envelope:
    event = PATIENT_EVENTS[0 if version == 1 else 1]
    payload = {"patient_id": patient_id, "version": version, "postal_code": postal_code}
    return event.build(producer="patient_service", aggregate_id=patient_id, payload=payload)


def _therapist_event(
    therapist_id: int, version: int, street: str | None, plz: str = "04109"
) -> Envelope:
    event = THERAPIST_EVENTS[0 if version == 1 else 1]
    payload = {
        "therapist_id": therapist_id,
        "version": version,
        "postal_code": plz,
        "street": street,
        "city": "Leipzig",
    }
    return event.build(producer="therapist_service", aggregate_id=therapist_id, payload=payload)


def test_patient_is_located_at_its_plz_centroid_once_per_change_in_order(
    geo_settings_for: Callable[..., Any], client: Any, geo_engine: sa.Engine
) -> None:
    settings = geo_settings_for(GeocodingSettings)
    database = ServiceRuntime.build(settings, INFRA).database
    table = handlers(settings)
    patient_id = random.randint(100_000, 2_000_000)
    for event in (
        _patient_event(patient_id, 1, "04109"),
        _patient_event(patient_id, 2, "04109"),  # another field changed: nothing to locate
        _patient_event(patient_id, 4, "99993"),  # moved to a PLZ nobody knows
        _patient_event(patient_id, 3, "01945"),  # older, arriving late: ignored
    ):
        _handle(database, table, event)
    database.dispose()
    events = _location_events(geo_engine, f"patient-{patient_id}")
    assert [e["event_type"] for e in events] == ["location.resolved", "location.unresolved"]
    resolved, unresolved = (e["payload"] for e in events)
    assert resolved == {
        "entity_type": "patient",
        "entity_id": patient_id,
        "version": 1,
        "entity_version": 1,
        "postal_code": "04109",
        "lat": LEIPZIG[0],
        "lon": LEIPZIG[1],
        "precision": "plz",
        "source": "plz_centroid",
    }
    assert unresolved == {
        "entity_type": "patient",
        "entity_id": patient_id,
        "version": 2,
        "entity_version": 4,
        "postal_code": "99993",
        "reason": "unknown_postal_code",
    }
    assert all(e["producer"] == "geocoding_service" for e in events)


def test_reimport_that_moves_a_centroid_relocates_entities_located_there(
    geo_settings_for: Callable[..., Any], client: Any, tmp_path: Path, geo_engine: sa.Engine
) -> None:
    code = f"3{random.randint(0, 9999):04d}"
    data = tmp_path / "DE.txt"

    def import_at(lat: float, lon: float) -> None:
        data.write_text(tsv_line(code, "Irgendwo", "Sachsen-Anhalt", lat, lon) + "\n")
        imported = client.post(
            "/api/admin/plz-imports", json={"source": str(data)}, headers=HEADERS
        )
        assert imported.status_code == 200, imported.json

    import_at(52.1, 11.6)
    settings = geo_settings_for(GeocodingSettings)
    database = ServiceRuntime.build(settings, INFRA).database
    patient_id, other_id = random.randint(100_000, 2_000_000), random.randint(100_000, 2_000_000)
    _handle(database, handlers(settings), _patient_event(patient_id, 1, code))
    _handle(database, handlers(settings), _patient_event(other_id, 1, "04109"))
    database.dispose()
    import_at(52.2, 11.7)  # GeoNames corrected the places of this postal code
    import_at(52.2, 11.7)  # the same again: nothing moves
    events = [e["payload"] for e in _location_events(geo_engine, f"patient-{patient_id}")]
    assert [(e["version"], e["lat"], e["lon"], e["precision"]) for e in events] == [
        (1, 52.1, 11.6, "plz"),
        (2, 52.2, 11.7, "plz"),
    ]
    assert events[1]["entity_version"] == 1 and events[1]["postal_code"] == code
    assert len(_location_events(geo_engine, f"patient-{other_id}")) == 1


def test_therapist_address_is_geocoded_later_by_the_worker_loop(
    geo_settings_for: Callable[..., Any], plz_tsv: Path, fake: FakeGeoServer, geo_engine: sa.Engine
) -> None:
    _with_providers(geo_settings_for, plz_tsv, fake)
    settings = geo_settings_for(
        GeocodingSettings,
        nominatim_url=fake.url,
        nominatim_user_agent=USER_AGENT,
        nominatim_min_interval_seconds=0,
    )
    database = ServiceRuntime.build(settings, INFRA).database
    providers = providers_from_settings(settings)
    table = handlers(settings)
    therapist_id = random.randint(100_000, 2_000_000)
    street = f"Teststraße {uuid.uuid4().hex[:6]} 2"
    _handle(database, table, _therapist_event(therapist_id, 1, street))
    assert fake.hits("/search") == []  # the consumer never waits for Nominatim
    while service.geocode_next_address(database.unit_of_work(), providers):
        pass
    _handle(database, table, _therapist_event(therapist_id, 2, street))  # address unchanged
    _handle(database, table, _therapist_event(therapist_id, 3, None))  # street removed
    database.dispose()
    events = [e["payload"] for e in _location_events(geo_engine, f"therapist-{therapist_id}")]
    assert [(e["version"], e["precision"], e["source"]) for e in events] == [
        (1, "plz", "plz_centroid"),
        (2, "address", "nominatim"),
        (3, "plz", "plz_centroid"),
    ]
    assert (events[1]["lat"], events[1]["lon"]) == (51.3411, 12.3702)
    [seen] = fake.hits("/search")
    assert seen.query["q"] == [f"{street}, 04109 Leipzig, Deutschland"]


def test_addresses_located_before_a_geocoder_was_configured_can_be_queued(
    geo_settings_for: Callable[..., Any],
    geo_database: str,
    plz_tsv: Path,
    fake: FakeGeoServer,
    geo_engine: sa.Engine,
) -> None:
    _with_providers(geo_settings_for, plz_tsv, fake)
    without = geo_settings_for(GeocodingSettings)
    database = ServiceRuntime.build(without, INFRA).database
    therapist_id = random.randint(100_000, 2_000_000)
    _handle(
        database, handlers(without), _therapist_event(therapist_id, 1, f"Teststraße {therapist_id}")
    )
    env = {
        **os.environ,
        "DATABASE_URL": role_url(geo_database, "geocoding_service"),
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "geocoding_service.cli", "queue-addresses"]
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "NOMINATIM_URL" in refused.stderr
    env.update(NOMINATIM_URL=fake.url, NOMINATIM_USER_AGENT=USER_AGENT)
    queued = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert queued.returncode == 0, queued.stderr
    assert "therapist addresses queued" in queued.stdout
    settings = geo_settings_for(
        GeocodingSettings,
        nominatim_url=fake.url,
        nominatim_user_agent=USER_AGENT,
        nominatim_min_interval_seconds=0,
    )
    providers = providers_from_settings(settings)
    while service.geocode_next_address(database.unit_of_work(), providers):
        pass
    database.dispose()
    events = [e["payload"] for e in _location_events(geo_engine, f"therapist-{therapist_id}")]
    assert [e["precision"] for e in events] == ["plz", "address"]


def test_address_whose_answer_is_unreadable_is_retried_later_and_keeps_the_centroid(
    geo_settings_for: Callable[..., Any], plz_tsv: Path, fake: FakeGeoServer, geo_engine: sa.Engine
) -> None:
    _with_providers(geo_settings_for, plz_tsv, fake)
    settings = geo_settings_for(
        GeocodingSettings,
        nominatim_url=fake.url,
        nominatim_user_agent=USER_AGENT,
        nominatim_min_interval_seconds=0,
        nominatim_max_attempts=2,
    )
    database = ServiceRuntime.build(settings, INFRA).database
    providers = providers_from_settings(settings)
    while service.geocode_next_address(database.unit_of_work(), providers):
        pass  # addresses other tests left waiting: the next claim must be this test's
    therapist_id = random.randint(100_000, 2_000_000)
    _handle(
        database,
        handlers(settings),
        _therapist_event(therapist_id, 1, f"Teststraße {uuid.uuid4().hex[:6]}"),
    )
    fake.fail_next("garbage", "garbage")
    assert service.geocode_next_address(database.unit_of_work(), providers)

    def state() -> tuple[bool, int]:
        return _address_state(geo_engine, therapist_id)

    assert state() == (True, 1)  # waits for its retry time: not claimed again at once
    assert not _claimable(geo_engine, therapist_id)
    with geo_engine.begin() as connection:  # its retry time has come
        connection.execute(
            sa.text(
                "UPDATE geocoding_service.entity_locations SET address_retry_at = now() "
                "WHERE entity_type = 'therapist' AND entity_id = :id"
            ),
            {"id": therapist_id},
        )
    assert service.geocode_next_address(database.unit_of_work(), providers)
    database.dispose()
    assert state() == (False, 2)  # given up: the centroid stays
    events = _location_events(geo_engine, f"therapist-{therapist_id}")
    assert [e["payload"]["precision"] for e in events] == ["plz"]


def _address_state(engine: sa.Engine, therapist_id: int) -> tuple[bool, int]:
    with engine.connect() as connection:
        pending, attempts = connection.execute(
            sa.text(
                "SELECT address_pending, address_attempts "
                "FROM geocoding_service.entity_locations "
                "WHERE entity_type = 'therapist' AND entity_id = :id"
            ),
            {"id": therapist_id},
        ).one()
    return pending, attempts


def test_geocoder_outage_pauses_the_address_loop_and_charges_no_address(
    geo_settings_for: Callable[..., Any], plz_tsv: Path, fake: FakeGeoServer, geo_engine: sa.Engine
) -> None:
    from geocoding_service.worker import loops

    _with_providers(geo_settings_for, plz_tsv, fake)
    settings = geo_settings_for(
        GeocodingSettings,
        nominatim_url=fake.url,
        nominatim_user_agent=USER_AGENT,
        nominatim_min_interval_seconds=0,
        nominatim_timeout_seconds=0.5,
        nominatim_max_attempts=2,
        nominatim_backoff_seconds=0.3,
        nominatim_backoff_max_seconds=5,
    )
    runtime = ServiceRuntime.build(settings, INFRA)
    database = runtime.database
    providers = providers_from_settings(settings)
    while service.geocode_next_address(database.unit_of_work(), providers):
        pass  # addresses other tests left waiting: the next claim must be this test's
    therapist_id = random.randint(100_000, 2_000_000)
    street = f"Teststraße {uuid.uuid4().hex[:6]}"
    _handle(database, handlers(settings), _therapist_event(therapist_id, 1, street))
    fake.fail_next(503, 503, 503)  # more failures than the address has attempts
    for _ in range(3):
        with pytest.raises(service.GeocoderDown):
            service.geocode_next_address(database.unit_of_work(), providers)
        assert _address_state(geo_engine, therapist_id) == (True, 0)
        assert _claimable(geo_engine, therapist_id)  # next in line, not pushed back

    fake.retry_after = "1"
    fake.fail_next(429, 503, "timeout")  # pauses: Retry-After 1 s, then 0.6 s, then 1.2 s
    fake.requests.clear()
    stop = threading.Event()
    loop = threading.Thread(target=loops(runtime, idle_s=0.05)["addresses"], args=(stop,))
    loop.start()
    try:
        wait_until(
            lambda: len(_location_events(geo_engine, f"therapist-{therapist_id}")) == 2,
            timeout=20,
        )
    finally:
        stop.set()
        loop.join(timeout=10)
    database.dispose()
    assert _address_state(geo_engine, therapist_id) == (False, 0)
    events = _location_events(geo_engine, f"therapist-{therapist_id}")
    assert events[-1]["payload"]["precision"] == "address"
    at = [seen.at for seen in fake.hits("/search")]
    assert len(at) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(at)]
    assert gaps[0] >= 0.95  # Retry-After honoured
    assert gaps[1] >= 0.55  # doubling: the second failure in a row
    assert gaps[2] >= 1.65  # the 0.5 s timeout, then the third pause


def _claimable(engine: sa.Engine, therapist_id: int) -> bool:
    with engine.connect() as connection:
        return bool(
            connection.execute(
                sa.text(
                    "SELECT 1 FROM geocoding_service.entity_locations WHERE entity_id = :id "
                    "AND entity_type = 'therapist' AND address_pending "
                    "AND (address_retry_at IS NULL OR address_retry_at <= now())"
                ),
                {"id": therapist_id},
            ).first()
        )


def test_worker_process_geocodes_waiting_addresses_and_stops_on_sigterm(
    geo_settings_for: Callable[..., Any],
    plz_tsv: Path,
    fake: FakeGeoServer,
    geo_engine: sa.Engine,
    topic_prefix: str,
) -> None:
    from tests.integration.test_worker_process import _wait_for_line, worker_process

    _with_providers(geo_settings_for, plz_tsv, fake)
    settings = geo_settings_for(GeocodingSettings)
    database = ServiceRuntime.build(settings, INFRA).database
    therapist_id = random.randint(100_000, 2_000_000)
    street = f"Teststraße {uuid.uuid4().hex[:6]} 3"
    with_geocoder = geo_settings_for(
        GeocodingSettings, nominatim_url=fake.url, nominatim_user_agent=USER_AGENT
    )
    _handle(database, handlers(with_geocoder), _therapist_event(therapist_id, 1, street))
    database.dispose()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": topic_prefix,
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "NOMINATIM_URL": fake.url,
        "NOMINATIM_USER_AGENT": USER_AGENT,
        "LOG_JSON": "false",
        "PYTHONPATH": str(ROOT),
    }
    with worker_process("geocoding_service.worker", env) as (worker, lines):
        _wait_for_line(lines, "worker started: relay, consumer, addresses", timeout=30)
        wait_until(
            lambda: len(_location_events(geo_engine, f"therapist-{therapist_id}")) == 2, timeout=30
        )
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    assert worker.returncode == 0
    events = _location_events(geo_engine, f"therapist-{therapist_id}")
    assert events[-1]["payload"]["precision"] == "address"
