"""Admin and cron commands of therapist_service.

- `import-directory FOLDER`: import a 116117 directory folder (urgent/ first, then the
  newest dated file of each area); exit 1 when a file could not be read.
- `generate-directory --out DIR --therapists N --seed S [--plz-data PATH]`: write a
  synthetic directory folder (tests, demos, benchmarks).
- everything else: the platform commands (tokens, outbox, migrate) for this schema.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from shared.cli import service_main
from shared.db import Database, InvalidDatabaseURL
from shared.events import describe
from shared.runtime import ServiceRuntime
from shared.settings import load_settings
from shared.text import control_characters
from therapist_service import service
from therapist_service.directory.folders import plan_import
from therapist_service.directory.generator import NoPlaceData, generate_directory, read_places
from therapist_service.directory.records import SourceFile
from therapist_service.models import INFRA, DirectoryImport
from therapist_service.schemas import DirectoryFile
from therapist_service.settings import TherapistSettings

ROOT = Path(__file__).resolve().parent.parent
# Where CI and the dev machines keep GeoNames' postal codes (never inside the project)
DEFAULT_PLZ_DATA = ROOT.parent / "shared" / "data" / "zipcodes.de.csv"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    return service_main(argv, service="therapist_service", commands=COMMANDS, doc=__doc__ or "")


# ---------------------------------------------------------------- import-directory


@dataclass
class FolderImport:
    """What importing a folder did: the stored report and the files that could not be read."""

    report: DirectoryImport
    files: int
    unreadable: list[str] = field(default_factory=list)


def read_source_file(path: Path, name: str) -> SourceFile:
    """A directory file's entries, or why it cannot be imported (never raises)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return SourceFile(name, unreadable=f"cannot read {name}: {exc.strerror or exc}")
    try:
        document = DirectoryFile.model_validate_json(raw)
    except ValidationError as exc:
        invalid = [error["msg"] for error in exc.errors() if error["type"] == "json_invalid"]
        if invalid:
            return SourceFile(name, unreadable=f"{name} is not valid JSON ({invalid[0]})")
        return SourceFile(name, unreadable=f"{name} is not a directory file: {describe(exc)}")
    if next(control_characters(document.metadata), None) is not None:
        # as the API's 422; entries are checked one by one by the import
        reason = "metadata: must not contain control characters"
        return SourceFile(name, unreadable=f"{name} is not a directory file: {reason}")
    return SourceFile(name, document.therapists)


def import_folder(
    database: Database,
    folder: Path,
    *,
    batch_size: int,
    out: TextIO | None = sys.stdout,
) -> FolderImport:
    """Import every file `plan_import` picks in `folder`, one line per file on `out`."""
    plan = plan_import(folder)
    for path, why in plan.passed_over:
        _say(out, f"passed over {path.relative_to(folder).as_posix()}: {why}")
    unreadable: list[str] = []
    width = len(str(len(plan.files)))
    done = 0

    def sources() -> Iterator[SourceFile]:
        for path in plan.files:
            source = read_source_file(path, path.relative_to(folder).as_posix())
            if source.unreadable is not None:
                unreadable.append(source.unreadable)
            yield source

    def progress(file: service.FileImported) -> None:
        nonlocal done
        done += 1
        counts = file.counts
        _say(
            out,
            f"[{done:>{width}}/{len(plan.files)}] {file.name}: {counts.created} created, "
            f"{counts.updated} updated, {counts.unchanged} unchanged, {counts.skipped} skipped, "
            f"{counts.errors} errors",
        )

    report = service.import_directory(
        database.unit_of_work(),
        sources(),
        source=f"folder {folder}",
        batch_size=batch_size,
        correlation_id=f"import-{uuid.uuid4().hex[:16]}",
        on_file=progress,
    )
    return FolderImport(report, len(plan.files), unreadable)


def _say(out: TextIO | None, line: str) -> None:
    if out is not None:
        print(line, file=out, flush=True)


