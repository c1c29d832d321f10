"""JSON market files (input of the CLI) and result documents: parsing with field-named errors."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

from .model import (
    GENDERS,
    MAX_HISTORY_ENTRIES,
    METHODS,
    TRAVEL_MODES,
    BundleConfig,
    BundleResult,
    HistoryEntry,
    Id,
    Search,
    Therapist,
)
from .weekly import WeeklyFormatError, validate_weekly


class MarketError(ValueError):
    """Invalid market input; the message starts with the offending field."""


@dataclass(frozen=True)
class Market:
    """A parsed market: the day, the configuration and the participants of one run."""

    today: date
    config: BundleConfig
    searches: list[Search] = field(default_factory=list)
    therapists: list[Therapist] = field(default_factory=list)


_MISSING = object()


def _get(obj: Mapping[str, Any], key: str, where: str, required: bool = False) -> Any:
    if key not in obj:
        if required:
            raise MarketError(f"{where}.{key}: required field is missing")
        return _MISSING
    return obj[key]


def _number(value: Any, where: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MarketError(f"{where}: must be a number")
    if lo is not None and hi is not None and not lo <= value <= hi:
        raise MarketError(f"{where}: must be between {lo:g} and {hi:g}")
    if lo is not None and value < lo:
        raise MarketError(f"{where}: must be at least {lo:g}")
    return float(value)


def _integer(value: Any, where: str, lo: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MarketError(f"{where}: must be an integer")
    if lo is not None and value < lo:
        raise MarketError(f"{where}: must be at least {lo}")
    return value


def _ident(value: Any, where: str) -> Id:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise MarketError(f"{where}: must be a non-empty string or an integer")
    return value


def _choice(value: Any, where: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise MarketError(f"{where}: must be one of {', '.join(allowed)}")
    return value


def _optional(value: Any, convert: Callable[[Any], Any], default: Any = None) -> Any:
    return default if value is _MISSING or value is None else convert(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise MarketError(f"{where}: must be true or false")
    return value


def _date(value: Any, where: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise MarketError(f"{where}: must be a date YYYY-MM-DD") from None


def _timestamp(value: Any, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise MarketError(f"{where}: must be an ISO-8601 timestamp") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _weekly(value: Any, where: str) -> dict[str, list[str]] | None:
    if value is _MISSING or value is None:
        return None
    try:
        validate_weekly(value)
    except WeeklyFormatError as exc:
        raise MarketError(f"{where}: {exc}") from None
    return {day: list(intervals) for day, intervals in value.items()}


def _str_list(value: Any, where: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    if value is _MISSING or value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MarketError(f"{where}: must be a list of strings")
    for v in value:
        if allowed is not None and v not in allowed:
            raise MarketError(f"{where}: {v!r} is not one of {', '.join(allowed)}")
    return tuple(value)


def _lat_lon(obj: Mapping[str, Any], where: str) -> tuple[float | None, float | None]:
    lat = _optional(_get(obj, "lat", where), lambda v: _number(v, f"{where}.lat", -90, 90))
    lon = _optional(_get(obj, "lon", where), lambda v: _number(v, f"{where}.lon", -180, 180))
    # Half a coordinate is no location: distance checks must fail closed.
    if lat is None or lon is None:
        return None, None
    return lat, lon


def parse_config(raw: Any) -> BundleConfig:
    """Configuration object; missing keys take the documented defaults (docs/business-rules.md
    §11)."""
    if raw is _MISSING or raw is None:
        return BundleConfig()
    if not isinstance(raw, Mapping):
        raise MarketError("config: must be an object")
    default = BundleConfig()
    lo = _optional(
        _get(raw, "bundle_min_size", "config"),
        lambda v: _integer(v, "config.bundle_min_size", 1),
        default.bundle_min_size,
    )
    hi = _optional(
        _get(raw, "bundle_max_size", "config"),
        lambda v: _integer(v, "config.bundle_max_size", 1),
        default.bundle_max_size,
    )
    if hi < lo:
        raise MarketError("config.bundle_max_size: must not be below config.bundle_min_size")
    per_patient = _optional(
        _get(raw, "max_inquiries_per_patient", "config"),
        lambda v: _integer(v, "config.max_inquiries_per_patient", 0),
        default.max_inquiries_per_patient,
    )
    detour = dict(default.detour_factor)
    raw_detour = _get(raw, "detour_factor", "config")
    if raw_detour is not _MISSING and raw_detour is not None:
        if not isinstance(raw_detour, Mapping):
            raise MarketError("config.detour_factor: must be an object {car, transit}")
        for mode, factor in raw_detour.items():
            _choice(mode, f"config.detour_factor.{mode}", TRAVEL_MODES)
            detour[mode] = _number(factor, f"config.detour_factor.{mode}", 1e-6)
    use_history = _optional(
        _get(raw, "use_answer_history", "config"),
        lambda v: _bool(v, "config.use_answer_history"),
        default.use_answer_history,
    )
    return BundleConfig(lo, hi, per_patient, detour, use_answer_history=use_history)


def parse_search(raw: Any, where: str, config: BundleConfig) -> Search:
    """One search object of a market."""
    if not isinstance(raw, Mapping):
        raise MarketError(f"{where}: must be an object")
    sid = _ident(_get(raw, "search_id", where, required=True), f"{where}.search_id")
    lat, lon = _lat_lon(raw, where)
    pref_gender = _optional(
        _get(raw, "preferred_therapist_gender", where),
        lambda v: _choice(v, f"{where}.preferred_therapist_gender", (*GENDERS, "any")),
    )
    method = _optional(
        _get(raw, "preferred_therapy_method", where),
        lambda v: _choice(v, f"{where}.preferred_therapy_method", ("any", *METHODS)),
    )
    diagnosis = _optional(_get(raw, "diagnosis", where), lambda v: _text(v, f"{where}.diagnosis"))
    excluded = _get(raw, "excluded_therapist_ids", where)
    if excluded is _MISSING or excluded is None:
        excluded = []
    if not isinstance(excluded, list):
        raise MarketError(f"{where}.excluded_therapist_ids: must be a list of therapist ids")
    return Search(
        search_id=sid,
        patient_id=_optional(
            _get(raw, "patient_id", where), lambda v: _ident(v, f"{where}.patient_id"), sid
        ),
        lat=lat,
        lon=lon,
        max_travel_km=_number(
            _get(raw, "max_travel_km", where, required=True), f"{where}.max_travel_km", 0.0
        ),
        travel_mode=_optional(
            _get(raw, "travel_mode", where),
            lambda v: _choice(v, f"{where}.travel_mode", TRAVEL_MODES),
            "car",
        ),
        waiting_since=_timestamp(
            _get(raw, "waiting_since", where, required=True), f"{where}.waiting_since"
        ),
        contact_budget=_optional(
            _get(raw, "contact_budget", where),
            lambda v: _integer(v, f"{where}.contact_budget", 0),
            config.max_inquiries_per_patient,
        ),
        gender=_optional(
            _get(raw, "gender", where),
            lambda v: _choice(v, f"{where}.gender", GENDERS),
            "unspecified",
        ),
        birth_date=_optional(
            _get(raw, "birth_date", where), lambda v: _date(v, f"{where}.birth_date")
        ),
        diagnosis=diagnosis,
        preferred_therapy_method=None if method == "any" else method,
        preferred_therapist_gender=None if pref_gender == "any" else pref_gender,
        open_to_group_therapy=_optional(
            _get(raw, "open_to_group_therapy", where),
            lambda v: _bool(v, f"{where}.open_to_group_therapy"),
            False,
        ),
        availability=_weekly(_get(raw, "availability", where), f"{where}.availability"),
        excluded_therapist_ids=frozenset(
            _ident(v, f"{where}.excluded_therapist_ids[{i}]") for i, v in enumerate(excluded)
        ),
    )


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise MarketError(f"{where}: must be a string")
    return value


def _contactable(raw: Mapping[str, Any], where: str) -> tuple[bool, str | None]:
    """contactable is a bool (missing or null = true); the reason is an optional text."""
    flag = _optional(
        _get(raw, "contactable", where), lambda v: _bool(v, f"{where}.contactable"), True
    )
    for key in ("not_contactable_reason", "contactable_reason"):
        reason = _optional(_get(raw, key, where), partial(_text, where=f"{where}.{key}"))
        if reason is not None:
            return flag, reason
    return flag, None


def parse_history_entry(raw: Any, where: str) -> HistoryEntry:
    """One answer-history entry: an earlier inquiry and its answer's outcome counts."""
    if not isinstance(raw, Mapping):
        raise MarketError(f"{where}: must be an object")
    sent_on = _date(_get(raw, "sent_on", where, required=True), f"{where}.sent_on")
    answered_on = _optional(
        _get(raw, "answered_on", where), lambda v: _date(v, f"{where}.answered_on")
    )
    if answered_on is not None and answered_on < sent_on:
        raise MarketError(f"{where}.answered_on: must not be before sent_on")
    patients = _integer(_get(raw, "patients", where, required=True), f"{where}.patients", 1)
    counts = {
        key: _optional(_get(raw, key, where), partial(_integer, where=f"{where}.{key}", lo=0), 0)
        for key in ("accepted", "rejected_capacity", "rejected_other")
    }
    if sum(counts.values()) > patients:
        raise MarketError(
            f"{where}.patients: accepted + rejected_capacity + rejected_other must not exceed it"
        )
    return HistoryEntry(sent_on, answered_on, patients, **counts)


