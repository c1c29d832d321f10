"""One 116117 directory file -> records in the platform's field names. Pure: no I/O.

An entry looks like `{"id", "basic_info": {"salutation", "title", "first_name",
"last_name"}, "location": {"street", "house_number", "postal_code", "city"}, "contact":
{"phone", "email", "fax"}, "languages": [...], "therapy_methods": [...],
"telephone_hours": {"Mo": ["8:00-9:00"], ...}}`. Parsing normalises what the directory
writes loosely (street + house number, German weekdays, "8:00" times, blank emails); the
schema of the therapist record (`TherapistCreate`) then decides whether the values are valid.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.text import CONTROL, control_characters
from shared.weekly import WEEKDAYS, parse_time_range
from therapist_service.directory.methods import DASHES, adult_methods, any_recognised
from therapist_service.rules import gender_from_salutation

NO_ADULT_TREATMENT = "no_adult_treatment"
UNRECOGNISED_METHODS = "unrecognised_methods"
DUPLICATE_DIRECTORY_ID = "duplicate_directory_id"

# The directory's weekday keys ("Mo", "Di", ...); the platform's own keys are accepted too
WEEKDAY_KEYS = {
    **dict(zip(("mo", "di", "mi", "do", "fr", "sa", "so"), WEEKDAYS, strict=True)),
    **{day: day for day in WEEKDAYS},
}
# ... and back, to name a day in a reason the way the directory writes it
DIRECTORY_DAYS = dict(zip(WEEKDAYS, ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So"), strict=True))
SALUTATIONS = ("Herr", "Frau")
# The fields of an entry (by parent; None: the top level), to name one in a reason
_ENTRY_FIELDS: dict[str | None, tuple[str, ...]] = {
    None: ("id", "basic_info", "location", "contact", "languages", "therapy_methods",
           "telephone_hours"),
    "basic_info": ("salutation", "title", "first_name", "last_name"),
    "location": ("street", "house_number", "postal_code", "city"),
    "contact": ("phone", "email", "fax"),
}  # fmt: skip
_LISTS = ("languages", "therapy_methods", *DIRECTORY_DAYS.values())
# The longest time range read ("08:00 - 09:00 Uhr" with room to spare); longer text is
# refused before any pattern looks at it
MAX_TIME_RANGE_LENGTH = 40

_MAYBE_CONTROL = re.compile(r"[\\\x7f-\x9f]")
_RANGE_SEPARATOR = re.compile(r"\s*(?:-|\bbis\b)\s*")
_TIME = re.compile(r"^(\d{1,2})(?:[:.](\d{2}))?$")


class EntryProblem(ValueError):
    """An entry that is not imported: skipped by a rule, or an error in its data."""

    def __init__(self, directory_id: str | None, reason: str, *, skipped: bool = False) -> None:
        super().__init__(reason)
        self.directory_id = directory_id
        self.reason = reason
        self.skipped = skipped


@dataclass(frozen=True)
class DirectoryRecord:
    """One directory entry in the platform's field names (not yet checked by the schema)."""

    directory_id: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class SourceFile:
    """One directory file to import: its name (None for a request body) and its entries,
    or why it could not be read."""

    name: str | None
    entries: Sequence[Any] = ()
    unreadable: str | None = None


@dataclass
class ParsedEntries:
    """What parsing a file's entries gave: records to import, skipped ones, broken ones."""

    records: list[DirectoryRecord] = field(default_factory=list)
    problems: list[EntryProblem] = field(default_factory=list)


def parse_entries(entries: Iterable[Any]) -> ParsedEntries:
    """Every entry of a file parsed; problems are collected, never raised."""
    parsed = ParsedEntries()
    for entry in entries:
        try:
            parsed.records.append(parse_entry(entry))
        except EntryProblem as problem:
            parsed.problems.append(problem)
    return parsed


def parse_entry(entry: Any) -> DirectoryRecord:
    """One entry -> a record; raises `EntryProblem` (skipped for children-only treatment)."""
    if not isinstance(entry, Mapping):
        raise EntryProblem(None, "entry: must be an object")
    directory_id = _directory_id(entry.get("id"))
    bad_text = next(_control_characters(entry), None)
    if bad_text is not None:
        raise EntryProblem(directory_id, f"{bad_text}: must not contain control characters")
    try:
        return DirectoryRecord(directory_id, _fields(entry, directory_id))
    except EntryProblem:
        raise
    except ValueError as exc:
        raise EntryProblem(directory_id, str(exc)) from None


def _fields(entry: Mapping[str, Any], directory_id: str) -> dict[str, Any]:
    texts = _texts(entry, "therapy_methods")
    methods = adult_methods(texts)
    if not methods:
        # methods the mapping does not know are no proof of children-only treatment
        unknown = texts and not any_recognised(texts)
        reason = UNRECOGNISED_METHODS if unknown else NO_ADULT_TREATMENT
        raise EntryProblem(directory_id, reason, skipped=True)
    basic = _object(entry, "basic_info")
    location = _object(entry, "location")
    contact = _object(entry, "contact")
    salutation = _text(basic, "basic_info", "salutation")
    salutation = next(
        (s for s in SALUTATIONS if s.casefold() == (salutation or "").casefold()), None
    )
    street = " ".join(
        part
        for part in (
            _text(location, "location", "street"),
            _text(location, "location", "house_number"),
        )
        if part
    )
    return {
        "directory_id": directory_id,
        "salutation": salutation,
        "gender": gender_from_salutation(salutation),
        "title": _text(basic, "basic_info", "title"),
        "first_name": _text(basic, "basic_info", "first_name"),
        "last_name": _text(basic, "basic_info", "last_name"),
        "street": street or None,
        "postal_code": _postal_code(location.get("postal_code")),
        "city": _text(location, "location", "city"),
        "phone": _text(contact, "contact", "phone"),
        "fax": _text(contact, "contact", "fax"),
        "email": _text(contact, "contact", "email"),
        "languages": _distinct(_texts(entry, "languages")),
        "therapy_methods": methods,
        "phone_hours": phone_hours(entry.get("telephone_hours")),
    }