def import_directory_command(argv: Sequence[str]) -> int:
    """`import-directory FOLDER [--batch-size N] [--quiet]`."""
    parser = argparse.ArgumentParser(
        prog="python -m therapist_service.cli import-directory",
        description="Import a 116117 directory folder: YYYYMMDD/{plz}.json (the newest folder "
        "wins per area) and urgent/{plz}.json (first, and winning for its areas). Connects "
        "like the service (THERAPIST_SERVICE_DATABASE_URL or DATABASE_URL).",
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--batch-size", type=int, help="records per transaction (default: 500)")
    parser.add_argument("--quiet", action="store_true", help="no line per file, totals only")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    settings = load_settings(TherapistSettings)
    runtime = ServiceRuntime.build(settings, INFRA)
    try:
        result = import_folder(
            runtime.database,
            args.folder,
            batch_size=args.batch_size or settings.directory_import_batch_size,
            out=None if args.quiet else sys.stdout,
        )
    except InvalidDatabaseURL as exc:
        print(f"invalid database URL: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(f"cannot reach the database: {exc.orig}", file=sys.stderr)
        return 1
    finally:
        runtime.database.dispose()
    report = result.report
    print(
        f"{result.files} files imported (report {report.id}): {report.created} created, "
        f"{report.updated} updated, {report.unchanged} unchanged, {len(report.skipped)} "
        f"skipped, {len(report.errors)} errors"
    )
    for problem in result.unreadable:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if result.unreadable else 0


# ---------------------------------------------------------------- generate-directory


def default_plz_data() -> str | None:
    """PLZ_DATA, else ../shared/data/zipcodes.de.csv beside the project when it exists."""
    configured = os.environ.get("PLZ_DATA")
    if configured:
        return configured
    return str(DEFAULT_PLZ_DATA) if DEFAULT_PLZ_DATA.is_file() else None


def _date(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%d")


def generate_directory_command(argv: Sequence[str]) -> int:
    """`generate-directory --out DIR --therapists N --seed S [--plz-data PATH] [--date D]`."""
    parser = argparse.ArgumentParser(
        prog="python -m therapist_service.cli generate-directory",
        description="Write a synthetic 116117 directory folder: invented therapists at real "
        "postal codes, a newest dated folder, an older one and urgent/ (same seed, same files).",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument("--therapists", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--plz-data",
        help="GeoNames postal codes: the CSV of ../shared/data, or GeoNames' DE.zip or the DE.txt "
        "inside it (default: PLZ_DATA, else ../shared/data/zipcodes.de.csv)",
    )
    parser.add_argument(
        "--date", type=_date, default=_date("20260105"), help="newest folder, YYYYMMDD"
    )
    args = parser.parse_args(argv)
    if args.therapists < 1:
        parser.error("--therapists must be at least 1")
    plz_data = args.plz_data or default_plz_data()
    if plz_data is None:
        print(
            "error: no postal-code data: pass --plz-data PATH or set PLZ_DATA (a GeoNames CSV "
            f"like {DEFAULT_PLZ_DATA}, or DE.txt from "
            "https://download.geonames.org/export/zip/DE.zip)",
            file=sys.stderr,
        )
        return 2
    try:
        places = read_places(plz_data)
    except NoPlaceData as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = generate_directory(
        args.out, places, therapists=args.therapists, seed=args.seed, newest=args.date.date()
    )
    folders = ", ".join(f"{name}/: {count} files" for name, count in summary.files.items())
    print(
        f"{summary.therapists} therapists in {summary.areas} postal-code areas "
        f"({summary.practices} practices, {summary.shared_practices} shared; "
        f"{summary.children_only} children-only, {summary.without_email} without email) "
        f"written to {args.out}: {folders}"
    )
    return 0


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "import-directory": import_directory_command,
    "generate-directory": generate_directory_command,
}


if __name__ == "__main__":
    raise SystemExit(main())
