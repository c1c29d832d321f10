"""The directory's therapy-method strings -> the platform's method values (SPEC.md §2)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from therapist_service.rules import THERAPY_METHODS

# Method names as the 116117 directory writes them (compared case- and space-insensitively)
METHOD_NAMES = {
    "verhaltenstherapie": "behavioural",
    "tiefenpsychologisch fundierte psychotherapie": "psychodynamic",
    "analytische psychotherapie": "analytic",
    "systemische therapie": "systemic",
}
ADULTS = "adults"
CHILDREN = "children"

# "<method> - Erwachsene" / "<method> - Kinder und Jugendliche"; no suffix means adults
_AUDIENCE = re.compile(
    r"^(?P<method>.*?)\s*-\s*"
    r"(?:(?P<adults>erwachsene)|(?P<children>kinder\s*-?\s*und\s+jugendliche\w*))$"
)
_DASHES = str.maketrans({"\u2013": "-", "\u2014": "-", "\u2212": "-"})


def classify_method(text: str) -> tuple[str, str] | None:
    """'Verhaltenstherapie - Erwachsene' -> ('behavioural', 'adults'); None when unknown."""
    normalised = " ".join(text.translate(_DASHES).casefold().split())
    audience = ADULTS
    found = _AUDIENCE.match(normalised)
    if found:
        normalised = found["method"]
        audience = CHILDREN if found["children"] else ADULTS
    method = METHOD_NAMES.get(normalised)
    return (method, audience) if method else None


def adult_methods(texts: Iterable[str]) -> list[str]:
    """The platform methods offered to adults, in the catalogue's order; unknown ones ignored."""
    offered = {
        found[0]
        for found in map(classify_method, texts)
        if found is not None and found[1] == ADULTS
    }
    return [method for method in THERAPY_METHODS if method in offered]
