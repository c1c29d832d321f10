"""The 116117 directory, pure parts: parsing, methods, matching keys, folders, sample data."""

from __future__ import annotations

import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from therapist_service.directory.folders import plan_import
from therapist_service.directory.generator import (
    NoPlaceData,
    generate_directory,
    is_place_name,
    read_places,
)
from therapist_service.directory.matching import (
    BY_DIRECTORY_ID,
    BY_NAME,
    BY_NAME_CHANGE,
    CandidateIndex,
    directory_changes,
)
from therapist_service.directory.methods import adult_methods, classify_method
from therapist_service.directory.records import (
    NO_ADULT_TREATMENT,
    UNRECOGNISED_METHODS,
    EntryProblem,
    normalise_time_range,
    parse_entries,
    parse_entry,
    phone_hours,
)


def entry(**overrides: Any) -> dict[str, Any]:
    """A directory entry as the 116117 scrape writes it."""
    value: dict[str, Any] = {
        "id": "abc123",
        "basic_info": {
            "salutation": "Frau",
            "title": "Dr.",
            "first_name": " Maria ",
            "last_name": "Beispiel",
        },
        "location": {
            "street": "Hauptstraße",
            "house_number": "12a",
            "postal_code": "04109",
            "city": "Leipzig",
        },
        "contact": {"phone": "0341 1234567", "email": "  Praxis@Example.org ", "fax": ""},
        "languages": ["Deutsch", "Englisch"],
        "therapy_methods": ["Verhaltenstherapie - Erwachsene"],
        "telephone_hours": {"Mo": ["8:00-9:00"], "Do": ["12:00-12:50", "8:00-8:30"]},
    }
    value.update(overrides)
    return value


# ---------------------------------------------------------------- records


def test_entry_becomes_a_record_in_the_platforms_field_names() -> None:
    record = parse_entry(entry())
    assert record.directory_id == "abc123"
    assert record.fields == {
        "directory_id": "abc123",
        "salutation": "Frau",
        "gender": "female",
        "title": "Dr.",
        "first_name": "Maria",
        "last_name": "Beispiel",
        "street": "Hauptstraße 12a",
        "postal_code": "04109",
        "city": "Leipzig",
        "phone": "0341 1234567",
        "fax": None,
        "email": "Praxis@Example.org",
        "languages": ["Deutsch", "Englisch"],
        "therapy_methods": ["behavioural"],
        "phone_hours": {"mon": ["08:00-09:00"], "thu": ["08:00-08:30", "12:00-12:50"]},
    }


@pytest.mark.parametrize(
    ("salutation", "gender", "kept"),
    [("Herr", "male", "Herr"), ("Frau", "female", "Frau"), ("", "unspecified", None),
     ("Dr.", "unspecified", None), (None, "unspecified", None)],
)  # fmt: skip
def test_gender_follows_the_salutation(salutation: Any, gender: str, kept: str | None) -> None:
    fields = parse_entry(entry(basic_info={"salutation": salutation, "first_name": "A"})).fields
    assert (fields["gender"], fields["salutation"]) == (gender, kept)


@pytest.mark.parametrize("email", ["", "   ", None])
def test_blank_email_becomes_none(email: Any) -> None:
    contact = {"phone": "0341 1234567", "email": email}
    assert parse_entry(entry(contact=contact)).fields["email"] is None


def test_numbers_are_accepted_where_the_scrape_writes_them() -> None:
    location = {"street": "Ring", "house_number": 7, "postal_code": 1067, "city": "Dresden"}
    record = parse_entry(entry(id=4711, location=location))
    assert record.directory_id == "4711"
    assert record.fields["street"] == "Ring 7"
    assert record.fields["postal_code"] == "01067"


def test_repeated_languages_are_kept_once() -> None:
    fields = parse_entry(entry(languages=["Deutsch", "deutsch", " Englisch "])).fields
    assert fields["languages"] == ["Deutsch", "Englisch"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8:00-9:00", "08:00-09:00"), ("8.00 - 9.30 Uhr", "08:00-09:30"), ("8-9", "08:00-09:00"),
     ("12:00\u201312:50", "12:00-12:50"), ("17 bis 18", "17:00-18:00")],
)  # fmt: skip
def test_time_ranges_are_normalised_to_the_weekly_format(text: str, expected: str) -> None:
    assert normalise_time_range(text) == expected


@pytest.mark.parametrize("text", ["9:00-8:00", "8:00", "morgens", "25:00-26:00", "8:75-9:00"])
def test_malformed_time_ranges_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        normalise_time_range(text)


