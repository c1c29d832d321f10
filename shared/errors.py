"""Domain errors: raised by use cases and rules, mapped to HTTP in one place (`shared.web`)."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a caller can act on; `code` is machine-readable."""

    code = "domain_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    """The addressed entity does not exist (or is not known to this service yet)."""

    code = "not_found"


class Conflict(DomainError):
    """The request contradicts the current state (duplicate, active search exists, ...)."""

    code = "conflict"


class InvalidTransition(Conflict):
    """A status change the lifecycle does not allow."""

    code = "invalid_transition"


class RuleViolation(DomainError):
    """Input that is well-formed but breaks a business rule (e.g. unmet qualification)."""

    code = "rule_violation"


class ValidationFailed(DomainError):
    """Input that does not match its schema; `details` lists `{field, message}`."""

    code = "validation_error"


class Unauthorized(DomainError):
    """No valid bearer token."""

    code = "unauthorized"


class Forbidden(DomainError):
    """A valid token whose role may not call this endpoint."""

    code = "forbidden"
