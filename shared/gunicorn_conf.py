"""gunicorn settings of every service's HTTP process (`gunicorn -c shared/gunicorn_conf.py`).

Worker processes: `--workers` on the command line, else `WEB_CONCURRENCY` (default 2).
With `PROMETHEUS_MULTIPROC_DIR` set, the processes share their metrics through that
directory (`/metrics` adds them up, see `shared/metrics.py`): it is emptied when gunicorn
starts (figures of an earlier run would be added in), and the files of a process that
exited are marked so that its live gauges no longer count.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))


def on_starting(server: Any) -> None:
    """Empty (or create) the multiprocess metrics directory before any worker starts."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    path = Path(directory)
    if path.is_dir():
        for entry in path.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    path.mkdir(parents=True, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """A worker process exited (restart, timeout): its live gauges stop counting."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
