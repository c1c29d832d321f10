"""The directory's therapy-method strings -> the platform's method values (business-rules.md §2)."""

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

# The dashes the directory writes for a hyphen (en dash, em dash, minus sign)
DASHES = str.maketrans({"\u2013": "-", "\u2014": "-", "\u2212": "-"})

# The method and the audience are found separately, so "Verhaltenstherapie (Erwachsene)",
# "Verhaltenstherapie - Jugendliche und Erwachsene" and "Verhaltenstherapie für Erwachsene"
# read like "Verhaltenstherapie - Erwachsene"
_METHOD = re.compile(r"\b(" + "|".join(re.escape(name) for name in METHOD_NAMES) + r")\b")
_ADULTS = re.compile(r"\berwachsen")
_CHILDREN = re.compile(r"\b(?:kinder|jugendlich)")


def classify_method(text: str) -> tuple[str, str] | None:
    """'Verhaltenstherapie - Erwachsene' -> ('behavioural', 'adults'); None when no known
    method is named. The audience is adults when the text mentions adults or no audience at
    all, children only when it mentions children or adolescents and not adults."""
    normalised = " ".join(text.translate(DASHES).casefold().split())
    found = _METHOD.search(normalised)
    if found is None:
        return None
    children_only = bool(_CHILDREN.search(normalised)) and not _ADULTS.search(normalised)
    return METHOD_NAMES[found[1]], CHILDREN if children_only else ADULTS


def adult_methods(texts: Iterable[str]) -> list[str]:
    """The platform methods offered to adults, in the catalogue's order; unknown ones ignored."""
    offered = {
        found[0]
        for found in map(classify_method, texts)
        if found is not None and found[1] == ADULTS
    }
    return [method for method in THERAPY_METHODS if method in offered]


def any_recognised(texts: Iterable[str]) -> bool:
    """Whether any of the texts names a method the mapping knows."""
    return any(classify_method(text) is not None for text in texts)