def test_a_long_time_range_is_refused_before_any_pattern_reads_it() -> None:
    started = time.monotonic()
    huge = "8" + " " * 1_000_000 + "x"
    for _ in range(20):
        with pytest.raises(ValueError) as raised:
            phone_hours({"Mo": [huge]})
        assert str(raised.value) == "telephone_hours.Mo: a time range is longer than 40 characters"
    with pytest.raises(EntryProblem) as problem:
        parse_entry(entry(telephone_hours={"Di": ["8" + " " * 20_000 + "x"]}))
    assert problem.value.reason == "telephone_hours.Di: a time range is longer than 40 characters"
    assert time.monotonic() - started < 2
    assert normalise_time_range("8:00      -      9:00      Uhr") == "08:00-09:00"


def test_weekdays_map_to_the_platforms_keys_in_week_order() -> None:
    hours = phone_hours({"So": ["10-11"], "Mo": ["8:00-9:00", "8:00-9:00"], "Di.": []})
    assert hours == {"mon": ["08:00-09:00"], "sun": ["10:00-11:00"]}
    with pytest.raises(ValueError, match=r"^telephone_hours: a key is not a weekday"):
        phone_hours({"Montag": ["8:00-9:00"]})


def test_children_only_entry_is_skipped_as_no_adult_treatment() -> None:
    methods = ["Verhaltenstherapie - Kinder und Jugendliche", "Psychotherapeutische Sprechstunde"]
    with pytest.raises(EntryProblem) as raised:
        parse_entry(entry(therapy_methods=methods, telephone_hours={"Mo": ["nonsense"]}))
    assert raised.value.skipped
    assert (raised.value.directory_id, raised.value.reason) == ("abc123", NO_ADULT_TREATMENT)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [({"id": None}, "id: a non-empty text or number is required"),
     ({"id": True}, "id: a non-empty text or number is required"),
     ({"basic_info": "Maria"}, "basic_info: must be an object"),
     ({"languages": "Deutsch"}, "languages: must be a list of texts"),
     ({"telephone_hours": {"Mo": ["8-7"]}}, "telephone_hours.Mo: a time range ends before"),
     ({"location": {"city": "Leip\x00zig"}}, "location.city: must not contain control"),
     ({"contact": {"fax\x00<script>": "1"}}, "contact: must not contain control"),
     ({"telephone_hours": {"Mo": ["8-9\x85"]}}, "telephone_hours.Mo.0: must not contain")],
)  # fmt: skip
def test_malformed_entries_are_errors_naming_the_field(
    overrides: dict[str, Any], reason: str
) -> None:
    with pytest.raises(EntryProblem) as raised:
        parse_entry(entry(**overrides))
    assert not raised.value.skipped
    assert raised.value.reason.startswith(reason)


@pytest.mark.parametrize("text", ["Bei\tspiel", "Bei\x85spiel", "Bei\u2028spiel\x7f"])
def test_control_characters_anywhere_make_an_entry_an_error(text: str) -> None:
    with pytest.raises(EntryProblem, match=r"^languages\.1: must not contain control"):
        parse_entry(entry(languages=["Deutsch", text]))


def test_backslashes_and_other_unusual_text_are_no_control_characters() -> None:
    fields = parse_entry(
        entry(basic_info={"first_name": 'A\\B \u2028 "Ä"', "last_name": "X"})
    ).fields
    assert fields["first_name"] == 'A\\B \u2028 "Ä"'


def test_a_file_with_broken_entries_still_yields_the_good_ones() -> None:
    parsed = parse_entries([entry(id="a"), "not an object", entry(id="b", basic_info=[]), entry()])
    assert [record.directory_id for record in parsed.records] == ["a", "abc123"]
    assert [(p.directory_id, p.reason) for p in parsed.problems] == [
        (None, "entry: must be an object"),
        ("b", "basic_info: must be an object"),
    ]


