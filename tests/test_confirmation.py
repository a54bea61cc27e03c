"""Confirmation tokens: bound to one operation and one exact target, expiring, unforgeable."""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from server.state.confirmation import ConfirmationError, Confirmations, Target

ids_sets = st.sets(st.integers(min_value=1, max_value=2**53 - 1), min_size=1, max_size=100)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@given(ids=ids_sets, order=st.randoms(), duplicates=st.integers(min_value=0, max_value=5))
def test_order_and_duplicates_do_not_matter(ids: set[int], order: random.Random, duplicates: int) -> None:
    signer = Confirmations(b"k", ttl_seconds=600)
    token = signer.issue("op", Target.of_ids(ids)).token
    shuffled = sorted(ids)
    order.shuffle(shuffled)
    signer.verify(token, "op", Target.of_ids(shuffled + shuffled[:duplicates]))


@given(ids=ids_sets, other=ids_sets)
def test_any_other_set_is_refused(ids: set[int], other: set[int]) -> None:
    signer = Confirmations(b"k", ttl_seconds=600)
    token = signer.issue("op", Target.of_ids(ids)).token
    if other != ids:
        with pytest.raises(ConfirmationError, match="different set of session ids"):
            signer.verify(token, "op", Target.of_ids(other))


@given(position=st.integers(min_value=0), replacement=st.characters())
@example(position=5, replacement="\ud800")  # a lone surrogate, which cannot be encoded: once a crash
def test_any_single_character_change_is_refused(position: int, replacement: str) -> None:
    signer = Confirmations(b"k", ttl_seconds=600)
    token = signer.issue("op", Target.of_ids({1, 2})).token
    index = position % len(token)
    tampered = token[:index] + replacement + token[index + 1 :]
    if tampered != token:
        with pytest.raises(ConfirmationError):
            signer.verify(tampered, "op", Target.of_ids({1, 2}))


def test_expiry_and_operation_binding() -> None:
    clock = Clock()
    signer = Confirmations(b"k", ttl_seconds=600, clock=clock)
    issued = signer.issue("delete_message_session", Target.of_ids({7}))
    assert issued.expires_at.timestamp() == clock.now + 600
    clock.now += 599
    signer.verify(issued.token, "delete_message_session", Target.of_ids({7}))
    with pytest.raises(ConfirmationError, match="issued for delete_message_session"):
        signer.verify(issued.token, "delete_message_sessions_bulk", Target.of_ids({7}))
    clock.now += 1
    with pytest.raises(ConfirmationError, match="expired"):
        signer.verify(issued.token, "delete_message_session", Target.of_ids({7}))


def test_a_filtered_set_is_bound_to_its_filter_and_never_matches_bare_ids() -> None:
    signer = Confirmations(b"k", ttl_seconds=600)
    token = signer.issue("matching", Target.matching("filter-a", {1, 2})).token
    signer.verify(token, "matching", Target.matching("filter-a", {2, 1}))
    with pytest.raises(ConfirmationError, match="different filter"):
        signer.verify(token, "matching", Target.matching("filter-b", {1, 2}))
    with pytest.raises(ConfirmationError):
        signer.verify(token, "matching", Target.of_ids({1, 2}))


def test_keys_are_per_secret_and_random_without_one() -> None:
    token = Confirmations(b"shared", ttl_seconds=600).issue("op", Target.of_ids({1})).token
    Confirmations(b"shared", ttl_seconds=600).verify(token, "op", Target.of_ids({1}))
    for stranger in (Confirmations(b"other", ttl_seconds=600), Confirmations(None, ttl_seconds=600)):
        with pytest.raises(ConfirmationError, match="not issued by this server"):
            stranger.verify(token, "op", Target.of_ids({1}))


def test_oversized_token_is_refused_without_parsing() -> None:
    with pytest.raises(ConfirmationError, match="malformed"):
        Confirmations(b"k", ttl_seconds=600).verify("v1." + "a" * 10_000_000, "op", Target.of_ids({1}))
