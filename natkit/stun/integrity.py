"""Credentials and integrity (RFC 8489 §9, §14.5, §14.6, §18.5).

Keys: the short-term key is the OpaqueString-prepared password; the
long-term key is MD5 or SHA-256 of ``username:realm:password``. Checking a
parsed message recomputes the HMAC over the bytes before the integrity
attribute, with the header length rewritten to end at that attribute.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import unicodedata
from typing import TYPE_CHECKING

from natkit.errors import RemoteProtocolError
from natkit.stun.constants import PasswordAlgorithmId

if TYPE_CHECKING:
    from natkit.stun.codec import Message


class IntegrityError(RemoteProtocolError):
    """MESSAGE-INTEGRITY(-SHA256) is missing or does not match the key."""


def opaque_string(text: str) -> str:
    """RFC 8265 OpaqueString preparation, as STUN passwords need it: non-ASCII
    spaces become U+0020, then NFC normalisation."""
    mapped = "".join(" " if unicodedata.category(c) == "Zs" else c for c in text)
    return unicodedata.normalize("NFC", mapped)


def short_term_key(password: str) -> bytes:
    """Key for short-term credentials (ICE connectivity checks, RFC 8489 §9.1)."""
    return opaque_string(password).encode("utf-8")


def long_term_key(
    username: str,
    realm: str,
    password: str,
    algorithm: PasswordAlgorithmId = PasswordAlgorithmId.MD5,
) -> bytes:
    """Key for long-term credentials (TURN, RFC 8489 §9.2.2, §18.5.1):
    ``H(username ":" OpaqueString(realm) ":" OpaqueString(password))``."""
    material = f"{username}:{opaque_string(realm)}:{opaque_string(password)}".encode()
    if algorithm == PasswordAlgorithmId.SHA256:
        return hashlib.sha256(material).digest()
    return hashlib.md5(material, usedforsecurity=False).digest()


def hmac_sha1(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha1).digest()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _covered(raw: bytes, offset: int, attribute_length: int) -> bytes:
    # Header length field = everything up to and including this attribute.
    length = offset - 20 + 4 + attribute_length
    return raw[:2] + struct.pack("!H", length) + raw[4:offset]


def verify_integrity(message: Message, key: bytes) -> None:
    """Check MESSAGE-INTEGRITY-SHA256 if present, else MESSAGE-INTEGRITY.

    Raises :class:`IntegrityError` when neither is present or the digest
    does not match. Only a parsed message can be verified.
    """
    info = message.integrity
    if info is None:
        raise IntegrityError("message was not parsed: nothing to verify")
    if info.sha256_offset is not None:
        digest = info.sha256_digest
        expected = hmac_sha256(key, _covered(info.raw, info.sha256_offset, len(digest)))
        if not hmac.compare_digest(expected[: len(digest)], digest):
            raise IntegrityError("MESSAGE-INTEGRITY-SHA256 does not match")
        return
    if info.sha1_offset is not None:
        expected = hmac_sha1(key, _covered(info.raw, info.sha1_offset, 20))
        if not hmac.compare_digest(expected, info.sha1_digest):
            raise IntegrityError("MESSAGE-INTEGRITY does not match")
        return
    raise IntegrityError("no MESSAGE-INTEGRITY attribute")
