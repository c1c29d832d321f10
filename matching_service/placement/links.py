"""Signed, expiring answer links: one per inquiry, patient and outcome (SPEC.md §8).

The token is the therapist's only authority, so it carries what it may record (inquiry,
search, outcome) and when it stops being valid, signed with `ANSWER_LINK_SECRET`
(HMAC-SHA256 through itsdangerous). Nothing in it identifies the patient beyond the ids.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from itsdangerous import BadSignature, URLSafeSerializer

from .values import Outcome

_SALT = "answer-link/v1"
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
    payload = [inquiry_id, search_id, Outcome(outcome).value, int(expires_at.timestamp())]
    return str(URLSafeSerializer(secret, salt=_SALT).dumps(payload))


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
        return self._token(int(inquiry_id), int(search_id), Outcome(outcome).value, expires_at)

    def sign_every_outcome(
        self, inquiry_id: int, search_id: int, expires_at: datetime
    ) -> dict[str, str]:
        """The tokens of one patient's links: outcome -> token, for every link outcome."""
        ids = (int(inquiry_id), int(search_id))
        return {value: self._token(*ids, value, expires_at) for value in LINK_OUTCOMES}

    def _token(self, inquiry_id: int, search_id: int, outcome: str, expires_at: datetime) -> str:
        # compact JSON of [int, int, str, int], as the serializer writes it
        payload = f'[{inquiry_id},{search_id},"{outcome}",{int(expires_at.timestamp())}]'
        value = _base64(payload.encode())
        signature = hmac.digest(self._key, value, self._digest)
        return (value + self._sep + _base64(signature)).decode("ascii")


def _base64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def verify_link(secret: str, token: str, now: datetime) -> LinkClaim:
    """The claim of a valid token, or InvalidLink (tampered, malformed or expired)."""
    try:
        payload = URLSafeSerializer(secret, salt=_SALT).loads(token)
    except BadSignature:
        raise InvalidLink("the link is not valid (it may have been changed)") from None
    try:
        inquiry_id, search_id, outcome, expires = payload
        if not all(type(value) is int for value in (inquiry_id, search_id, expires)):
            raise TypeError
        claim = LinkClaim(
            inquiry_id, search_id, Outcome(outcome), datetime.fromtimestamp(expires, UTC)
        )
    except (TypeError, ValueError, OverflowError, OSError):
        raise InvalidLink("the link is not valid") from None
    if now >= claim.expires_at:
        raise InvalidLink("the link has expired")
    return claim
