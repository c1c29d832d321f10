"""The committed Postman collection, run with newman against the running stack: every
request gets the status its OpenAPI document gives (the collection checks it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shared.devstack import ROOT
from tests.conftest import ADMIN_TOKEN
from tools.postman import COLLECTION, ENVIRONMENT, STEPS

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (ROOT.parent / "shared" / "data" / "zipcodes.de.csv").is_file()
        and not os.environ.get("PLZ_DATA"),
        reason="no PLZ data (../shared/data/zipcodes.de.csv or PLZ_DATA): nobody can be located",
    ),
]

NEWMAN = ROOT / "postman" / "node_modules" / ".bin" / "newman"


def _newman() -> Path:
    if NEWMAN.is_file() and shutil.which("node"):
        return NEWMAN
    if os.environ.get("CI_REQUIRE_NEWMAN") == "1":
        pytest.fail(f"{NEWMAN} missing: .ci/run installs it (cd postman && npm ci)")
    pytest.skip("newman not installed: cd postman && npm ci")


def test_every_request_of_the_collection_gets_its_documented_status(
    platform: dict[str, Any], tmp_path: Path
) -> None:
    newman = _newman()
    report = tmp_path / "newman.json"
    urls = [f"{name}_url={url}" for name, url in platform["urls"].items()]
    command = [str(newman), "run", str(COLLECTION), "--environment", str(ENVIRONMENT)]
    for variable in [*urls, f"token={ADMIN_TOKEN}"]:
        command += ["--env-var", variable]
    command += ["--reporters", "cli,json", "--reporter-json-export", str(report)]
    command += ["--timeout-request", "60000", "--color", "off"]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr
    run = json.loads(report.read_text())["run"]
    assert run["failures"] == []
    executed = {execution["item"]["name"] for execution in run["executions"]}
    assert executed == {step.name for step in STEPS}
    # each request's last execution asserted its status, and it held
    last: dict[str, Any] = {}
    for execution in run["executions"]:
        last[execution["item"]["name"]] = execution
    for name, execution in last.items():
        assertions = execution.get("assertions", [])
        assert [a["assertion"] for a in assertions if a["assertion"].startswith("status ")], name
        assert not any("error" in a for a in assertions), name