# ---------------------------------------------------------------- methods


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Verhaltenstherapie - Erwachsene", ("behavioural", "adults")),
     ("Tiefenpsychologisch fundierte Psychotherapie - Erwachsene", ("psychodynamic", "adults")),
     ("Analytische Psychotherapie", ("analytic", "adults")),
     ("Analytische Psychotherapie - Erwachsene", ("analytic", "adults")),
     ("Systemische Therapie", ("systemic", "adults")),
     ("systemische  therapie \u2013 erwachsene", ("systemic", "adults")),
     ("Verhaltenstherapie - Kinder und Jugendliche", ("behavioural", "children")),
     ("Systemische Therapie - Kinder- und Jugendliche", ("systemic", "children")),
     ("Verhaltenstherapie (Erwachsene)", ("behavioural", "adults")),
     ("Verhaltenstherapie - Jugendliche und Erwachsene", ("behavioural", "adults")),
     ("Verhaltenstherapie für Erwachsene", ("behavioural", "adults")),
     ("Verhaltenstherapie (Kinder)", ("behavioural", "children")),
     ("Analytische Psychotherapie für Jugendliche", ("analytic", "children")),
     ("Gruppenpsychotherapie - Erwachsene", None),
     ("Hypnose", None)],
)  # fmt: skip
def test_directory_method_strings_map_to_method_values(
    text: str, expected: tuple[str, str] | None
) -> None:
    assert classify_method(text) == expected


def test_an_entry_with_only_unknown_methods_is_skipped_as_unrecognised() -> None:
    with pytest.raises(EntryProblem) as raised:
        parse_entry(entry(therapy_methods=["Hypnose", "Gruppenpsychotherapie - Erwachsene"]))
    assert raised.value.skipped and raised.value.reason == UNRECOGNISED_METHODS
    fields = parse_entry(entry(therapy_methods=["Verhaltenstherapie für Erwachsene"])).fields
    assert fields["therapy_methods"] == ["behavioural"]


def test_adult_methods_come_in_catalogue_order_without_repeats() -> None:
    texts = [
        "Systemische Therapie",
        "Verhaltenstherapie - Kinder und Jugendliche",
        "Analytische Psychotherapie",
        "Analytische Psychotherapie - Erwachsene",
        "Verhaltenstherapie - Erwachsene",
        "Hypnose",
    ]
    assert adult_methods(texts) == ["behavioural", "analytic", "systemic"]


# ---------------------------------------------------------------- matching


@dataclass
class Existing:
    id: int
    first_name: str
    last_name: str
    postal_code: str
    street: str | None = "Hauptstraße 12a"
    title: str | None = "Dr."
    directory_id: str | None = None


def incoming(**overrides: Any) -> dict[str, Any]:
    return {**parse_entry(entry()).fields, **overrides}


def test_directory_id_is_the_first_key() -> None:
    index = CandidateIndex(
        [
            Existing(1, "Maria", "Beispiel", "04109"),
            Existing(2, "X", "Y", "99999", None, None, "d"),
        ],
        reserved={"d"},
    )
    found = index.match(incoming(directory_id="d"))
    assert found is not None and (found.therapist.id, found.key) == (2, BY_DIRECTORY_ID)


def test_name_and_postal_code_are_the_second_key_ignoring_case_and_spaces() -> None:
    index = CandidateIndex([Existing(1, "maria", " BEISPIEL", "04109", street=None)], reserved=())
    found = index.match(incoming())
    assert found is not None and (found.therapist.id, found.key) == (1, BY_NAME)
    assert CandidateIndex([Existing(1, "Maria", "Beispiel", "04110")], ()).match(incoming()) is None


def test_a_name_change_is_found_by_first_name_postal_code_street_and_title() -> None:
    married = Existing(7, "Maria", "Vorher", "04109", street="Hauptstr. 12 a", title="Dr.")
    found = CandidateIndex([married], reserved=()).match(incoming())
    assert found is not None and (found.therapist.id, found.key) == (7, BY_NAME_CHANGE)
    other_title = Existing(8, "Maria", "Vorher", "04109", street="Hauptstr. 12a", title=None)
    assert CandidateIndex([other_title], reserved=()).match(incoming()) is None


def test_a_therapist_is_claimed_once_and_reserved_ids_are_found_only_by_id() -> None:
    colleague = Existing(3, "Maria", "Beispiel", "04109", directory_id="other")
    assert CandidateIndex([colleague], reserved={"other"}).match(incoming()) is None
    index = CandidateIndex([Existing(4, "Maria", "Beispiel", "04109")], reserved=())
    assert index.match(incoming(directory_id="first")) is not None
    assert index.match(incoming(directory_id="second")) is None


def test_the_name_change_key_never_takes_a_therapist_a_later_record_names_exactly() -> None:
    mueller = Existing(5, "Anna", "Müller", "04109", street="Hauptstraße 12a", title="Dr.")
    schmidt = incoming(directory_id="B", first_name="Anna", last_name="Schmidt")
    exact = incoming(directory_id="A", first_name="Anna", last_name="Müller")

    found = CandidateIndex([mueller], reserved={"A", "B"}).match_all([schmidt, exact])

    assert found[0] is None
    assert found[1] is not None and (found[1].therapist.id, found[1].key) == (5, BY_NAME)
    # the exact record in a later batch of the same file: still not taken by name change
    later = CandidateIndex([mueller], reserved={"A", "B"}).match_all(
        [schmidt], incoming_names={("anna", "müller", "04109")}
    )
    assert later == [None]


