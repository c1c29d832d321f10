"""Bundle algorithm: which patients go into which therapist's inquiry in one run (business-rules.md
§6)."""

from .engine import propose_bundles
from .model import (
    BundleConfig,
    BundleResult,
    LeftOut,
    PatientFit,
    ProposedInquiry,
    Search,
    SearchReason,
    Strategy,
    Therapist,
    TherapistReason,
    TherapistWithoutInquiry,
)

__all__ = [
    "BundleConfig",
    "BundleResult",
    "LeftOut",
    "PatientFit",
    "ProposedInquiry",
    "Search",
    "SearchReason",
    "Strategy",
    "Therapist",
    "TherapistReason",
    "TherapistWithoutInquiry",
    "propose_bundles",
]
