"""`make demo` against the running stack: a small data set loaded, the tour printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest
import requests

from shared.devstack import ROOT
from tests.conftest import ADMIN_TOKEN

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (ROOT.parent / "shared" / "data" / "zipcodes.de.csv").is_file()
        and not os.environ.get("PLZ_DATA"),
        reason="no PLZ data (../shared/data/zipcodes.de.csv or PLZ_DATA): nobody can be located",
    ),
]


DEMO_ARGS = ("--patients", "15", "--therapists", "6", "--region", "39", "--timeout", "90")


def test_demo_loads_a_region_and_prints_a_tour_with_real_ids(platform: dict[str, Any]) -> None:
    env = {
        **os.environ,
        "DEV_DATA_DIR": str(platform["data_dir"]),
        "DEV_PORT_BASE": str(platform["ports"][0]),
        "BOOTSTRAP_ADMIN_TOKEN": ADMIN_TOKEN,
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-m", "tools.demo", *DEMO_ARGS],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tour = result.stdout
    assert "15 patients" in tour
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    # every GET line of the tour answers 200 with the ids it names
    urls = re.findall(r"^curl -s -H \"Authorization: Bearer \$TOKEN\" '?(http\S+?)'?$", tour, re.M)
    assert len(urls) >= 13, tour  # the email too: its id, not a placeholder
    for url in urls:
        response = requests.get(url, headers=headers, timeout=30)
        assert response.status_code == 200, f"{url}: {response.text}"
    run_id = re.search(r"bundle run (\d+) dated", tour)
    assert run_id is not None, tour
    run = requests.get(
        f"{platform['urls']['matching']}/api/bundle-runs/{run_id.group(1)}",
        headers=headers,
        timeout=30,
    ).json()
    assert run["postal_code_prefix"] == "39"
    assert run["inquiries_created"] >= 2