@dataclass
class Stored:
    """A stored therapist's imported fields plus staff-owned ones."""

    salutation: str | None = "Frau"
    title: str | None = "Dr."
    gender: str = "female"
    first_name: str = "Maria"
    last_name: str = "Beispiel"
    street: str | None = "Hauptstraße 12a"
    postal_code: str = "04109"
    city: str | None = "Leipzig"
    phone: str | None = "0341 1234567"
    fax: str | None = None
    email: str | None = "Praxis@Example.org"
    languages: list[str] | None = None
    therapy_methods: list[str] | None = None
    phone_hours: dict[str, list[str]] | None = None
    directory_id: str | None = "abc123"
    status: str = "blocked"
    potentially_available: bool = True

    def __post_init__(self) -> None:
        self.languages = self.languages or ["Deutsch", "Englisch"]
        self.therapy_methods = self.therapy_methods or ["behavioural"]
        self.phone_hours = self.phone_hours or {
            "mon": ["08:00-09:00"],
            "thu": ["08:00-08:30", "12:00-12:50"],
        }


def test_the_same_record_changes_nothing() -> None:
    assert directory_changes(Stored(), incoming()) == {}


def test_directory_fields_are_overwritten_and_staff_fields_never() -> None:
    changes = directory_changes(Stored(city="Alt", phone="0341 7"), incoming(status="active"))
    assert changes == {"city": "Leipzig", "phone": "0341 1234567"}


def test_a_non_empty_email_is_never_overwritten_and_an_empty_one_is_filled() -> None:
    assert directory_changes(Stored(email="ours@example.org"), incoming()) == {}
    assert directory_changes(Stored(), incoming(email=None)) == {}
    assert directory_changes(Stored(email=" "), incoming()) == {"email": "Praxis@Example.org"}


def test_without_salutation_the_gender_stays() -> None:
    changes = directory_changes(Stored(), incoming(salutation=None, gender="unspecified"))
    assert changes == {"salutation": None}


# ---------------------------------------------------------------- folders