def parse_answer_history(raw: Any, where: str) -> tuple[HistoryEntry, ...]:
    """A therapist's answer history (missing or null: none), returned newest first."""
    if raw is _MISSING or raw is None:
        return ()
    if not isinstance(raw, list):
        raise MarketError(f"{where}: must be a list of history entries")
    if len(raw) > MAX_HISTORY_ENTRIES:
        raise MarketError(f"{where}: must have at most {MAX_HISTORY_ENTRIES} entries")
    entries = [parse_history_entry(e, f"{where}[{i}]") for i, e in enumerate(raw)]
    # Stable: entries sent on the same day keep their given order.
    return tuple(sorted(entries, key=lambda e: e.sent_on, reverse=True))


def parse_therapist(raw: Any, where: str) -> Therapist:
    """One therapist object of a market."""
    if not isinstance(raw, Mapping):
        raise MarketError(f"{where}: must be an object")
    tid = _ident(_get(raw, "therapist_id", where, required=True), f"{where}.therapist_id")
    lat, lon = _lat_lon(raw, where)
    age_min = _optional(
        _get(raw, "patient_age_min", where), lambda v: _integer(v, f"{where}.patient_age_min", 0)
    )
    age_max = _optional(
        _get(raw, "patient_age_max", where), lambda v: _integer(v, f"{where}.patient_age_max", 0)
    )
    if age_min is not None and age_max is not None and age_max < age_min:
        raise MarketError(f"{where}.patient_age_max: must not be below patient_age_min")
    pref_gender = _optional(
        _get(raw, "preferred_patient_gender", where),
        lambda v: _choice(v, f"{where}.preferred_patient_gender", (*GENDERS, "any")),
    )
    practice = _optional(
        _get(raw, "practice_key", where), lambda v: str(_ident(v, f"{where}.practice_key"))
    )
    contactable, reason = _contactable(raw, where)
    return Therapist(
        therapist_id=tid,
        lat=lat,
        lon=lon,
        practice_key=practice,
        gender=_optional(
            _get(raw, "gender", where),
            lambda v: _choice(v, f"{where}.gender", GENDERS),
            "unspecified",
        ),
        therapy_methods=_str_list(
            _get(raw, "therapy_methods", where), f"{where}.therapy_methods", ("any", *METHODS)
        ),
        patient_age_min=age_min,
        patient_age_max=age_max,
        preferred_patient_gender=None if pref_gender == "any" else pref_gender,
        preferred_diagnoses=_str_list(
            _get(raw, "preferred_diagnoses", where), f"{where}.preferred_diagnoses"
        ),
        prefers_group_therapy=_optional(
            _get(raw, "prefers_group_therapy", where),
            lambda v: _bool(v, f"{where}.prefers_group_therapy"),
            False,
        ),
        working_hours=_weekly(_get(raw, "working_hours", where), f"{where}.working_hours"),
        contactable=contactable,
        not_contactable_reason=reason,
        potentially_available=_optional(
            _get(raw, "potentially_available", where),
            lambda v: _bool(v, f"{where}.potentially_available"),
            False,
        ),
        answer_history=parse_answer_history(
            _get(raw, "answer_history", where), f"{where}.answer_history"
        ),
    )