def _directory_id(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip() and not CONTROL.search(value):
        return value.strip()
    raise EntryProblem(None, "id: a non-empty text or number is required")


def _control_characters(entry: Mapping[str, Any]) -> Iterator[str]:
    """The fields of an entry holding a control character (`shared.text`'s rule), each named
    by its known part only: a reason never quotes an input key."""
    # fast path: serialised, a C0 control appears only escaped (after a backslash) and a C1
    # control as itself; an entry with neither needs no walk
    if not _MAYBE_CONTROL.search(json.dumps(entry, ensure_ascii=False, default=str)):
        return
    for path, _ in control_characters(entry):
        yield _known_path(path)


def _known_path(path: str) -> str:
    """'location.city' as is; 'contact.x\x00y' -> 'contact'; 'telephone_hours.Mo.0' as is."""
    known: list[str] = []
    for part in path.split(".") if path else []:
        parent = known[-1] if known else None
        if part.isascii() and part.isdigit() and parent in _LISTS:
            known.append(part)
        elif parent == "telephone_hours" and part.strip().rstrip(".").casefold() in WEEKDAY_KEYS:
            known.append(DIRECTORY_DAYS[WEEKDAY_KEYS[part.strip().rstrip(".").casefold()]])
        elif part in _ENTRY_FIELDS.get(parent, ()):
            known.append(part)
        else:
            break
    return ".".join(known) or "entry"


def _object(entry: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = entry.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: must be an object")
    return value


def _text(parent: Mapping[str, Any], path: str, key: str) -> str | None:
    """A trimmed text (numbers as text: house numbers); blank -> None."""
    value = parent.get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"{path}.{key}: must be text")
    return value.strip() or None


def _texts(entry: Mapping[str, Any], key: str) -> list[str]:
    value = entry.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{key}: must be a list of texts")
    return [item.strip() for item in value if item.strip()]


def _distinct(values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    kept = []
    for value in values:
        if value.casefold() not in seen:
            seen.add(value.casefold())
            kept.append(value)
    return kept


def _postal_code(value: Any) -> Any:
    """'01067' as given; 1067 (a number that lost its leading zero) -> '01067'."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 99999:
        return f"{value:05d}"
    return value.strip() if isinstance(value, str) else value


def phone_hours(value: Any) -> dict[str, list[str]]:
    """`{"Mo": ["8:00-9:00"]}` -> `{"mon": ["08:00-09:00"]}` (days in week order, ranges
    sorted, repeats dropped); raises ValueError naming the day of a malformed range."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError("telephone_hours: must be an object of weekdays")
    days: dict[str, list[str]] = {}
    for key, ranges in value.items():
        day = WEEKDAY_KEYS.get(str(key).strip().rstrip(".").casefold())
        if day is None:
            raise ValueError("telephone_hours: a key is not a weekday (Mo, Di, Mi, Do, Fr, Sa, So)")
        if isinstance(ranges, str):
            ranges = [ranges]
        if not isinstance(ranges, list) or not all(isinstance(item, str) for item in ranges):
            raise ValueError(
                f"telephone_hours.{DIRECTORY_DAYS[day]}: must be a list of time ranges"
            )
        try:
            normalised = [normalise_time_range(item) for item in ranges if item.strip()]
        except ValueError as exc:
            raise ValueError(f"telephone_hours.{DIRECTORY_DAYS[day]}: {exc}") from None
        days.setdefault(day, []).extend(normalised)
    return {day: sorted(set(days[day]), key=parse_time_range) for day in WEEKDAYS if days.get(day)}


def normalise_time_range(text: str) -> str:
    """'8:00-9:00', '8.00 - 9.00 Uhr', '8-9' -> '08:00-09:00'; ValueError when malformed
    (the reason never quotes the text)."""
    if len(text) > MAX_TIME_RANGE_LENGTH:
        raise ValueError(f"a time range is longer than {MAX_TIME_RANGE_LENGTH} characters")
    # whitespace collapsed first: the separator pattern then meets at most single spaces
    cleaned = " ".join(text.translate(DASHES).casefold().replace("uhr", " ").split())
    parts = _RANGE_SEPARATOR.split(cleaned)
    if len(parts) != 2:
        raise ValueError(_NOT_A_TIME_RANGE)
    start, end = (_time(part) for part in parts)
    if start >= end:
        raise ValueError("a time range ends before it starts")
    return f"{start}-{end}"


_NOT_A_TIME_RANGE = "not a time range like '8:00-9:00'"


def _time(part: str) -> str:
    found = _TIME.match(part.strip())
    if not found or int(found[2] or 0) >= 60:
        raise ValueError(_NOT_A_TIME_RANGE)
    hours, minutes = int(found[1]), int(found[2] or 0)
    if hours * 60 + minutes > 24 * 60:
        raise ValueError(_NOT_A_TIME_RANGE)
    return f"{hours:02d}:{minutes:02d}"
