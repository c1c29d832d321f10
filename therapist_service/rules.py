"""Pure therapist rules: statuses, methods, diagnosis preferences, contactability. No I/O."""

from __future__ import annotations

import enum
import re
from datetime import date

THERAPY_METHODS = ("behavioural", "psychodynamic", "analytic", "systemic")

# ICD-10 chapter F prefixes a therapist may prefer: "F3", "F40", "F43.1"
DIAGNOSIS_PREFIX = re.compile(r"^F[0-9]{1,2}(\.[0-9]{1,2})?$")

# A practice: 'p' + 16 hex digits of md5(lower(email)), or 't' + the id of a therapist
# without email (computed by PostgreSQL: models.PRACTICE_KEY_SQL)
PRACTICE_KEY = re.compile(r"^(p[0-9a-f]{16}|t[1-9][0-9]{0,9})$")


class TherapistStatus(enum.StrEnum):
    """`active` therapists may be contacted; `blocked` never (by staff); `inactive` retired."""

    ACTIVE = "active"
    BLOCKED = "blocked"
    INACTIVE = "inactive"


# Fields the 116117 directory owns: an import may overwrite them. Everything else (status,
# block data, availability flags, preferences, working hours, cooling) belongs to staff.
DIRECTORY_FIELDS = (
    "salutation",
    "title",
    "gender",
    "first_name",
    "last_name",
    "street",
    "postal_code",
    "city",
    "phone",
    "fax",
    "languages",
    "therapy_methods",
    "phone_hours",
)


def normalise_diagnosis_prefix(value: str) -> str:
    """' f43.1 ' -> 'F43.1'; raises ValueError for anything that is not an F-chapter prefix."""
    prefix = value.strip().upper()
    if not DIAGNOSIS_PREFIX.fullmatch(prefix):
        raise ValueError(f"'{value}' is not an ICD-10 F prefix such as F3, F40 or F43.1")
    return prefix


def is_contactable(status: str, next_contactable_date: date | None, today: date) -> bool:
    """Active and out of the cooling period (blocked and inactive therapists never are)."""
    if status != TherapistStatus.ACTIVE:
        return False
    return next_contactable_date is None or next_contactable_date <= today


def gender_from_salutation(salutation: str | None) -> str:
    """Herr -> male, Frau -> female, anything else -> unspecified."""
    return {"Herr": "male", "Frau": "female"}.get(salutation or "", "unspecified")