def parse_market(raw: Any) -> Market:
    """A whole market document; raises MarketError naming the first invalid field."""
    if not isinstance(raw, Mapping):
        raise MarketError("market: must be a JSON object")
    today = _date(_get(raw, "today", "market", required=True), "today")
    config = parse_config(_get(raw, "config", "market"))
    searches_raw = _get(raw, "searches", "market", required=True)
    therapists_raw = _get(raw, "therapists", "market", required=True)
    if not isinstance(searches_raw, list):
        raise MarketError("searches: must be a list")
    if not isinstance(therapists_raw, list):
        raise MarketError("therapists: must be a list")
    searches = [parse_search(s, f"searches[{i}]", config) for i, s in enumerate(searches_raw)]
    therapists = [parse_therapist(t, f"therapists[{i}]") for i, t in enumerate(therapists_raw)]
    _unique([s.search_id for s in searches], "searches", "search_id")
    _unique([t.therapist_id for t in therapists], "therapists", "therapist_id")
    return Market(today, config, searches, therapists)


def _unique(ids: list[Id], where: str, key: str) -> None:
    seen: set[Id] = set()
    for i, value in enumerate(ids):
        if value in seen:
            raise MarketError(f"{where}[{i}].{key}: duplicate id {value!r}")
        seen.add(value)


def result_document(result: BundleResult) -> dict[str, Any]:
    """The RESULT.json document of the CLI contract."""
    return {
        "strategy": result.strategy.value,
        "inquiries": [
            {
                "therapist_id": inquiry.therapist_id,
                "practice_key": inquiry.practice_key,
                "search_ids": inquiry.search_ids,
                "details": [
                    {
                        "search_id": fit.search_id,
                        "position": fit.position,
                        "distance_km": fit.distance_km,
                        "overlap_hours": fit.overlap_hours,
                        "waiting_days": fit.waiting_days,
                    }
                    for fit in inquiry.patients
                ],
            }
            for inquiry in result.inquiries
        ],
        "left_out": [{"search_id": x.search_id, "reason": x.reason} for x in result.left_out],
        "therapists_without_inquiry": [
            {"therapist_id": x.therapist_id, "reason": x.reason}
            for x in result.therapists_without_inquiry
        ],
    }
