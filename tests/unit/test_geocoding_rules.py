"""Geocoding's pure parts: PLZ data formats, centroids, points, distance estimates, settings."""

from __future__ import annotations

import io
import math
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from geocoding_service.plz_data import PlzDataError, parse
from geocoding_service.rules import (
    DistancePolicy,
    Point,
    haversine_km,
    normalise_address,
    parse_point,
    postal_codes_in,
    provider_backoff_seconds,
    therapist_address,
)
from geocoding_service.settings import GeocodingSettings
from shared.devstack import ROOT

SHARED_CSV = ROOT.parent / "shared" / "data" / "zipcodes.de.csv"


def tsv_line(code: str, place: str, state: str, lat: float, lon: float, country: str = "DE") -> str:
    """One line of GeoNames' postal code format (12 tab-separated columns)."""
    fields = [country, code, place, state, "SN", "", "", "", "", str(lat), str(lon), "4"]
    return "\t".join(fields)


TSV = "\n".join(
    [
        tsv_line("04109", "Leipzig", "Sachsen", 51.3397, 12.3731),
        tsv_line("01945", "Guteborn", "Brandenburg", 51.4167, 13.9333),
        tsv_line("01945", "Hermsdorf", "Brandenburg", 51.4045, 13.8829),
        tsv_line("01945", "Grünewald", "Brandenburg", 51.4, 14.0),
        tsv_line("1010", "Wien", "Wien", 48.2, 16.37, country="AT"),
    ]
)

CSV = (
    "country_code,zipcode,place,state,state_code,province,province_code,community,"
    "community_code,latitude,longitude\n"
    'DE,04109,"Leipzig, Zentrum",Sachsen,13,Leipzig,145,Leipzig,14713,51.3397,12.3731\n'
    "DE,01945,Guteborn,Brandenburg,12,,,Oberspreewald-Lausitz,12066,51.4167,13.9333\n"
    "DE,01945,Hermsdorf,Brandenburg,12,,,Oberspreewald-Lausitz,12066,51.4045,13.8829\n"
)


def test_plz_with_several_places_gets_the_mean_of_their_coordinates() -> None:
    data = parse(TSV.encode())
    by_code = {record.postal_code: record for record in data.postal_codes}
    several = by_code["01945"]
    assert several.lat == pytest.approx((51.4167 + 51.4045 + 51.4) / 3, abs=1e-6)
    assert several.lon == pytest.approx((13.9333 + 13.8829 + 14.0) / 3, abs=1e-6)
    assert several.places == ("Grünewald", "Guteborn", "Hermsdorf")
    assert several.state == "Brandenburg"
    assert (data.format, data.rows, data.skipped_other_countries) == ("geonames tsv", 4, 1)


def test_the_same_places_in_another_order_give_the_same_centroid() -> None:
    lines = TSV.split("\n")
    assert (
        parse(TSV.encode()).postal_codes == parse("\n".join(reversed(lines)).encode()).postal_codes
    )


def test_zip_download_is_read_like_the_tsv_inside_it() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "GeoNames postal codes\tnot data")
        archive.writestr("DE.txt", TSV)
    data = parse(buffer.getvalue())
    assert data.format == "zip (geonames tsv)"
    assert data.postal_codes == parse(TSV.encode()).postal_codes


def test_zip_whose_data_file_unpacks_beyond_the_limit_is_refused() -> None:
    big = (TSV + "\n") * 200  # compresses well: a small archive, 20 kB unpacked
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("DE.txt", big)
    raw = buffer.getvalue()
    assert len(raw) < 2_000
    with pytest.raises(PlzDataError, match="unpacks to more than 10000 bytes"):
        parse(raw, max_unpacked=10_000)
    exactly = len(big.encode())
    assert parse(raw, max_unpacked=exactly).format == "zip (geonames tsv)"  # at the limit
    # a header claiming a small size: reading never goes past that claim
    central = raw.rindex(b"PK\x01\x02")
    lying = raw[: central + 24] + (100).to_bytes(4, "little") + raw[central + 28 :]
    with pytest.raises(PlzDataError, match=r"DE\.txt"):
        parse(lying, max_unpacked=10_000)


