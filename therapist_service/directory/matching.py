"""Which existing therapist an incoming directory record is, and what the import may change
in it (business-rules.md §3). Pure: works on any objects with the therapist's attribute names."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from therapist_service.rules import DIRECTORY_FIELDS

# Every field an import writes: the directory-owned ones, the email (only into an empty
# one) and the directory id.
IMPORTED_FIELDS = (*DIRECTORY_FIELDS, "email", "directory_id")

BY_DIRECTORY_ID = "directory_id"
BY_NAME = "name"  # first name + last name + postal code
BY_NAME_CHANGE = "name_change"  # first name + postal code + street + title


class Candidate(Protocol):
    """What matching reads of an existing therapist."""

    @property
    def id(self) -> int: ...
    @property
    def directory_id(self) -> str | None: ...
    @property
    def first_name(self) -> str: ...
    @property
    def last_name(self) -> str: ...
    @property
    def postal_code(self) -> str: ...
    @property
    def street(self) -> str | None: ...
    @property
    def title(self) -> str | None: ...


C = TypeVar("C", bound=Candidate)

_SPACE_AND_PUNCTUATION = re.compile(r"[\s.\-]+")


def _words(text: str | None) -> str:
    return " ".join((text or "").casefold().split())


def _compact(text: str | None) -> str:
    """'Hauptstraße 1' and 'Hauptstr. 1' -> 'hauptstr1'; 'Dipl.-Psych.' -> 'diplpsych'."""
    folded = (text or "").casefold().replace("strasse", "str")  # casefold: ß -> ss
    return _SPACE_AND_PUNCTUATION.sub("", folded)


def name_key(first_name: str | None, last_name: str | None, postal_code: str) -> tuple[str, ...]:
    """First name + last name + postal code, case and spacing ignored."""
    return (_words(first_name), _words(last_name), postal_code)


def name_change_key(
    first_name: str | None, postal_code: str, street: str | None, title: str | None
) -> tuple[str, ...] | None:
    """First name + postal code + street + title (None without a street: too loose)."""
    if not _compact(street):
        return None
    return (_words(first_name), postal_code, _compact(street), _compact(title))


@dataclass(frozen=True)
class Match(Generic[C]):
    """An existing therapist and the key that found it."""

    therapist: C
    key: str


class CandidateIndex(Generic[C]):
    """The existing therapists an import batch may match, by the three keys in order.

    A therapist found once is claimed: no other record of the import can take it by name.
    Therapists whose directory id belongs to another record of the import (`reserved`) are
    found only by that id, so a colleague at the same address or a namesake never takes over
    their record.
    """

    def __init__(self, candidates: Iterable[C], reserved: Collection[str]) -> None:
        self._by_id: dict[str, C] = {}
        self._by_name: dict[tuple[str, ...], list[C]] = {}
        self._by_name_change: dict[tuple[str, ...], list[C]] = {}
        self._claimed: set[int] = set()
        for candidate in sorted(candidates, key=lambda c: c.id):
            if candidate.directory_id:
                self._by_id[candidate.directory_id] = candidate
                if candidate.directory_id in reserved:
                    continue
            key = name_key(candidate.first_name, candidate.last_name, candidate.postal_code)
            self._by_name.setdefault(key, []).append(candidate)
            change_key = name_change_key(
                candidate.first_name, candidate.postal_code, candidate.street, candidate.title
            )
            if change_key is not None:
                self._by_name_change.setdefault(change_key, []).append(candidate)

    def match(self, fields: Mapping[str, Any]) -> Match[C] | None:
        """The therapist one incoming record belongs to, claimed; None when new."""
        return self.match_all([fields])[0]

    def match_all(
        self,
        records: Sequence[Mapping[str, Any]],
        incoming_names: Collection[tuple[str, ...]] = (),
    ) -> list[Match[C] | None]:
        """The therapist each record belongs to (claimed; None when new), in record order.

        Matched in passes over all the records: every directory id first, then every exact
        name, only then the name-change key, so an earlier record never takes by "name
        change" a therapist a later one names exactly. A therapist whose exact key (first
        name, last name, postal code) is among the incoming names (`incoming_names` adds
        those of records outside `records`, such as the rest of their files) is never taken
        by the name-change key.
        """
        found: list[Match[C] | None] = [None] * len(records)
        for position, fields in enumerate(records):
            candidate = self._by_id.get(fields["directory_id"])
            if candidate is not None:
                found[position] = self._claim(candidate, BY_DIRECTORY_ID)
        names = set(incoming_names)
        for position, fields in enumerate(records):
            key = name_key(fields["first_name"], fields["last_name"], fields["postal_code"])
            names.add(key)
            if found[position] is None:
                candidate = self._first_unclaimed(self._by_name.get(key, ()))
                if candidate is not None:
                    found[position] = self._claim(candidate, BY_NAME)
        for position, fields in enumerate(records):
            if found[position] is not None:
                continue
            change_key = name_change_key(
                fields["first_name"], fields["postal_code"], fields["street"], fields["title"]
            )
            if change_key is None:
                continue
            candidate = self._first_unclaimed(
                c
                for c in self._by_name_change.get(change_key, ())
                if name_key(c.first_name, c.last_name, c.postal_code) not in names
            )
            if candidate is not None:
                found[position] = self._claim(candidate, BY_NAME_CHANGE)
        return found

    def _first_unclaimed(self, candidates: Iterable[C]) -> C | None:
        return next((c for c in candidates if c.id not in self._claimed), None)

    def _claim(self, candidate: C, key: str) -> Match[C]:
        self._claimed.add(candidate.id)
        return Match(candidate, key)


def directory_changes(current: Any, incoming: Mapping[str, Any]) -> dict[str, Any]:
    """The imported fields whose incoming value differs from `current`'s.

    Directory-owned fields are overwritten; the gender only when the salutation tells it
    (no salutation keeps ours); the email only fills an empty one (a non-empty email is
    never overwritten, an empty incoming one never clears ours). Staff-owned fields never
    appear.
    """
    changes = {
        name: incoming[name]
        for name in (*DIRECTORY_FIELDS, "directory_id")
        if getattr(current, name) != incoming[name]
        and not (name == "gender" and incoming["salutation"] is None)
    }
    if incoming["email"] and not (current.email or "").strip():
        changes["email"] = incoming["email"]
    return changes
