"""Long-term X25519 key pairs and their text form.

A node is named by its public key. The text form is WireGuard's (``wg genkey``
/ ``wg pubkey``): standard base64 of the 32 raw bytes, 44 characters with one
``=``. Parsing is strict (the canonical encoding only), so two spellings of
one key can never look like two peers.

The key arithmetic is libsodium's, through PyNaCl, which clamps the scalar
itself (RFC 7748 §5): any 32 bytes are a private key, and
:attr:`PrivateKey.public_key` equals what ``wg pubkey`` prints for the same
file.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

import nacl.public
import nacl.utils

from natkit.errors import LocalProtocolError

#: Raw length of an X25519 key (RFC 7748 §5).
KEY_LENGTH = 32
#: Length of a key's base64 text: 44 characters ending in one ``=``.
KEY_TEXT_LENGTH = 44


class KeyFormatError(LocalProtocolError):
    """A key's text or bytes are not one X25519 key."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        #: What is wrong, for the user.
        self.problem = problem


def _decode(text: str, what: str) -> bytes:
    text = text.strip()
    if len(text) != KEY_TEXT_LENGTH:
        raise KeyFormatError(
            f"{what} must be {KEY_TEXT_LENGTH} characters of base64, got {len(text)}"
        )
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"{what} is not valid base64") from None
    # Python ignores non-zero padding bits; refuse them so the text is canonical.
    if len(raw) != KEY_LENGTH or base64.b64encode(raw).decode() != text:
        raise KeyFormatError(f"{what} is not the canonical base64 of {KEY_LENGTH} bytes")
    return raw


@dataclass(frozen=True, slots=True, order=True)
class PublicKey:
    """An X25519 public key: a node's name.

    Ordered by the raw bytes, compared as unsigned big-endian numbers
    (``bytes`` order): the role rule "the smaller key is controlling" is
    ``a < b``. ``str()`` is the base64 text.
    """

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != KEY_LENGTH:
            raise KeyFormatError(f"a public key is {KEY_LENGTH} bytes")

    @classmethod
    def from_base64(cls, text: str) -> PublicKey:
        """Parse the ``wg pubkey`` text form (surrounding whitespace allowed)."""
        return cls(_decode(text, "public key"))

    def __str__(self) -> str:
        return base64.b64encode(self.raw).decode()

    def __repr__(self) -> str:
        return f"PublicKey({str(self)!r})"


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """An X25519 private key and its public key.

    ``str()`` and ``repr()`` show only the public key, so a private key
    cannot reach a log line or a JSON event by accident; :meth:`to_base64`
    is the one way to its text.
    """

    raw: bytes = field(repr=False)
    #: The matching public key (computed once).
    public_key: PublicKey = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != KEY_LENGTH:
            raise KeyFormatError(f"a private key is {KEY_LENGTH} bytes")
        public = PublicKey(nacl.public.PrivateKey(self.raw).public_key.encode())
        object.__setattr__(self, "public_key", public)

    @classmethod
    def generate(cls) -> PrivateKey:
        """A new key from the operating system's random source (libsodium's),
        clamped as ``wg genkey`` clamps (RFC 7748 §5), so the file looks the same."""
        raw = bytearray(nacl.utils.random(KEY_LENGTH))
        raw[0] &= 248
        raw[31] = (raw[31] & 127) | 64
        return cls(bytes(raw))

    @classmethod
    def from_base64(cls, text: str) -> PrivateKey:
        """Parse the ``wg genkey`` text form (surrounding whitespace allowed)."""
        return cls(_decode(text, "private key"))

    def to_base64(self) -> str:
        """The ``wg genkey`` text form (without a newline)."""
        return base64.b64encode(self.raw).decode()

    def __str__(self) -> str:
        return f"<private key of {self.public_key}>"

    def __repr__(self) -> str:
        return f"PrivateKey(public_key={self.public_key!r})"
