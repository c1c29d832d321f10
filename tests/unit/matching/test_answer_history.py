"""Answer history in the bundler: the market contract, the openness score and its effect."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from matching_service.bundling import BundleConfig, Search, Therapist, propose_bundles
from matching_service.bundling.__main__ import main as cli_main
from matching_service.bundling.market_io import MarketError, parse_market
from matching_service.bundling.model import HistoryEntry
from matching_service.bundling.openness import openness, openness_level

TODAY = date(2026, 3, 1)
ONE_BUNDLE = BundleConfig(bundle_min_size=2, bundle_max_size=2, max_inquiries_per_patient=1)


def _market(**therapist: Any) -> dict:
    return {
        "today": TODAY.isoformat(),
        "searches": [],
        "therapists": [{"therapist_id": "t1", "lat": 52.5, "lon": 13.4, **therapist}],
    }


def _entry(**overrides: Any) -> dict:
    return {"sent_on": "2026-02-01", "answered_on": "2026-02-03", "patients": 3, **overrides}


def test_old_markets_without_history_stay_valid() -> None:
    therapist = parse_market(_market()).therapists[0]
    assert therapist.answer_history == ()
    assert therapist.potentially_available is False


def test_history_is_parsed_and_put_newest_first() -> None:
    older = _entry(sent_on="2026-01-05", answered_on=None, patients=4)
    newer = _entry(accepted=1, rejected_capacity=1, rejected_other=1)
    parsed = parse_market(
        _market(potentially_available=True, answer_history=[older, newer])
    ).therapists[0]
    assert parsed.potentially_available is True
    assert parsed.answer_history == (
        HistoryEntry(date(2026, 2, 1), date(2026, 2, 3), 3, 1, 1, 1),
        HistoryEntry(date(2026, 1, 5), None, 4, 0, 0, 0),
    )


@pytest.mark.parametrize(
    ("history", "field", "why"),
    [
        ([_entry(sent_on="1.2.2026")], "answer_history[0].sent_on", "date"),
        ([_entry(answered_on="2026-01-31")], "answer_history[0].answered_on", "before sent_on"),
        ([_entry(patients=0)], "answer_history[0].patients", "at least 1"),
        ([_entry(accepted=-1)], "answer_history[0].accepted", "at least 0"),
        ([_entry(rejected_other=True)], "answer_history[0].rejected_other", "integer"),
        ([_entry(accepted=2, rejected_capacity=2)], "answer_history[0].patients", "exceed"),
        ([{"patients": 2}], "answer_history[0].sent_on", "required"),
        ([_entry()] * 11, "answer_history", "at most 10"),
        ("recent", "answer_history", "must be a list"),
        (["x"], "answer_history[0]", "object"),
    ],
)
def test_invalid_history_names_the_field(history: Any, field: str, why: str) -> None:
    with pytest.raises(MarketError) as raised:
        parse_market(_market(answer_history=history))
    message = str(raised.value)
    assert message.startswith(f"therapists[0].{field}:")
    assert why in message


def test_the_availability_flag_must_be_a_bool() -> None:
    with pytest.raises(MarketError, match=r"^therapists\[0\]\.potentially_available: "):
        parse_market(_market(potentially_available="yes"))


def test_config_can_switch_the_history_off() -> None:
    raw = {**_market(), "config": {"use_answer_history": False}}
    assert parse_market(raw).config.use_answer_history is False
    assert parse_market(_market()).config.use_answer_history is True


def _therapist(tid: str, lon: float, **kw: Any) -> Therapist:
    return Therapist(tid, 52.5, lon, practice_key=kw.pop("practice_key", f"practice-{tid}"), **kw)


def _history(*entries: HistoryEntry) -> dict:
    return {"answer_history": entries}


def _answered(days_ago: int, accepted: int = 0, capacity: int = 0, other: int = 0) -> HistoryEntry:
    sent = TODAY - timedelta(days=days_ago + 2)
    return HistoryEntry(sent, TODAY - timedelta(days=days_ago), 3, accepted, capacity, other)


def test_openness_rewards_acceptances_and_room_and_penalises_full_and_silent() -> None:
    plain = _therapist("t", 13.4)
    assert openness(plain, TODAY) == 0.0
    assert openness(replace(plain, potentially_available=True), TODAY) == 1.0
    accepted = openness(replace(plain, **_history(_answered(0, accepted=1, capacity=2))), TODAY)
    had_room = openness(replace(plain, **_history(_answered(0, other=3))), TODAY)
    full = openness(replace(plain, **_history(_answered(0, capacity=3))), TODAY)
    silent = HistoryEntry(TODAY - timedelta(days=30), None, 3)
    unanswered = openness(replace(plain, **_history(silent)), TODAY)
    assert accepted == 1.0 and had_room == 0.5 and full == -0.5
    assert -0.25 < unanswered < 0.0
    # an acceptance 90 days ago (the half-life) counts half
    old = openness(replace(plain, **_history(_answered(90, accepted=1))), TODAY)
    assert old == pytest.approx(0.5)


def test_levels_are_clipped() -> None:
    many = tuple(_answered(i, accepted=1) for i in range(10))
    assert openness_level(_therapist("t", 13.4, answer_history=many), TODAY) == 4
    full = tuple(_answered(i, capacity=3) for i in range(10))
    assert openness_level(_therapist("t", 13.4, answer_history=full), TODAY) == -4


def _searches() -> list[Search]:
    since = datetime(2026, 3, 1, 9, tzinfo=UTC)
    return [
        Search(f"s{i}", f"p{i}", 52.5, 13.40, 15.0, "car", since - timedelta(days=10 * i), 3)
        for i in (1, 2)
    ]


def _bundled_to(therapists: list[Therapist], config: BundleConfig = ONE_BUNDLE) -> list[str]:
    result = propose_bundles(_searches(), therapists, config, TODAY)
    return [str(inquiry.therapist_id) for inquiry in result.inquiries]


def test_without_history_the_nearer_therapist_gets_the_only_bundle() -> None:
    assert _bundled_to([_therapist("near", 13.41), _therapist("far", 13.45)]) == ["near"]


def test_a_recent_acceptance_wins_the_bundle_over_a_nearer_therapist() -> None:
    far = _therapist("far", 13.45, **_history(_answered(20, accepted=1, capacity=2)))
    assert _bundled_to([_therapist("near", 13.41), far]) == ["far"]
    off = replace(ONE_BUNDLE, use_answer_history=False)
    assert _bundled_to([_therapist("near", 13.41), far], off) == ["near"]


def test_the_availability_flag_wins_the_bundle() -> None:
    far = _therapist("far", 13.45, potentially_available=True)
    assert _bundled_to([_therapist("near", 13.41), far]) == ["far"]


def test_a_therapist_answering_full_yields_to_one_without_history() -> None:
    near = _therapist("near", 13.41, **_history(_answered(10, capacity=3)))
    assert _bundled_to([near, _therapist("far", 13.45)]) == ["far"]


def test_a_practice_is_asked_through_its_likelier_open_colleague() -> None:
    config = BundleConfig(bundle_min_size=2, bundle_max_size=3, max_inquiries_per_patient=1)
    near = _therapist("a", 13.41, practice_key="shared")
    open_colleague = _therapist("b", 13.41, practice_key="shared", potentially_available=True)
    assert _bundled_to([near, _therapist("b", 13.41, practice_key="shared")], config) == ["a"]
    assert _bundled_to([near, open_colleague], config) == ["b"]


def test_history_never_puts_a_newer_patient_before_a_longer_waiting_one() -> None:
    # Only one of the two patients fits (budget 1, bundles of exactly 2 with 3 patients).
    since = datetime(2026, 3, 1, 9, tzinfo=UTC)
    searches = [
        Search(f"s{i}", f"p{i}", 52.5, 13.40, 15.0, "car", since - timedelta(days=10 * i), 1)
        for i in (1, 2, 3)
    ]
    far = _therapist("far", 13.45, potentially_available=True)
    result = propose_bundles(searches, [_therapist("near", 13.41), far], ONE_BUNDLE, TODAY)
    assert [i.search_ids for i in result.inquiries] == [["s3", "s2"]]
    assert result.inquiries[0].therapist_id == "far"


def _cli_market(history: list) -> dict:
    searches = [
        {
            "search_id": f"s{i}",
            "lat": 52.5,
            "lon": 13.40,
            "max_travel_km": 15,
            "waiting_since": f"2026-02-{10 + i:02d}T09:00:00Z",
        }
        for i in (1, 2)
    ]
    return {
        "today": TODAY.isoformat(),
        "config": {"bundle_min_size": 2, "bundle_max_size": 2, "max_inquiries_per_patient": 1},
        "searches": searches,
        "therapists": [
            {"therapist_id": "near", "lat": 52.5, "lon": 13.41},
            {"therapist_id": "far", "lat": 52.5, "lon": 13.45, "answer_history": history},
        ],
    }


def test_the_cli_reads_histories_and_names_a_bad_field(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    source, target = tmp_path / "market.json", tmp_path / "result.json"
    source.write_text(json.dumps(_cli_market([_entry(accepted=1)])))
    assert cli_main(["--input", str(source), "--output", str(target)]) == 0
    assert [i["therapist_id"] for i in json.loads(target.read_text())["inquiries"]] == ["far"]
    source.write_text(json.dumps(_cli_market([_entry(answered_on="2026-01-01")])))
    assert cli_main(["--input", str(source), "--output", str(target)]) == 2
    assert "therapists[1].answer_history[0].answered_on: must not be before sent_on" in (
        capsys.readouterr().err
    )
