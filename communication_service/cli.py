"""Admin and cron commands of communication_service (tokens, outbox status)."""

from __future__ import annotations

from shared.cli import main as platform_main


def main() -> int:
    """The platform commands, limited to this service's schema."""
    return platform_main(services=("communication_service",))


if __name__ == "__main__":
    raise SystemExit(main())