def test_csv_with_header_is_read_with_quoted_places() -> None:
    data = parse(("\ufeff" + CSV).encode())
    assert data.format == "csv"
    assert [r.postal_code for r in data.postal_codes] == ["01945", "04109"]
    assert data.postal_codes[1].places == ("Leipzig, Zentrum",)


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (TSV + "\n" + tsv_line("0410", "Kurz", "Sachsen", 51.0, 12.0), 6, "not 5 digits"),
        (TSV.replace("51.3397", "nord", 1), 1, "latitude"),
        (TSV.replace("12.3731", "200.5", 1), 1, "longitude"),
        (TSV + "\nDE\t04109\tLeipzig", 6, "expected 12 tab-separated columns, found 3"),
        (CSV + "DE,04109,Leipzig\n", 5, "expected at least 11 columns, found 3"),
        (CSV.replace("51.4045", "", 1), 4, "latitude"),
    ],
)
def test_bad_line_refuses_the_whole_file_naming_line_and_reason(
    content: str, line: int, message: str
) -> None:
    with pytest.raises(PlzDataError) as failure:
        parse(content.encode())
    assert failure.value.problems[0]["line"] == line
    assert message in str(failure.value.problems[0]["message"])
    assert str(failure.value).startswith(f"line {line}: ")


def test_a_file_that_is_no_plz_data_is_one_clear_error_without_its_content() -> None:
    secret = "root:x:0:0:root:/root:/bin/bash\nsecond line of something else\n"
    with pytest.raises(PlzDataError) as failure:
        parse(secret.encode())
    assert str(failure.value).startswith("line 1: not GeoNames postal-code data")
    assert "root" not in str(failure.value) and "root" not in str(failure.value.problems)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "holds no data"),
        (tsv_line("1010", "Wien", "Wien", 48.2, 16.37, country="AT").encode(), "no German"),
        (b"PK\x03\x04 broken", "not a readable ZIP"),
        ("Stra\xdfe".encode("latin-1"), "not UTF-8"),
    ],
)
def test_empty_foreign_broken_or_non_utf8_data_is_refused(raw: bytes, message: str) -> None:
    with pytest.raises(PlzDataError, match=message):
        parse(raw)


@pytest.mark.skipif(not SHARED_CSV.is_file(), reason=f"PLZ data not found at {SHARED_CSV}")
def test_geonames_csv_of_the_shared_data_gives_every_german_plz_once() -> None:
    data = parse(SHARED_CSV.read_bytes())
    assert data.rows == 23_297
    assert len(data.postal_codes) == 10_814
    assert all(47 < r.lat < 56 and 5 < r.lon < 16 for r in data.postal_codes)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("04109", Point(postal_code="04109")),
        ("51.34,12.37", 51.34),
        (" -33.5 , 151.2 ", -33.5),
    ],
)
def test_a_point_is_a_plz_or_lat_lon(text: str, expected: object) -> None:
    point = parse_point(text)
    if isinstance(expected, Point):
        assert point == expected
    else:
        assert point.coordinates is not None and point.coordinates.lat == expected


@pytest.mark.parametrize(
    "text", ["0410", "041090", "abc", "91,12", "51.3;12.3", "1e3,2", "x,y", "٠٤١٠٩", "51.3,\n12.3"]
)
def test_malformed_points_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_point(text)


def test_postal_codes_in_an_address_stand_alone() -> None:
    address = "Karl-Liebknecht-Str. 123456, D-04109 Leipzig (51.34012, 12.37)"
    assert postal_codes_in(address) == ["04109"]
    assert normalise_address("  Hauptstr. 1,04109   LEIPZIG. ") == "hauptstr. 1, 04109 leipzig"
    assert therapist_address(" Hauptstr. 1 ", "04109", "Leipzig") == (
        "Hauptstr. 1, 04109 Leipzig, Deutschland"
    )
    assert therapist_address("", "04109", "Leipzig") is None


