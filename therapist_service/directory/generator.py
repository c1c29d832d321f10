"""Synthetic directory folders for tests, demos and benchmarks (nothing real is written).

Real postal codes and place names come from a GeoNames postal-code file; names, streets,
phone numbers and emails are invented (emails at example.org/.com/.net, reserved for
examples). The output has the shape of the scraped 116117 directory: practices whose
members share an email in varying case, therapists without email, children-only therapists,
several methods per therapist, telephone hours in the directory's "8:00-9:00" style, one
newest dated folder with every area, an older one with some areas (older phone numbers) and
a small `urgent/` folder (newer phone numbers). The same seed gives the same files.
"""

from __future__ import annotations

import csv
import json
import random
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from therapist_service.directory.folders import URGENT

# A place with at least this many postal codes counts as a city: practices cluster there
# (assumption: about three times the density of the countryside per postal code).
CITY_MIN_POSTAL_CODES = 5
CITY_WEIGHT = 3.0

# Large-customer postal codes name companies and authorities, not places: no practices there.
# A place name is a word or two with the usual particles ("am Main", "i. OB", "(Oldenburg)").
_WORD = r"[A-ZÄÖÜ][a-zäöüß]+(?:[-/][A-ZÄÖÜ]?[a-zäöüß]+)*"
_PLACE = re.compile(rf"^{_WORD}(?:[\s-]{_WORD}|\s\(.*\)|\s[a-zäöü.]+(?:\s[a-zäöü.]+)?)*$")
_ORGANISATION = re.compile(
    r"amt\b|kasse\b|bank|versicherung|verwaltung|bibliothek|klinik|krankenhaus|gericht|agentur|"
    r"verlag|werke?\b|service|logistik|zentrum|zentrale|versand|radio|rundfunk|amazon|post\b|"
    r"druckerei|statistisch|landes|bundes|deutsche|ministerium|polizei|universit|hochschule|"
    r"kammer|direktion|stadtwerke|gruppe|handel|vertrieb|fabrik|institut|\bhaus\b|anwalt|"
    r"finanz|versorgung|sozial|brauerei|distribution",
    re.IGNORECASE,
)

FEMALE_NAMES = (
    "Anna", "Maria", "Julia", "Katharina", "Sarah", "Laura", "Lena", "Johanna", "Christina",
    "Sabine", "Claudia", "Susanne", "Petra", "Andrea", "Stefanie", "Nicole", "Birgit",
    "Kerstin", "Anja", "Miriam", "Carolin", "Franziska", "Hannah", "Lea", "Elisabeth", "Ute",
    "Monika", "Ines", "Svenja", "Theresa",
)  # fmt: skip
MALE_NAMES = (
    "Thomas", "Michael", "Andreas", "Stefan", "Christian", "Markus", "Martin", "Frank",
    "Matthias", "Jan", "Tobias", "Florian", "Daniel", "Sebastian", "Alexander", "Peter",
    "Jürgen", "Wolfgang", "Johannes", "Lukas", "Felix", "Jonas", "Philipp", "Benedikt",
)  # fmt: skip
LAST_NAMES = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
    "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder",
    "Neumann", "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange",
    "Schmitt", "Werner", "Schmitz", "Krause", "Meier", "Lehmann", "Schmid", "Schulze",
    "Maier", "Köhler", "Herrmann", "König", "Walter", "Mayer", "Huber", "Kaiser", "Fuchs",
    "Peters", "Lang", "Scholz", "Möller", "Weiß", "Jung", "Hahn", "Schubert", "Vogel",
    "Friedrich", "Keller", "Günther", "Frank", "Berger", "Winkler", "Roth", "Beck", "Lorenz",
)  # fmt: skip
STREETS = (
    "Hauptstraße", "Bahnhofstraße", "Schulstraße", "Gartenstraße", "Dorfstraße",
    "Bergstraße", "Kirchstraße", "Lindenstraße", "Waldstraße", "Am Markt", "Ringstraße",
    "Goethestraße", "Schillerstraße", "Friedrichstraße", "Mozartstraße", "Rosenweg",
    "Parkallee", "Mühlenweg", "Kastanienallee", "Marktplatz", "Poststraße", "Feldstraße",
)  # fmt: skip
TITLES = (
    ("", 50), ("Dipl.-Psych.", 30), ("Dr.", 12), ("Dr. phil.", 4), ("M.Sc.", 3), ("Prof. Dr.", 1),
)  # fmt: skip
EXTRA_LANGUAGES = (
    ("Englisch", 30), ("Französisch", 4), ("Spanisch", 4), ("Türkisch", 4), ("Russisch", 4),
    ("Polnisch", 2), ("Arabisch", 2), ("Italienisch", 2),
)  # fmt: skip
ADULT_METHODS = (
    ("Verhaltenstherapie", 0.55),
    ("Tiefenpsychologisch fundierte Psychotherapie", 0.45),
    ("Analytische Psychotherapie", 0.12),
    ("Systemische Therapie", 0.05),
)
UNKNOWN_METHODS = ("Gruppenpsychotherapie - Erwachsene", "Psychotherapeutische Sprechstunde")
PHONE_SLOTS = (
    "7:30-8:00", "8:00-8:50", "8:00-9:00", "8:30-9:00", "12:00-12:50", "12:30-13:00",
    "13:00-13:50", "14:00-14:30", "17:00-17:30", "18:00-19:00",
)  # fmt: skip
MAIL_DOMAINS = ("example.org", "example.com", "example.net")
PRACTICE_SIZES = ((1, 62), (2, 20), (3, 10), (4, 5), (5, 3))


