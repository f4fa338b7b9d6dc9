"""Long-term credential state of one TURN client (RFC 8489 §9.2).

The server names its realm and a nonce in a 401 (or a fresh nonce in a
438); from then on every request carries USERNAME, REALM, NONCE and
MESSAGE-INTEGRITY keyed with ``MD5(username:realm:password)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from natkit.stun.attributes import Attribute, TextAttribute
from natkit.stun.constants import AttributeType
from natkit.stun.integrity import long_term_key
from natkit.turn.credentials import Credentials


@dataclass(frozen=True, slots=True)
class Signing:
    """What one request is sent with."""

    attributes: tuple[Attribute, ...]
    #: The MESSAGE-INTEGRITY key (``None``: unsigned).
    key: bytes | None
    #: The nonce it carries (``None``: unsigned).
    nonce: str | None


class LongTermAuth:
    """Realm, nonce and key, learnt from the server's 401 and 438 answers."""

    def __init__(self, credentials: Credentials | None) -> None:
        self.credentials = credentials
        self.realm: str | None = None
        self.nonce: str | None = None
        self._key: bytes | None = None

    @property
    def ready(self) -> bool:
        """Whether requests can be signed (a realm and nonce were given)."""
        return self._key is not None

    def learn(self, realm: str, nonce: str) -> bool:
        """Take a realm and nonce from the server; ``False`` without credentials."""
        credentials = self.credentials
        if credentials is None:
            return False
        if realm != self.realm or self._key is None:
            self._key = long_term_key(credentials.username, realm, credentials.password)
        self.realm, self.nonce = realm, nonce
        return True

    def sign(self, attributes: tuple[Attribute, ...]) -> Signing:
        """``attributes`` with the credential attributes added, and the key."""
        credentials, realm, nonce = self.credentials, self.realm, self.nonce
        if self._key is None or credentials is None or realm is None or nonce is None:
            return Signing(attributes, None, None)
        extra = (
            TextAttribute(AttributeType.USERNAME, credentials.username),
            TextAttribute(AttributeType.REALM, realm),
            TextAttribute(AttributeType.NONCE, nonce),
        )
        return Signing(attributes + extra, self._key, nonce)
