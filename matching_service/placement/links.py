"""Signed, expiring answer links: one per inquiry, patient and outcome (business-rules.md §8).

A link's token is the therapist's only authority: `<signed part>/<outcome>`, where the
signed part names the inquiry, the search and when it stops being valid, signed with
`ANSWER_LINK_SECRET` (HMAC-SHA256 through itsdangerous), and the outcome is one of the
answers an email offers (`LINK_OUTCOMES`). One signature serves a patient's links: the
therapist receives all of them, so signing the outcome too would grant nothing less, and a
bundle run signs once per patient instead of once per link. Nothing in a token identifies
the patient beyond the ids.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from itsdangerous import BadSignature, URLSafeSerializer

from .values import Outcome

_SALT = "answer-link/v2"
# the answers a therapist gives from an inquiry email; `in_trial_sessions` and `no_show`
# come later, and staff record them
LINK_OUTCOMES = (
    Outcome.ACCEPTED.value,
    Outcome.REJECTED_CAPACITY.value,
    Outcome.REJECTED_UNSUITABLE.value,
    Outcome.REJECTED_OTHER.value,
)


class InvalidLink(ValueError):
    """A token that was tampered with, is malformed, or has expired; the message says which."""


@dataclass(frozen=True, slots=True)
class LinkClaim:
    """What a valid token allows: record `outcome` for `search_id` in `inquiry_id`."""

    inquiry_id: int
    search_id: int
    outcome: Outcome
    expires_at: datetime


def sign_link(
    secret: str, inquiry_id: int, search_id: int, outcome: Outcome | str, expires_at: datetime
) -> str:
    """The URL-safe token of one answer link."""
    payload = [inquiry_id, search_id, int(expires_at.timestamp())]
    signed = str(URLSafeSerializer(secret, salt=_SALT).dumps(payload))
    return f"{signed}/{_link_outcome(outcome)}"


def _link_outcome(outcome: Outcome | str) -> str:
    value = Outcome(outcome).value
    if value not in LINK_OUTCOMES:
        raise ValueError(f"{value} is not an answer a link records")
    return value


class LinkSigner:
    """Signs many links with one key derivation (a bundle run signs tens of thousands).

    Its tokens are `sign_link`'s, except that the payload is never zlib-compressed (for these
    few dozen bytes compression almost never pays, and costs more than the rest of signing);
    `verify_link` reads both forms.
    """

    def __init__(self, secret: str) -> None:
        signer = URLSafeSerializer(secret, salt=_SALT).make_signer()
        self._key = signer.derive_key()
        self._digest = signer.digest_method().name  # by name: OpenSSL signs in one call
        self._sep = signer.sep

    def sign(
        self, inquiry_id: int, search_id: int, outcome: Outcome | str, expires_at: datetime
    ) -> str:
        """The URL-safe token of one answer link."""
        signed = self._signed(int(inquiry_id), int(search_id), expires_at)
        return f"{signed}/{_link_outcome(outcome)}"

    def sign_every_outcome(
        self, inquiry_id: int, search_id: int, expires_at: datetime
    ) -> dict[str, str]:
        """The tokens of one patient's links: outcome -> token, for every link outcome
        (one signature)."""
        signed = self._signed(int(inquiry_id), int(search_id), expires_at)
        return {value: f"{signed}/{value}" for value in LINK_OUTCOMES}

    def _signed(self, inquiry_id: int, search_id: int, expires_at: datetime) -> str:
        # compact JSON of [int, int, int], as the serializer writes it
        payload = f"[{inquiry_id},{search_id},{int(expires_at.timestamp())}]"
        value = _base64(payload.encode())
        signature = hmac.digest(self._key, value, self._digest)
        return (value + self._sep + _base64(signature)).decode("ascii")


def _base64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def verify_link(secret: str, token: str, now: datetime) -> LinkClaim:
    """The claim of a valid token, or InvalidLink (tampered, malformed or expired)."""
    signed, _, outcome = token.rpartition("/")
    try:
        payload = URLSafeSerializer(secret, salt=_SALT).loads(signed)
    except BadSignature:
        raise InvalidLink("the link is not valid (it may have been changed)") from None
    try:
        inquiry_id, search_id, expires = payload
        if not all(type(value) is int for value in (inquiry_id, search_id, expires)):
            raise TypeError
        claim = LinkClaim(
            inquiry_id,
            search_id,
            Outcome(_link_outcome(outcome)),
            datetime.fromtimestamp(expires, UTC),
        )
    except (TypeError, ValueError, OverflowError, OSError):
        raise InvalidLink("the link is not valid") from None
    if now >= claim.expires_at:
        raise InvalidLink("the link has expired")
    return claim
