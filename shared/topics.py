"""The topic catalogue: which service owns each topic (the only one that may publish to it).

Consumers accept an event only when its envelope names the topic's owner as `producer`;
broker ACLs (docs/security.md) enforce the same rule for clients that are not ours.
"""

from __future__ import annotations

TOPIC_OWNERS: dict[str, str] = {
    "patient-events": "patient_service",
    "therapist-events": "therapist_service",
    "search-events": "matching_service",
    "inquiry-events": "matching_service",
    "cooling-events": "matching_service",
    "communication-events": "communication_service",
    "location-events": "geocoding_service",
}


def owner_of(topic: str) -> str:
    """The service that owns a (logical, unprefixed) topic; KeyError names unknown ones."""
    try:
        return TOPIC_OWNERS[topic]
    except KeyError:
        raise KeyError(f"topic {topic!r} is not in the catalogue (shared/topics.py)") from None
