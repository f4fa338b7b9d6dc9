"""End-to-end sealing of signal messages: NaCl ``crypto_box``.

``seal(sender, recipient, plaintext)`` is PyNaCl's ``Box`` (X25519 key
agreement, XSalsa20-Poly1305): a random 24-byte nonce from libsodium,
prepended, then the ciphertext with its 16-byte tag. Only the recipient can
open it, and opening it proves that the holder of the sender's private key
made it: the rendezvous (or a DNS directory) that carries it learns who
talks to whom, never what. It is the construction tailscale's disco and
NetBird's signal messages use (golang.org/x/crypto/nacl/box), so the format
is the common one.

Not covered here: replay. A relay can deliver a sealed message twice, or an
old one later; the messages themselves must carry what makes a stale one
harmless (the connect core's session generation).
"""

from __future__ import annotations

import enum

import nacl.exceptions
import nacl.public

from natkit.errors import LocalProtocolError, RemoteProtocolError
from natkit.identity.keys import PrivateKey, PublicKey

#: Bytes a sealed message has beyond its plaintext: nonce (24) and tag (16).
SEAL_OVERHEAD = nacl.public.Box.NONCE_SIZE + 16


class SealFailure(enum.Enum):
    """Why a sealed message could not be opened."""

    #: Shorter than a nonce and a tag: cut off, or not a sealed message.
    TRUNCATED = "truncated"
    #: The tag does not verify: forged, garbled, from another sender or for
    #: another recipient.
    FORGED = "forged"
    #: The sender's key is a low-order point: no shared secret exists
    #: (libsodium refuses it, RFC 7748 §6.1).
    WEAK_KEY = "weak-key"


class SealError(RemoteProtocolError):
    """A sealed message from a peer cannot be opened."""

    def __init__(self, reason: SealFailure, sender: PublicKey) -> None:
        super().__init__(f"cannot open a message from {sender}: {reason.value}")
        self.reason = reason
        self.sender = sender


class WeakKeyError(LocalProtocolError):
    """Asked to seal to a public key no shared secret can be made with."""

    def __init__(self, recipient: PublicKey) -> None:
        super().__init__(f"cannot seal to {recipient}: a low-order (weak) public key")
        self.recipient = recipient


def _box(private: PrivateKey, public: PublicKey) -> nacl.public.Box | None:
    try:
        return nacl.public.Box(
            nacl.public.PrivateKey(private.raw), nacl.public.PublicKey(public.raw)
        )
    except nacl.exceptions.CryptoError:
        # libsodium's crypto_box_beforenm fails on an all-zero shared secret.
        return None


def check_recipient(sender: PrivateKey, recipient: PublicKey) -> None:
    """Raise :class:`WeakKeyError` when ``sender`` cannot seal to ``recipient``.

    A low-order public key (all zeros among them) gives every private key the
    same all-zero shared secret (RFC 7748 §6.1), so no holder of it can be told
    apart: callers check a peer's key once, when they are given it, rather than
    at the first message.
    """
    if _box(sender, recipient) is None:
        raise WeakKeyError(recipient)


def seal(sender: PrivateKey, recipient: PublicKey, plaintext: bytes) -> bytes:
    """Seal ``plaintext`` from ``sender`` to ``recipient``: nonce + ciphertext."""
    box = _box(sender, recipient)
    if box is None:
        raise WeakKeyError(recipient)
    return bytes(box.encrypt(plaintext))


def unseal(recipient: PrivateKey, sender: PublicKey, sealed: bytes) -> bytes:
    """Open a message ``sender`` sealed to ``recipient``; :class:`SealError` otherwise."""
    if len(sealed) < SEAL_OVERHEAD:
        raise SealError(SealFailure.TRUNCATED, sender)
    box = _box(recipient, sender)
    if box is None:
        raise SealError(SealFailure.WEAK_KEY, sender)
    try:
        return box.decrypt(sealed)
    except nacl.exceptions.CryptoError:
        raise SealError(SealFailure.FORGED, sender) from None
