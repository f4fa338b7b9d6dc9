"""Sealing: round trip, tampering, wrong keys, weak keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from natkit.errors import LocalProtocolError, RemoteProtocolError
from natkit.identity import (
    SEAL_OVERHEAD,
    PrivateKey,
    PublicKey,
    SealError,
    SealFailure,
    WeakKeyError,
    check_recipient,
    seal,
    unseal,
)

ALICE = PrivateKey.generate()
BOB = PrivateKey.generate()
MALLORY = PrivateKey.generate()
#: A low-order point (the all-zero u-coordinate): no shared secret exists.
ZERO = PublicKey(bytes(32))


def test_round_trip() -> None:
    sealed = seal(ALICE, BOB.public_key, b"candidates")
    assert len(sealed) == len(b"candidates") + SEAL_OVERHEAD
    assert unseal(BOB, ALICE.public_key, sealed) == b"candidates"


def test_empty_message_round_trips() -> None:
    assert unseal(BOB, ALICE.public_key, seal(ALICE, BOB.public_key, b"")) == b""


def test_nonce_is_fresh_each_time() -> None:
    one = seal(ALICE, BOB.public_key, b"same")
    two = seal(ALICE, BOB.public_key, b"same")
    assert one[:24] != two[:24]
    assert one != two


def test_plaintext_does_not_appear_in_the_sealed_bytes() -> None:
    secret = b"ufrag:pwd-that-must-stay-secret"
    assert secret not in seal(ALICE, BOB.public_key, secret)


@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_is_caught(position: int, bit: int) -> None:
    sealed = bytearray(seal(ALICE, BOB.public_key, b"hello, bob"))
    sealed[position % len(sealed)] ^= 1 << bit
    with pytest.raises(SealError) as info:
        unseal(BOB, ALICE.public_key, bytes(sealed))
    assert info.value.reason is SealFailure.FORGED
    assert info.value.sender == ALICE.public_key


@given(st.binary(max_size=200))
def test_random_bytes_never_open(junk: bytes) -> None:
    with pytest.raises(SealError):
        unseal(BOB, ALICE.public_key, junk)


def test_truncated() -> None:
    sealed = seal(ALICE, BOB.public_key, b"x")
    with pytest.raises(SealError) as info:
        unseal(BOB, ALICE.public_key, sealed[: SEAL_OVERHEAD - 1])
    assert info.value.reason is SealFailure.TRUNCATED


def test_wrong_claimed_sender_fails() -> None:
    # Mallory seals to Bob and claims to be Alice: the box names its real sender.
    sealed = seal(MALLORY, BOB.public_key, b"I am alice")
    with pytest.raises(SealError) as info:
        unseal(BOB, ALICE.public_key, sealed)
    assert info.value.reason is SealFailure.FORGED


def test_wrong_recipient_fails() -> None:
    sealed = seal(ALICE, BOB.public_key, b"for bob")
    with pytest.raises(SealError):
        unseal(MALLORY, ALICE.public_key, sealed)


def test_seal_error_is_a_remote_protocol_error() -> None:
    assert issubclass(SealError, RemoteProtocolError)
    assert issubclass(WeakKeyError, LocalProtocolError)


def test_weak_keys() -> None:
    with pytest.raises(WeakKeyError):
        seal(ALICE, ZERO, b"x")
    with pytest.raises(WeakKeyError, match="low-order"):
        check_recipient(ALICE, ZERO)
    check_recipient(ALICE, BOB.public_key)  # a usable key passes
    with pytest.raises(SealError) as info:
        unseal(BOB, ZERO, bytes(SEAL_OVERHEAD + 1))
    assert info.value.reason is SealFailure.WEAK_KEY
