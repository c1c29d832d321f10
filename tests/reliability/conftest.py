"""The reliability suite's tally: every test records the faults it injected and what it found
(events lost, duplicates applied, races won twice, server errors). Each test still asserts
its own figures; the tally only feeds the table `make reliability` prints
(tools/reliability_report.py) from the JSON lines in RELIABILITY_TALLY."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest


@dataclass
class Tally:
    """What one test injected and found; the columns of the reliability table."""

    test: str
    faults_injected: int = 0
    events_lost: int = 0
    duplicates_applied: int = 0
    races_won_twice: int = 0
    server_errors: int = 0
    # what was checked: requests sent, events compared, races run
    checked: int = 0
    faults: list[str] = field(default_factory=list)

    def fault(self, name: str) -> None:
        """Count one injected fault (a killed broker, a restarted database, ...)."""
        self.faults_injected += 1
        self.faults.append(name)


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    """The test's tally, appended to RELIABILITY_TALLY (when set) after the test, pass or fail."""
    record = Tally(test=request.node.nodeid)
    yield record
    target = os.environ.get("RELIABILITY_TALLY")
    if target:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(asdict(record)) + "\n")