def test_estimate_is_great_circle_times_detour_at_the_modes_speed() -> None:
    policy = DistancePolicy(
        detour={"car": 1.3, "transit": 1.5}, speed_kmh={"car": 60, "transit": 30}
    )
    # Leipzig -> Berlin centre: about 149 km great circle
    great_circle = haversine_km(
        np.array([51.3397]), np.array([12.3731]), np.array([52.52]), np.array([13.405])
    )
    assert great_circle[0] == pytest.approx(149.5, abs=1.0)
    km, minutes = policy.estimate(great_circle, "transit")
    assert km[0] == pytest.approx(great_circle[0] * 1.5)
    assert minutes[0] == pytest.approx(km[0] / 30 * 60)
    assert math.isnan(policy.estimate(np.array([np.nan]), "car")[0][0])


def test_geocoder_outage_pause_doubles_or_follows_retry_after_within_the_cap() -> None:
    assert [provider_backoff_seconds(n, None, 5, 60) for n in (1, 2, 3, 4, 5)] == [
        5,
        10,
        20,
        40,
        60,
    ]
    assert provider_backoff_seconds(3, 2.0, 5, 60) == 2.0  # the provider knows best
    assert provider_backoff_seconds(1, 3600.0, 5, 60) == 60  # but not for an hour


def test_nominatim_url_without_a_user_agent_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="NOMINATIM_USER_AGENT"):
        GeocodingSettings(database_url="postgresql://x@h/d", nominatim_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="http"):
        GeocodingSettings(database_url="postgresql://x@h/d", osrm_url="ftp://example.org")
    settings = GeocodingSettings(
        database_url="postgresql://x@h/d",
        nominatim_url="http://127.0.0.1:9/",
        nominatim_user_agent="placement-test/1.0 (ops@example.org)",
        detour_factor_transit=1.7,
        osrm_profile_transit="",
        osrm_url="  ",
    )
    assert settings.nominatim_url == "http://127.0.0.1:9"
    assert settings.distance_policy().detour["transit"] == 1.7
    assert settings.osrm_profiles() == {"car": "driving", "transit": None}
    assert settings.osrm_url is None  # blank: not set


@pytest.mark.parametrize("seconds", [0, 0.0004, -1])
def test_a_turn_wait_below_one_millisecond_is_refused(seconds: float) -> None:
    # PostgreSQL's lock_timeout takes whole milliseconds, and 0 means waiting forever
    with pytest.raises(ValueError, match="nominatim_max_wait_seconds"):
        GeocodingSettings(database_url="postgresql://x@h/d", nominatim_max_wait_seconds=seconds)
    assert (
        GeocodingSettings(
            database_url="postgresql://x@h/d", nominatim_max_wait_seconds=0.001
        ).nominatim_max_wait_seconds
        == 0.001
    )


def test_readme_states_the_geonames_attribution() -> None:
    assert "Postal code data © GeoNames, CC BY 4.0" in (ROOT / "README.md").read_text()
    assert "© GeoNames, CC BY 4.0" in (ROOT / "docs/services/geocoding_service.md").read_text()


def test_shared_data_is_not_in_the_project() -> None:
    """GeoNames data is loaded at run time, never committed (../shared/data/README.md)."""
    found = []
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = [d for d in subdirectories if d not in (".venv", ".git", "var")]
        found += [Path(directory) / name for name in files if name.startswith(("zipcodes", "DE."))]
    assert found == []


def test_dev_stack_takes_plz_data_from_config_else_shared_data_else_geonames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared import devstack

    monkeypatch.setenv("PLZ_DATA", "https://example.org/DE.zip")
    assert devstack.plz_source() == "https://example.org/DE.zip"
    monkeypatch.delenv("PLZ_DATA")
    expected = str(SHARED_CSV) if SHARED_CSV.is_file() else devstack.GEONAMES_DE_URL
    assert devstack.plz_source() == expected
    monkeypatch.setattr(devstack, "ROOT", Path("/nonexistent/project"))
    assert devstack.plz_source() == "https://download.geonames.org/export/zip/DE.zip"