class NoPlaceData(ValueError):
    """No usable postal-code data."""


@dataclass(frozen=True)
class Place:
    """A postal code with its place name; `city` when the place has many postal codes."""

    postal_code: str
    name: str
    city: bool


def read_places(source: str | Path) -> list[Place]:
    """Postal codes and place names from a GeoNames-style CSV (`zipcode` and `place`
    columns), GeoNames' own tab-separated `DE.txt`, or the `DE.zip` holding it; raises
    NoPlaceData."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", str(source), re.IGNORECASE):
        raise NoPlaceData(f"{source} is a URL: download it and give the file's path")
    path = Path(source)
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as archive:
                text = archive.read(_data_member(archive)).decode("utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        if lines and "zipcode" in lines[0] and "," in lines[0]:
            rows = [(r.get("zipcode") or "", r.get("place") or "") for r in csv.DictReader(lines)]
        else:  # DE.txt: country code, postal code, place name, admin names and codes, ...
            rows = [(c[1], c[2]) for c in csv.reader(lines, delimiter="\t") if len(c) > 2]
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile, StopIteration, csv.Error) as exc:
        reason = str(exc) or "no .txt file inside"
        raise NoPlaceData(f"cannot read postal-code data {path}: {reason}") from None
    places = places_from_rows(rows)
    if not places:
        raise NoPlaceData(f"{path} holds no postal codes with place names")
    return places


def _data_member(archive: zipfile.ZipFile) -> str:
    """The GeoNames data file in a zip: `DE.txt`, else the one .txt that is not a readme
    (GeoNames ships `readme.txt` next to it, as geocoding's reader also allows); raises
    StopIteration when there is none."""
    names = [
        info.filename
        for info in archive.infolist()
        if not info.is_dir()
        and info.filename.lower().endswith(".txt")
        and not info.filename.lower().rsplit("/", 1)[-1].startswith("readme")
    ]
    preferred = [name for name in names if name.rsplit("/", 1)[-1] == "DE.txt"]
    return next(iter(preferred or names))


def is_place_name(text: str) -> bool:
    """Whether a GeoNames place looks like a town, not a large customer ('HUK-Coburg')."""
    return bool(_PLACE.match(text)) and not _ORGANISATION.search(text)


def places_from_rows(rows: Iterable[tuple[str, str]]) -> list[Place]:
    """One place per 5-digit postal code (its first place that is not an organisation)."""
    names: dict[str, str] = {}
    for postal_code, place in rows:
        postal_code, place = postal_code.strip(), place.strip()
        if re.fullmatch(r"\d{5}", postal_code) and is_place_name(place):
            names.setdefault(postal_code, place)
    codes_per_name: dict[str, int] = {}
    for name in names.values():
        codes_per_name[name] = codes_per_name.get(name, 0) + 1
    return [
        Place(code, names[code], codes_per_name[names[code]] >= CITY_MIN_POSTAL_CODES)
        for code in sorted(names)
    ]


@dataclass
class GeneratedDirectory:
    """What `generate_directory` wrote."""

    therapists: int = 0
    areas: int = 0
    children_only: int = 0
    without_email: int = 0
    practices: int = 0
    shared_practices: int = 0
    files: dict[str, int] = field(default_factory=dict)  # folder name -> files written


def generate_directory(
    out: Path,
    places: Sequence[Place],
    *,
    therapists: int,
    seed: int,
    newest: date = date(2026, 1, 5),
) -> GeneratedDirectory:
    """Write `therapists` synthetic entries under `out`: `newest`/ with every area, the
    snapshot a week older with a tenth of them, `urgent/` with about one in a hundred."""
    if not places:
        raise NoPlaceData("no postal codes to place therapists in")
    rng = random.Random(seed)
    summary = GeneratedDirectory()
    areas: dict[str, list[dict[str, Any]]] = {}
    weights = [CITY_WEIGHT if place.city else 1.0 for place in places]
    ids: set[str] = set()
    while summary.therapists < therapists:
        place = rng.choices(places, weights)[0]
        size = min(_weighted(rng, PRACTICE_SIZES), therapists - summary.therapists)
        members = _practice(rng, place, size, ids, summary)
        areas.setdefault(place.postal_code, []).extend(members)
    summary.areas = len(areas)
    codes = sorted(areas)
    older = sorted(rng.sample(codes, max(1, len(codes) // 10)))
    urgent = sorted(rng.sample(codes, max(1, len(codes) // 100)))
    city_of = {place.postal_code: place.name for place in places}
    snapshots = [
        (newest.strftime("%Y%m%d"), codes, newest, None),
        ((newest - timedelta(days=7)).strftime("%Y%m%d"), older, newest - timedelta(days=7), 1),
        (URGENT, urgent, newest + timedelta(days=1), 2),
    ]
    for folder, area_codes, scraped, phone_change in snapshots:
        (out / folder).mkdir(parents=True, exist_ok=True)
        for code in area_codes:
            entries = [_with_phone_change(e, phone_change) for e in areas[code]]
            document = {
                "metadata": {
                    "postal_code": code,
                    "city": city_of[code],
                    "scraped_at": f"{scraped.isoformat()}T06:00:00Z",
                    "source": "synthetic sample (therapist_service generate-directory)",
                    "seed": seed,
                    "total": len(entries),
                },
                "therapists": entries,
            }
            text = json.dumps(document, ensure_ascii=False, indent=1)
            (out / folder / f"{code}.json").write_text(text + "\n", encoding="utf-8")
        summary.files[folder] = len(area_codes)
    return summary


def _with_phone_change(entry: dict[str, Any], change: int | None) -> dict[str, Any]:
    """Another version of an entry: the older snapshot and urgent/ differ in phone numbers."""
    if change is None or not entry["contact"]["phone"]:
        return entry
    contact = {**entry["contact"], "phone": f"{entry['contact']['phone']}{change}"}
    return {**entry, "contact": contact}


def _weighted(rng: random.Random, choices: Sequence[tuple[Any, float]]) -> Any:
    return rng.choices([value for value, _ in choices], [weight for _, weight in choices])[0]


def _practice(
    rng: random.Random, place: Place, size: int, ids: set[str], summary: GeneratedDirectory
) -> list[dict[str, Any]]:
    """The entries of one practice: one address, phone and (mostly) one email."""
    street = rng.choice(STREETS)
    house_number = f"{rng.randint(1, 180)}{rng.choice(('', '', '', 'a', 'b'))}"
    phone = f"0{rng.randint(30, 9979)} {rng.randint(100000, 9999999)}"
    fax = f"{phone[:-1]}9" if rng.random() < 0.4 else ""
    has_email = rng.random() < 0.85
    owner = rng.choice(LAST_NAMES)
    email = (
        f"praxis.{_ascii(owner)}.{rng.randint(1, 99999)}@{rng.choice(MAIL_DOMAINS)}"
        if has_email
        else ""
    )
    summary.practices += 1
    summary.shared_practices += size > 1
    members = []
    for index in range(size):
        directory_id = _unique_id(rng, ids)
        salutation = _weighted(rng, (("Frau", 70), ("Herr", 28), ("", 2)))
        first = rng.choice(MALE_NAMES if salutation == "Herr" else FEMALE_NAMES)
        last = owner if index == 0 else rng.choice(LAST_NAMES)
        methods, children_only = _methods(rng)
        summary.therapists += 1
        summary.children_only += children_only
        summary.without_email += not email
        members.append(
            {
                "id": directory_id,
                "basic_info": {
                    "salutation": salutation,
                    "title": _weighted(rng, TITLES),
                    "first_name": first,
                    "last_name": last,
                },
                "location": {
                    "street": street,
                    "house_number": house_number,
                    "postal_code": place.postal_code,
                    "city": place.name,
                },
                "contact": {"phone": phone, "email": _case_variant(email, index), "fax": fax},
                "languages": _languages(rng),
                "therapy_methods": methods,
                "telephone_hours": _telephone_hours(rng),
            }
        )
    return members


def _unique_id(rng: random.Random, ids: set[str]) -> str:
    while True:
        candidate = f"{rng.getrandbits(48):012x}"
        if candidate not in ids:
            ids.add(candidate)
            return candidate


def _ascii(name: str) -> str:
    return name.lower().replace("ä", "ae").replace("ö", "oe").replace("ü", "ue").replace("ß", "ss")


def _case_variant(email: str, index: int) -> str:
    """Members of one practice write the shared address in different case."""
    if not email:
        return email
    local, _, domain = email.partition("@")
    variants = (
        email,
        f"{local.capitalize()}@{domain}",
        email.upper(),
        f"{local.title()}@{domain.capitalize()}",
    )
    return variants[index % len(variants)]


def _methods(rng: random.Random) -> tuple[list[str], bool]:
    """The directory's method strings; whether they are for children and adolescents only."""
    if rng.random() < 0.08:
        names = rng.sample([name for name, _ in ADULT_METHODS[:2]], rng.randint(1, 2))
        return [f"{name} - Kinder und Jugendliche" for name in names], True
    adult = [name for name, share in ADULT_METHODS if rng.random() < share]
    if not adult:
        adult = [_weighted(rng, ADULT_METHODS)]
    methods = [
        f"{name} - Erwachsene"
        if name in ("Verhaltenstherapie", "Tiefenpsychologisch fundierte Psychotherapie")
        or rng.random() < 0.5
        else name
        for name in adult
    ]
    if rng.random() < 0.12:
        methods.append(f"{adult[0]} - Kinder und Jugendliche")
    if rng.random() < 0.05:
        methods.append(rng.choice(UNKNOWN_METHODS))
    return methods, False


def _languages(rng: random.Random) -> list[str]:
    extra = [name for name, percent in EXTRA_LANGUAGES if rng.random() * 100 < percent]
    return ["Deutsch", *extra]


def _telephone_hours(rng: random.Random) -> dict[str, list[str]]:
    if rng.random() < 0.2:
        return {}
    days = sorted(rng.sample(range(5), rng.randint(1, 5)))
    if rng.random() < 0.03:
        days.append(5)
    hours = {}
    for day in days:
        slots = sorted(rng.sample(PHONE_SLOTS, rng.choice((1, 1, 1, 2))), key=PHONE_SLOTS.index)
        hours[("Mo", "Di", "Mi", "Do", "Fr", "Sa")[day]] = slots
    return hours
