"""A command for the scheduler tests: writes its arguments to a file, or fails."""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    if sys.argv[1] == "--fail":
        raise SystemExit(3)
    Path(sys.argv[1]).write_text(" ".join(sys.argv[2:]))
