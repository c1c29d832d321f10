"""Print the reliability suite's table from the tally file its tests wrote.

Usage: python -m tools.reliability_report var/reliability.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = (
    ("faults_injected", "faults injected"),
    ("events_lost", "events lost"),
    ("duplicates_applied", "duplicates applied"),
    ("races_won_twice", "races won twice"),
    ("server_errors", "server errors"),
    ("checked", "checked"),
)


def main(argv: list[str]) -> int:
    """Print one row per test and a total row; exit 1 when any loss or error was recorded."""
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[0])
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    if not rows:
        print(f"no tally in {path}: did the suite run?", file=sys.stderr)
        return 1
    names = [row["test"].split("::", 1)[-1] for row in rows]
    width = max(len("test"), *(len(n) for n in names))
    header = "test".ljust(width) + "".join(f" | {title}" for _, title in COLUMNS)
    print(header)
    print("-" * len(header))
    totals = dict.fromkeys((key for key, _ in COLUMNS), 0)
    for name, row in zip(names, rows, strict=True):
        cells = []
        for key, title in COLUMNS:
            totals[key] += int(row.get(key, 0))
            cells.append(f" | {str(row.get(key, 0)).rjust(len(title))}")
        print(name.ljust(width) + "".join(cells))
    print("-" * len(header))
    print("total".ljust(width) + "".join(f" | {str(totals[k]).rjust(len(t))}" for k, t in COLUMNS))
    bad = sum(totals[k] for k in ("events_lost", "duplicates_applied", "races_won_twice"))
    return 1 if bad or totals["server_errors"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
