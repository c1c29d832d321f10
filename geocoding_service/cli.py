"""Admin and cron commands of geocoding_service: PLZ import, address queue, tokens, outbox.

`python -m geocoding_service.cli import-plz [SOURCE] [--if-empty]` loads GeoNames postal
code data (path or URL; default `PLZ_DATA`) with the service's own database login;
`queue-addresses` hands therapists located by PLZ only to the worker's address loop. Every
other command is the platform's (`tokens`, `outbox`, `migrate`), limited to this schema.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sqlalchemy.exc import OperationalError

from geocoding_service import service
from geocoding_service.models import INFRA
from geocoding_service.settings import GeocodingSettings
from shared.cli import main as platform_main
from shared.runtime import ServiceRuntime
from shared.settings import load_settings

SERVICE = "geocoding_service"


def import_plz(argv: Sequence[str]) -> int:
    """`import-plz`: 0 imported (or skipped with --if-empty), 1 failed, 2 nothing to import."""
    parser = argparse.ArgumentParser(
        prog="python -m geocoding_service.cli import-plz",
        description="Load GeoNames postal-code data: the CSV with header, DE.txt or DE.zip.",
    )
    parser.add_argument("source", nargs="?", help="path or http(s) URL (default: PLZ_DATA)")
    parser.add_argument(
        "--if-empty", action="store_true", help="do nothing when postal codes are loaded already"
    )
    args = parser.parse_args(argv)
    settings = load_settings(GeocodingSettings)
    source = args.source or settings.plz_data
    if not source:
        print("import-plz: name a SOURCE (path or URL) or set PLZ_DATA", file=sys.stderr)
        return 2
    database = ServiceRuntime.build(settings, INFRA).database
    try:
        if args.if_empty and (known := service.postal_codes_known(database.unit_of_work())):
            print(f"import-plz: {known} postal codes loaded already; nothing to do")
            return 0
        service.import_postal_codes(
            database.unit_of_work(), source, progress=lambda line: print(line, flush=True)
        )
    except service.InvalidPlzData as exc:
        print(f"import-plz: cannot import {exc.message}", file=sys.stderr)
        for problem in exc.details[1:]:
            print(f"  line {problem.get('line')}: {problem['message']}", file=sys.stderr)
        return 1
    except OperationalError as exc:
        print(f"import-plz: cannot reach the database: {exc.orig}", file=sys.stderr)
        return 1
    finally:
        database.dispose()
    return 0


def queue_addresses(argv: Sequence[str]) -> int:
    """`queue-addresses`: therapists located by PLZ only go to the worker's address loop."""
    argparse.ArgumentParser(
        prog="python -m geocoding_service.cli queue-addresses",
        description="Queue every therapist address not yet geocoded for the worker's address "
        "loop (after NOMINATIM_URL was configured); the worker must have NOMINATIM_URL set.",
    ).parse_args(argv)
    settings = load_settings(GeocodingSettings)
    if not settings.nominatim_url:
        print(
            "queue-addresses: NOMINATIM_URL is not set: no address would be geocoded",
            file=sys.stderr,
        )
        return 2
    database = ServiceRuntime.build(settings, INFRA).database
    try:
        queued = service.queue_therapist_addresses(database.unit_of_work())
    except OperationalError as exc:
        print(f"queue-addresses: cannot reach the database: {exc.orig}", file=sys.stderr)
        return 1
    finally:
        database.dispose()
    print(f"queue-addresses: {queued} therapist addresses queued for the geocoder")
    return 0


COMMANDS = {"import-plz": import_plz, "queue-addresses": queue_addresses}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] and arguments[0] in COMMANDS:
        return COMMANDS[arguments[0]](arguments[1:])
    return platform_main(arguments, services=(SERVICE,))


if __name__ == "__main__":
    raise SystemExit(main())