def _write(path: Path, *entries: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metadata": {}, "therapists": list(entries)}))
    return path


def test_urgent_files_come_first_then_the_newest_dated_file_of_each_area(tmp_path: Path) -> None:
    old = _write(tmp_path / "20260101" / "10115.json")
    new = _write(tmp_path / "20260108" / "10115.json")
    only_old = _write(tmp_path / "20260101" / "20095.json")
    urgent = _write(tmp_path / "urgent" / "80331.json")
    dated_urgent_area = _write(tmp_path / "20260108" / "80331.json")
    (tmp_path / "notes").mkdir()
    (tmp_path / "20261340").mkdir()  # not a date

    plan = plan_import(tmp_path)

    assert plan.files == [urgent, new, only_old]
    reasons = {path.relative_to(tmp_path).as_posix(): why for path, why in plan.passed_over}
    assert reasons == {
        old.relative_to(tmp_path).as_posix(): "20260108 is newer",
        dated_urgent_area.relative_to(tmp_path).as_posix(): "urgent/80331.json is imported instead",
        "notes": "neither a dated folder (YYYYMMDD) nor urgent/",
        "20261340": "neither a dated folder (YYYYMMDD) nor urgent/",
    }


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        plan_import(tmp_path / "missing")


# ---------------------------------------------------------------- sample data


PLZ_CSV = """country_code,zipcode,place,state,state_code,province,province_code,community,community_code,latitude,longitude
DE,04109,Leipzig,Sachsen,13,,,Leipzig,14713,51.34,12.37
DE,04109,Deutsche Post AG Niederlassung BRIEF,Sachsen,13,,,Leipzig,14713,51.34,12.37
DE,04103,Leipzig,Sachsen,13,,,Leipzig,14713,51.34,12.38
DE,10875,HUK-Coburg,Baden-Württemberg,01,,,Stuttgart,08111,48.8,9.2
DE,37073,Göttingen,Niedersachsen,03,,,Göttingen,03159,51.53,9.93
DE,86868,Mittelneufnach,Bayern,09,,,Augsburg,09772,48.17,10.59
"""  # noqa: E501


@pytest.fixture
def plz_csv(tmp_path: Path) -> Path:
    path = tmp_path / "zipcodes.csv"
    path.write_text(PLZ_CSV, encoding="utf-8")
    return path


def test_places_come_from_geonames_csv_and_tab_separated_files(
    plz_csv: Path, tmp_path: Path
) -> None:
    places = read_places(plz_csv)
    assert [(p.postal_code, p.name) for p in places] == [
        ("04103", "Leipzig"),
        ("04109", "Leipzig"),
        ("37073", "Göttingen"),
        ("86868", "Mittelneufnach"),
    ]
    tab = tmp_path / "DE.txt"
    tab.write_text("DE\t37073\tGöttingen\tNiedersachsen\tNI\t\t\t\t\t51.53\t9.93\t4\n")
    assert [(p.postal_code, p.name) for p in read_places(tab)] == [("37073", "Göttingen")]
    with zipfile.ZipFile(tmp_path / "DE.zip", "w") as archive:
        archive.write(tab, "DE.txt")
        archive.writestr("readme.md", "GeoNames")
    assert [p.postal_code for p in read_places(tmp_path / "DE.zip")] == ["37073"]
    # GeoNames' own zip: readme.txt first
    with zipfile.ZipFile(tmp_path / "geonames.zip", "w") as archive:
        archive.writestr("readme.txt", "GeoNames postal codes\tsee DE.txt\tfor data\n")
        archive.write(tab, "DE.txt")
    assert [p.postal_code for p in read_places(tmp_path / "geonames.zip")] == ["37073"]


@pytest.mark.parametrize(
    ("name", "is_place"),
    [("Freiburg im Breisgau", True), ("Lindern (Oldenburg)", True), ("Eislingen/Fils", True),
     ("Kassel", True), ("HUK-Coburg", False), ("Finanzamt Dresden - Nord", False),
     ("Techniker Krankenkasse", False), ("Commerzbank AG", False)],
)  # fmt: skip
def test_large_customer_postal_codes_are_not_places(name: str, is_place: bool) -> None:
    assert is_place_name(name) is is_place


def test_missing_or_empty_postal_code_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NoPlaceData, match="cannot read postal-code data"):
        read_places(tmp_path / "absent.csv")
    with pytest.raises(NoPlaceData, match="is a URL: download it"):
        read_places("https://download.geonames.org/export/zip/DE.zip")
    empty = tmp_path / "empty.csv"
    empty.write_text(PLZ_CSV.splitlines()[0] + "\n")
    with pytest.raises(NoPlaceData, match="holds no postal codes"):
        read_places(empty)


def test_generated_directory_is_realistic_and_the_same_for_the_same_seed(
    plz_csv: Path, tmp_path: Path
) -> None:
    places = read_places(plz_csv)
    summary = generate_directory(tmp_path / "a", places, therapists=300, seed=7)
    generate_directory(tmp_path / "b", places, therapists=300, seed=7)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.json"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.json"))
    assert files_a == files_b
    assert all(
        (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files_a
    )

    assert summary.therapists == 300
    assert set(summary.files) == {"20260105", "20251229", "urgent"}
    newest = [json.loads(p.read_text()) for p in (tmp_path / "a" / "20260105").glob("*.json")]
    entries = [e for document in newest for e in document["therapists"]]
    assert len(entries) == 300 and len({e["id"] for e in entries}) == 300
    assert {e["location"]["postal_code"] for e in entries} <= {p.postal_code for p in places}
    parsed = parse_entries(entries)
    skipped = [p for p in parsed.problems if p.skipped]
    assert len(skipped) == summary.children_only > 0
    assert len(parsed.records) + len(skipped) == 300  # nothing malformed
    emails = [e["contact"]["email"] for e in entries if e["contact"]["email"]]
    assert len(emails) == 300 - summary.without_email > 0
    assert len({e.lower() for e in emails}) < len(set(emails))  # shared, in varying case
    assert any(len(r.fields["therapy_methods"]) > 1 for r in parsed.records)
    assert any(r.fields["phone_hours"] for r in parsed.records)


def test_other_seeds_give_other_directories(plz_csv: Path, tmp_path: Path) -> None:
    places = read_places(plz_csv)
    generate_directory(tmp_path / "a", places, therapists=20, seed=1)
    generate_directory(tmp_path / "b", places, therapists=20, seed=2)
    ids = [
        {e["id"] for p in (tmp_path / run / "20260105").glob("*.json")
         for e in json.loads(p.read_text())["therapists"]}
        for run in ("a", "b")
    ]  # fmt: skip
    assert ids[0] != ids[1]
