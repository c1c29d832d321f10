"""Answer link tokens: valid, expired, tampered, malformed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from matching_service.placement.links import (
    LINK_OUTCOMES,
    InvalidLink,
    LinkSigner,
    sign_link,
    verify_link,
)
from matching_service.placement.values import Outcome

SECRET = "x" * 32
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_a_valid_token_names_inquiry_search_and_outcome() -> None:
    token = sign_link(SECRET, 7, 42, "accepted", NOW + timedelta(days=21))
    claim = verify_link(SECRET, token, NOW)
    assert (claim.inquiry_id, claim.search_id, claim.outcome) == (7, 42, Outcome.ACCEPTED)


def test_an_expired_token_is_refused() -> None:
    token = sign_link(SECRET, 7, 42, "accepted", NOW)
    with pytest.raises(InvalidLink, match="expired"):
        verify_link(SECRET, token, NOW)


def _flip(token: str, index: int) -> str:
    return token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1 :]


@pytest.mark.parametrize("index", [0, 3, -8])
def test_a_changed_token_is_refused(index: int) -> None:
    token = sign_link(SECRET, 7, 42, "rejected_capacity", NOW + timedelta(days=1))
    with pytest.raises(InvalidLink):
        verify_link(SECRET, _flip(token, index), NOW)


def test_a_token_for_another_patient_is_refused() -> None:
    payload, _, signature = sign_link(SECRET, 7, 42, "accepted", NOW + timedelta(1)).partition(".")
    other = sign_link(SECRET, 7, 43, "accepted", NOW + timedelta(1)).partition(".")[0]
    with pytest.raises(InvalidLink):
        verify_link(SECRET, f"{other}.{signature}", NOW)
    assert payload != other


def test_a_token_of_another_secret_is_refused() -> None:
    token = sign_link("y" * 32, 7, 42, "accepted", NOW + timedelta(days=1))
    with pytest.raises(InvalidLink):
        verify_link(SECRET, token, NOW)


@pytest.mark.parametrize("garbage", ["", ".", "abc.def", "\u00e4" * 10, "a" * 5000])
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(InvalidLink):
        verify_link(SECRET, garbage, NOW)


@pytest.mark.parametrize("ids", [(7, 42), (1_234_567, 89), (2**31 - 1, 2**31 - 1)])
def test_the_batch_signer_signs_what_verify_link_accepts(ids: tuple[int, int]) -> None:
    signer = LinkSigner(SECRET)
    expires = NOW + timedelta(days=21)
    for outcome in LINK_OUTCOMES:
        token = signer.sign(*ids, outcome, expires)
        claim = verify_link(SECRET, token, NOW)
        assert (claim.inquiry_id, claim.search_id, claim.outcome) == (*ids, outcome)
        assert claim.expires_at == expires
    every = signer.sign_every_outcome(*ids, expires)
    assert every == {outcome: signer.sign(*ids, outcome, expires) for outcome in LINK_OUTCOMES}
    assert len({token.rpartition("/")[0] for token in every.values()}) == 1  # one signature
    assert set(LINK_OUTCOMES) == set(Outcome) - {Outcome.IN_TRIAL_SESSIONS, Outcome.NO_SHOW}
    # the same token as sign_link's wherever compression does not shorten the payload
    assert signer.sign(7, 42, "accepted", expires) == sign_link(SECRET, 7, 42, "accepted", expires)
    with pytest.raises(InvalidLink):
        verify_link("y" * 32, signer.sign(7, 42, "accepted", expires), NOW)


def test_a_link_records_only_the_answers_an_email_offers() -> None:
    token = sign_link(SECRET, 7, 42, "accepted", NOW + timedelta(days=1))
    signed = token.rpartition("/")[0]
    assert verify_link(SECRET, f"{signed}/rejected_other", NOW).outcome is Outcome.REJECTED_OTHER
    for outcome in ("no_show", "in_trial_sessions", "", "accepted/x", "ACCEPTED"):
        with pytest.raises(InvalidLink):
            verify_link(SECRET, f"{signed}/{outcome}", NOW)
    with pytest.raises(ValueError, match="not an answer a link records"):
        sign_link(SECRET, 7, 42, "no_show", NOW)
