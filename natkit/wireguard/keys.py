"""WireGuard keys as ``wg`` writes them: base64 (RFC 4648 §4) of 32 bytes.

WireGuard's keys are Curve25519 (X25519) keys; natkit only names peers by
their public keys here, it never makes or uses WireGuard key pairs itself.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from natkit.wireguard.errors import KeyFormatError

KEY_LENGTH = 32
#: 43 base64 characters and one "=": exactly what 32 bytes encode to. The
#: last character carries 2 unused bits, which must be zero (canonical form).
_KEY_TEXT = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")


def is_key_text(text: str) -> bool:
    """Whether ``text`` is a key in canonical ``wg`` form."""
    return _KEY_TEXT.fullmatch(text) is not None


@dataclass(frozen=True, slots=True, order=True)
class WireGuardKey:
    """A WireGuard public key (32 bytes); ``str()`` gives the ``wg`` form."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != KEY_LENGTH:
            raise KeyFormatError(f"a WireGuard key is {KEY_LENGTH} bytes, not {len(self.raw)}")

    @classmethod
    def parse(cls, text: str) -> WireGuardKey:
        """Parse the ``wg`` form strictly (no whitespace, canonical padding)."""
        if not is_key_text(text):
            raise KeyFormatError("not a WireGuard key: want base64 of 32 bytes (44 characters)")
        try:
            return cls(base64.b64decode(text, validate=True))
        except binascii.Error:  # pragma: no cover - the pattern admits only valid text
            raise KeyFormatError("not a WireGuard key: bad base64") from None

    def __str__(self) -> str:
        return base64.b64encode(self.raw).decode("ascii")

    def __repr__(self) -> str:
        return f"WireGuardKey({str(self)!r})"
