"""The numbers the business watches (business-rules.md §9), each an aggregate computed by PostgreSQL
in one statement; the definitions are in `AnalyticsSummaryOut`'s field descriptions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import text

from matching_service.models import SCHEMA
from shared.db import UnitOfWork, utcnow

DEFAULT_WINDOW_DAYS = 90
WAITING_LONG_DAYS = 30
ANSWERED_WITHIN_DAYS = 7

# :start/:end bound the window ([start, end) in UTC), :now is "now", :prefix filters patients
# by postal-code prefix (NULL: all). Searches and acceptances belong to a region by their
# patient, an inquiry by any of its patients.
_SUMMARY = text(
    f"""
WITH region AS (
    SELECT patient_id FROM {SCHEMA}.patient_projection
    WHERE postal_code LIKE CAST(:prefix AS text) || '%'
),
searches AS (
    SELECT * FROM {SCHEMA}.patient_searches
    WHERE CAST(:prefix AS text) IS NULL OR patient_id IN (SELECT patient_id FROM region)
),
inquiries AS (
    SELECT * FROM {SCHEMA}.inquiries AS i
    WHERE CAST(:prefix AS text) IS NULL OR EXISTS (
        SELECT 1 FROM {SCHEMA}.inquiry_patients AS ip
        WHERE ip.inquiry_id = i.id AND ip.patient_id IN (SELECT patient_id FROM region)
    )
),
placed AS (
    SELECT EXTRACT(EPOCH FROM claimed_at - waiting_since) / 86400.0 AS days
    FROM searches WHERE claimed_at >= :start AND claimed_at < :end
),
answered AS (
    SELECT i.id, (
        SELECT count(*) FROM {SCHEMA}.inquiry_patients AS ip
        WHERE ip.inquiry_id = i.id AND ip.outcome = 'accepted'
    ) AS accepted
    FROM inquiries AS i WHERE i.answered_at >= :start AND i.answered_at < :end
),
sent AS (
    SELECT (answered_at IS NOT NULL AND answered_at <= sent_at + :answered_within) AS in_time
    FROM inquiries WHERE sent_at >= :start AND sent_at < :end
),
acceptances AS (
    SELECT conflict FROM {SCHEMA}.inquiry_patients
    WHERE outcome = 'accepted' AND outcome_at >= :start AND outcome_at < :end
      AND (CAST(:prefix AS text) IS NULL OR patient_id IN (SELECT patient_id FROM region))
),
concurrent AS (
    SELECT s.id, count(i.id) AS open_inquiries
    FROM searches AS s
    LEFT JOIN {SCHEMA}.inquiry_patients AS ip ON ip.search_id = s.id AND ip.status = 'open'
    LEFT JOIN {SCHEMA}.inquiries AS i ON i.id = ip.inquiry_id AND i.status IN ('unsent', 'sent')
    WHERE s.status = 'active'
    GROUP BY s.id
)
SELECT
    (SELECT count(*) FROM searches WHERE created_at >= :start AND created_at < :end)
        AS searches_started,
    (SELECT count(*) FROM placed) AS searches_placed,
    (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY days) FROM placed)
        AS days_to_placement_median,
    (SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY days) FROM placed)
        AS days_to_placement_p90,
    (SELECT count(*) FROM inquiries WHERE created_at >= :start AND created_at < :end)
        AS inquiries_created,
    (SELECT count(*) FROM answered) AS inquiries_answered,
    (SELECT sum(accepted)::float / NULLIF(count(*), 0) FROM answered) AS acceptances_per_inquiry,
    (SELECT count(*) FROM sent) AS inquiries_sent,
    (SELECT (count(*) FILTER (WHERE in_time))::float / NULLIF(count(*), 0) FROM sent)
        AS answered_within_7_days_share,
    (SELECT count(*) FROM acceptances) AS acceptances,
    (SELECT count(*) FILTER (WHERE conflict) FROM acceptances) AS conflicting_acceptances,
    (SELECT (count(*) FILTER (WHERE conflict))::float / NULLIF(count(*), 0) FROM acceptances)
        AS conflict_rate,
    (
        SELECT count(*) FROM inquiries AS i
        WHERE i.created_at >= :start AND i.created_at < :end AND i.origin <> 'replacement'
          AND EXISTS (
            SELECT 1 FROM {SCHEMA}.cooling_periods AS c
            WHERE c.practice_key = i.practice_key
              AND c.inquiry_id IS DISTINCT FROM i.id
              AND c.created_at <= i.created_at
              AND c.starts_on <= (i.created_at AT TIME ZONE 'UTC')::date
              AND c.until > (i.created_at AT TIME ZONE 'UTC')::date
              AND (c.overridden_at IS NULL OR c.overridden_at > i.created_at)
          )
    ) AS cooling_violations,
    (SELECT count(*) FROM concurrent) AS active_searches,
    (SELECT avg(open_inquiries)::float FROM concurrent) AS concurrent_inquiries_avg,
    (SELECT max(open_inquiries) FROM concurrent) AS concurrent_inquiries_max,
    (
        SELECT count(*) FROM searches
        WHERE status = 'active' AND waiting_since < CAST(:now AS timestamptz) - :waiting_long
    ) AS searches_waiting_over_30_days
"""
)


@dataclass(frozen=True)
class AnalyticsSummary:
    """The figures of one window and region, as `AnalyticsSummaryOut` shows them."""

    window_from: date
    window_to: date
    postal_code_prefix: str | None
    figures: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        """The figures read through (searches_started, conflict_rate, ...)."""
        if name == "figures":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        try:
            return self.figures[name]
        except KeyError:
            raise AttributeError(name) from None


def summary(
    uow: UnitOfWork,
    *,
    window_from: date | None = None,
    window_to: date | None = None,
    postal_code_prefix: str | None = None,
    as_of: datetime | None = None,
) -> AnalyticsSummary:
    """The figures for the days [window_from, window_to] (default: the 90 days up to today)
    and the state at `as_of` (default: now)."""
    now = as_of or utcnow()
    last = window_to or now.date()
    first = window_from or last - timedelta(days=DEFAULT_WINDOW_DAYS - 1)
    params = {
        "start": datetime.combine(first, time(), tzinfo=UTC),
        "end": datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC),
        "now": now,
        "prefix": postal_code_prefix or None,
        "answered_within": timedelta(days=ANSWERED_WITHIN_DAYS),
        "waiting_long": timedelta(days=WAITING_LONG_DAYS),
    }
    with uow:
        row = uow.session.execute(_SUMMARY, params).one()
    return AnalyticsSummary(first, last, postal_code_prefix, dict(row._mapping))
