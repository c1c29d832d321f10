"""Domain errors of the placement rules; the service maps them to HTTP in one place."""

from __future__ import annotations

from collections.abc import Iterable


class PlacementError(Exception):
    """Base of every placement rule violation."""


class InvalidTransition(PlacementError):
    """A search status change that business-rules.md §5 does not allow."""

    def __init__(self, current: str, target: str, reason: str) -> None:
        super().__init__(f"cannot change search status from {current} to {target}: {reason}")
        self.current, self.target, self.reason = current, target, reason


class AnswerMismatch(PlacementError):
    """An answer whose patients are not exactly the inquiry's."""

    def __init__(self, missing: Iterable[object], extra: Iterable[object]) -> None:
        self.missing = sorted(missing, key=str)
        self.extra = sorted(extra, key=str)
        parts = []
        if self.missing:
            parts.append(f"missing answers for {', '.join(map(str, self.missing))}")
        if self.extra:
            extra = ", ".join(map(str, self.extra))
            parts.append(f"answers for patients not in the inquiry: {extra}")
        super().__init__("; ".join(parts))


class InquiryAlreadyAnswered(PlacementError):
    """A second answer to the same inquiry."""


class NotContactable(PlacementError):
    """A contact attempt the cooling or email-frequency rules forbid."""
