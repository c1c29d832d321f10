"""Field types that several services validate the same way (German postal codes, names,
phone numbers, genders). Pure pydantic: usable by schemas and rules alike."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, StringConstraints

Gender = Literal["male", "female", "diverse", "unspecified"]
Salutation = Literal["Herr", "Frau"]
PostalCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{5}$")]  # ASCII: \d is any script
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=50)]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 ()/-]{5,24}$")
]


def _timestamp_text(value: object) -> object:
    # a query string is text: '0.5' must not become a Unix time (pydantic's lax parsing)
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T\S+", value):
        raise ValueError("must be a timestamp with time zone, e.g. 2026-11-01T10:00:00Z")
    return value


def _aware_in_range(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must include a time zone, e.g. 2026-11-01T10:00:00Z")
    try:
        value = value.astimezone(UTC)  # PostgreSQL refuses offsets Python accepts
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None
    if not 1900 <= value.year <= 9998:
        raise ValueError("must be between the years 1900 and 9998")
    return value


# a moment in a query string: ISO 8601 with a time zone, converted to UTC
QueryTimestamp = Annotated[
    datetime, BeforeValidator(_timestamp_text), AfterValidator(_aware_in_range)
]
