"""Which files of a directory folder an import reads, in which order.

The folder holds dated snapshots `YYYYMMDD/{plz}.json` (one file per postal-code area) and
an `urgent/` folder. Urgent files are imported first, and they win for their areas in that
run: the dated files of an area the urgent folder covers are passed over, so one run never
applies two versions of an area (which would flip its fields back and forth and emit events
on every run). Every other area is imported from its newest dated folder. Operators empty
`urgent/` once a dated snapshot has caught up with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

URGENT = "urgent"


@dataclass
class ImportPlan:
    """The files to import in order, and those passed over (with why)."""

    files: list[Path] = field(default_factory=list)
    passed_over: list[tuple[Path, str]] = field(default_factory=list)


def is_dated_folder(path: Path) -> bool:
    """Whether `path` is a folder named like a date: YYYYMMDD."""
    if not path.is_dir() or len(path.name) != 8 or not path.name.isdigit():
        return False
    try:
        datetime.strptime(path.name, "%Y%m%d")
    except ValueError:
        return False
    return True


def plan_import(folder: Path) -> ImportPlan:
    """Urgent files first (by name), then the newest dated file of every other area (by area);
    raises NotADirectoryError when `folder` is not a folder."""
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")
    plan = ImportPlan()
    urgent_folder = folder / URGENT
    urgent = sorted(urgent_folder.glob("*.json")) if urgent_folder.is_dir() else []
    plan.files.extend(urgent)
    urgent_areas = {path.stem for path in urgent}
    newest: dict[str, Path] = {}
    for dated in sorted((p for p in folder.iterdir() if is_dated_folder(p)), reverse=True):
        for path in sorted(dated.glob("*.json")):
            area = path.stem
            if area in urgent_areas:
                plan.passed_over.append((path, f"{URGENT}/{path.name} is imported instead"))
            elif area in newest:
                plan.passed_over.append((path, f"{newest[area].parent.name} is newer"))
            else:
                newest[area] = path
    plan.files.extend(newest[area] for area in sorted(newest))
    for path in sorted(folder.iterdir()):
        if path.name != URGENT and not is_dated_folder(path):
            plan.passed_over.append((path, "neither a dated folder (YYYYMMDD) nor urgent/"))
    return plan
