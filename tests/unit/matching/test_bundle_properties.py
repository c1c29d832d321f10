"""Property tests of the bundle algorithm on generated markets, checked independently."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from matching_service.bundling import Strategy, propose_bundles
from matching_service.bundling.market_io import parse_market, result_document

from .market_gen import check_result, markets, waiting_days

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _run(market: dict, strategy: Strategy) -> dict:
    parsed = parse_market(market)
    result = propose_bundles(
        parsed.searches, parsed.therapists, parsed.config, parsed.today, strategy
    )
    return result_document(result)


@FAST
@given(markets())
def test_global_bundles_respect_constraints_sizes_budgets_and_practices(market: dict) -> None:
    check_result(market, _run(market, Strategy.GLOBAL))


@FAST
@given(markets())
def test_baseline_bundles_respect_constraints_sizes_budgets_and_practices(market: dict) -> None:
    check_result(market, _run(market, Strategy.BASELINE))


@FAST
@given(markets())
def test_same_input_gives_same_output(market: dict) -> None:
    first = _run(market, Strategy.GLOBAL)
    reversed_market = {
        **market,
        "searches": market["searches"][::-1],
        "therapists": market["therapists"][::-1],
    }
    assert _run(reversed_market, Strategy.GLOBAL) == first
    assert _run(market, Strategy.GLOBAL) == first


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets(max_searches=40, max_therapists=10))
def test_global_covers_at_least_as_many_waiting_patients_as_baseline(market: dict) -> None:
    covered = {
        s: {sid for i in _run(market, s)["inquiries"] for sid in i["search_ids"]} for s in Strategy
    }
    assert len(covered[Strategy.GLOBAL]) >= len(covered[Strategy.BASELINE])


@FAST
@given(markets())
def test_every_position_lists_longer_waits_first(market: dict) -> None:
    searches = {s["search_id"]: s for s in market["searches"]}
    for inquiry in _run(market, Strategy.GLOBAL)["inquiries"]:
        waits = [waiting_days(market, searches[sid]) for sid in inquiry["search_ids"]]
        assert waits == sorted(waits, reverse=True)
        assert [d["position"] for d in inquiry["details"]] == list(range(1, len(waits) + 1))
