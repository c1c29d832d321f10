"""CLI: python -m matching_service.bundling --input MARKET.json --output RESULT.json."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .engine import propose_bundles
from .market_io import MarketError, parse_market, result_document
from .model import Strategy

EXIT_INVALID_INPUT = 2


def main(argv: list[str] | None = None) -> int:
    """Read a market, propose bundles, write the result; 2 on invalid input."""
    parser = argparse.ArgumentParser(
        prog="python -m matching_service.bundling", description=__doc__
    )
    parser.add_argument("--input", required=True, type=Path, help="market JSON file")
    parser.add_argument("--output", required=True, type=Path, help="result JSON file to write")
    parser.add_argument(
        "--strategy", choices=[s.value for s in Strategy], default=Strategy.GLOBAL.value
    )
    args = parser.parse_args(argv)
    try:
        raw = json.loads(args.input.read_text(encoding="utf-8"))
    except OSError as exc:
        print(f"error: --input: cannot read {args.input}: {exc.strerror}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        print(f"error: --input: not valid JSON: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    try:
        market = parse_market(raw)
    except MarketError as exc:
        print(f"error: invalid market: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    result = propose_bundles(
        market.searches, market.therapists, market.config, market.today, Strategy(args.strategy)
    )
    try:
        args.output.write_text(json.dumps(result_document(result), indent=1), encoding="utf-8")
    except OSError as exc:
        print(f"error: --output: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
