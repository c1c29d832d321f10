"""The market simulator: reproducible, rule-abiding, quick on a tiny market."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from matching_service.bundling import Strategy
from matching_service.simulation.__main__ import main
from matching_service.simulation.engine import Simulation
from matching_service.simulation.geography import synthetic_areas
from matching_service.simulation.metrics import cooling_violations, summarise
from matching_service.simulation.model import Parameters

TINY = Parameters(seed=3, days=70, therapists=40, patients=50, observe_days=30)


def _run(strategy: Strategy, params: Parameters = TINY) -> dict:
    sim = Simulation(params, synthetic_areas(np.random.default_rng(0), 400), strategy)
    sim.run()
    return summarise(sim)


def test_same_seed_gives_the_same_result() -> None:
    assert _run(Strategy.GLOBAL) == _run(Strategy.GLOBAL)


def test_tiny_run_places_patients_without_cooling_violations() -> None:
    for strategy in Strategy:
        summary = _run(strategy)
        assert summary["patients"] == 50
        assert summary["placed"] > 0
        assert summary["cooling_violations"] == 0


def test_violation_check_catches_a_send_during_cooling() -> None:
    events = [
        ("inquiry_sent", 0, "p"),
        ("answer_recorded", 3, "p"),
        ("inquiry_sent", 20, "p"),  # 17 days after the answer: cooling
        ("inquiry_sent", 40, "q"),
        ("inquiry_sent", 41, "q"),  # open inquiry and within the email week
    ]
    assert cooling_violations(events, cooling_days=28, email_days=7) == 2


def test_cli_compare_writes_one_record_per_strategy(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "sim.json"
    args = ["--compare", "--days", "40", "--therapists", "30", "--patients", "30"]
    assert main([*args, "--observe-days", "20", "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    assert [r["strategy"] for r in records] == ["baseline", "global"]
    for key in (
        "median_days",
        "p90_days",
        "placed_within_30_share",
        "inquiries_per_placement",
        "conflict_rate",
        "cooling_violations",
        "never_placed",
        "patients",
    ):
        assert key in records[0]
    assert "cooling viol." in capsys.readouterr().out
