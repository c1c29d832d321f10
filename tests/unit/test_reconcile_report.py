"""Reconciliation's comparison and report, without a database."""

from __future__ import annotations

from datetime import UTC, date, datetime

from shared.reconcile import Projection, ReconciliationReport, compare


def _projection(extra_counts: bool = True) -> Projection:
    return Projection(
        "b.copy", "a.source", ("b", "a"), lambda _c, _d: ({}, {}), extra_counts=extra_counts
    )


def test_missing_stale_and_extra_in_numeric_order() -> None:
    expected = {"10": 2, "9": 1, "2": 5, "3": date(2026, 12, 1)}
    held = {"10": 2, "2": 4, "3": "2026-12-01", "11": 1, "100": 1}
    diff = compare(_projection(), expected, held)
    assert diff.missing == ["9"]
    assert diff.stale == ["2"]  # a date equals its ISO text
    assert diff.extra == ["11", "100"]
    assert diff.checked == 6
    assert not diff.ok


def test_kind_prefixed_ids_sort_by_kind_then_number() -> None:
    diff = compare(_projection(), {"therapist:2": 1, "patient:10": 1, "patient:9": 1}, {})
    assert diff.missing == ["patient:9", "patient:10", "therapist:2"]


def test_extra_ids_are_ignored_where_the_projection_holds_more() -> None:
    diff = compare(_projection(extra_counts=False), {"1": "sent"}, {"1": "sent", "2": "unsent"})
    assert diff.ok
    assert diff.checked == 1


def test_report_lines_and_json() -> None:
    ok = compare(_projection(), {"1": 1}, {"1": 1})
    bad = compare(_projection(), {str(n): 1 for n in range(60)}, {})
    report = ReconciliationReport(diffs=[ok, bad], as_of=datetime(2026, 12, 1, tzinfo=UTC))
    assert not report.ok
    lines = report.lines(limit=3)
    assert lines[0] == "b.copy <- a.source: ok (1 ids; 0 missing, 0 stale, 0 extra)"
    assert lines[1] == "b.copy <- a.source: DIFFERS (60 ids; 60 missing, 0 stale, 0 extra)"
    assert lines[2] == "  missing: 0, 1, 2 ... and 57 more"
    document = report.to_dict()
    assert document["ok"] is False
    assert document["as_of"] == "2026-12-01T00:00:00+00:00"
    assert len(document["projections"][1]["missing"]) == 60
