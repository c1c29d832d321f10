"""The command-line contract of python -m matching_service.bundling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .market_gen import check_result

ROOT = Path(__file__).resolve().parents[3]

MARKET = {
    "today": "2026-03-01",
    "config": {
        "bundle_min_size": 2,
        "bundle_max_size": 3,
        "max_inquiries_per_patient": 2,
        "detour_factor": {"car": 1.3, "transit": 1.5},
    },
    "searches": [
        {
            "search_id": f"s{i}",
            "patient_id": f"p{i}",
            "lat": 52.50 + i * 0.01,
            "lon": 13.40,
            "max_travel_km": 20,
            "travel_mode": "car",
            "gender": "female",
            "birth_date": "1990-01-01",
            "diagnosis": "F32.1",
            "preferred_therapy_method": None,
            "preferred_therapist_gender": None,
            "open_to_group_therapy": False,
            "availability": {"mon": ["09:00-12:00"]},
            "waiting_since": f"2026-01-{10 + i:02d}T09:00:00Z",
            "excluded_therapist_ids": [],
            "contact_budget": 3,
        }
        for i in range(5)
    ]
    + [
        {
            "search_id": "nowhere",
            "lat": None,
            "lon": None,
            "max_travel_km": 10,
            "waiting_since": "2026-01-01T00:00:00Z",
        }
    ],
    "therapists": [
        {"therapist_id": "t1", "practice_key": None, "lat": 52.52, "lon": 13.41},
        {"therapist_id": "t2", "practice_key": "shared", "lat": 52.53, "lon": 13.39},
        {"therapist_id": "t3", "practice_key": "shared", "lat": 52.53, "lon": 13.39},
    ],
}


def _run(tmp_path: Path, market: object, *extra: str) -> subprocess.CompletedProcess[str]:
    src, out = tmp_path / "market.json", tmp_path / "result.json"
    src.write_text(market if isinstance(market, str) else json.dumps(market))
    cmd = [sys.executable, "-m", "matching_service.bundling", "--input", str(src)]
    return subprocess.run(
        [*cmd, "--output", str(out), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("strategy", [None, "global", "baseline"])
def test_cli_writes_a_valid_result(tmp_path: Path, strategy: str | None) -> None:
    proc = _run(tmp_path, MARKET, *(["--strategy", strategy] if strategy else []))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "result.json").read_text())
    assert doc["strategy"] == (strategy or "global")
    check_result(MARKET, doc)
    assert {"search_id": "nowhere", "reason": "no_location"} in doc["left_out"]
    assert len(doc["inquiries"]) == 2  # t2 and t3 share a practice


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m["searches"][1].pop("search_id"), "searches[1].search_id"),
        (lambda m: m["searches"][0].update(lat="north"), "searches[0].lat"),
        (lambda m: m["searches"][2].update(travel_mode="plane"), "searches[2].travel_mode"),
        (lambda m: m["searches"][0].update(waiting_since="yesterday"), "waiting_since"),
        (lambda m: m["therapists"][0].update(therapy_methods=["magic"]), "therapy_methods"),
        (lambda m: m["therapists"][1].update(contactable="yes"), "therapists[1].contactable"),
        (lambda m: m["config"].update(bundle_min_size=0), "config.bundle_min_size"),
        (lambda m: m.pop("today"), "today"),
        (lambda m: m.pop("therapists"), "therapists"),
        (lambda m: m["searches"][0].update(availability={"mon": ["9-12"]}), "availability"),
    ],
)
def test_cli_rejects_invalid_input_naming_the_field(tmp_path: Path, change, field: str) -> None:
    market = json.loads(json.dumps(MARKET))
    change(market)
    proc = _run(tmp_path, market)
    assert proc.returncode == 2
    assert field in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_rejects_malformed_json(tmp_path: Path) -> None:
    proc = _run(tmp_path, "{not json")
    assert proc.returncode == 2
    assert "JSON" in proc.stderr and "Traceback" not in proc.stderr
