"""Connectivity checks on the wire (RFC 8445 §7), on natkit's STUN codec.

A check is a STUN Binding request from one agent to the other with
short-term credentials (RFC 8489 §9.1): USERNAME ``"<their ufrag>:<our
ufrag>"`` and MESSAGE-INTEGRITY keyed with *their* password, PRIORITY,
ICE-CONTROLLING or ICE-CONTROLLED with our tie-breaker, USE-CANDIDATE when
the controlling side nominates, FINGERPRINT. The answer is a success
response with XOR-MAPPED-ADDRESS, signed with the answerer's own password
(the same key), or a 487 Role Conflict error (§7.3.1.1).

Pure functions: building a request or response from its parts, reading
the ICE attributes out of a parsed request, and making credentials from an
injected random source.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from natkit.endpoint import Endpoint
from natkit.stun.attributes import (
    ErrorCodeAttribute,
    FlagAttribute,
    IntegerAttribute,
    TextAttribute,
    XorAddressAttribute,
)
from natkit.stun.codec import Message, encode_message
from natkit.stun.constants import (
    ERROR_REASONS,
    AttributeType,
    ErrorCode,
    MessageClass,
    Method,
)

#: RFC 8839 §5.1 ice-char: ALPHA / DIGIT / "+" / "/".
ICE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
#: RFC 8445 §5.3: at least 24 bits of randomness in the ufrag, 128 in the
#: password; 8 and 24 ice-chars give 48 and 144 bits.
UFRAG_CHARS = 8
PWD_CHARS = 24

_USE_CANDIDATE = FlagAttribute(AttributeType.USE_CANDIDATE)


def random_ice_string(rng: random.Random, length: int) -> str:
    """``length`` ice-chars drawn from ``rng``."""
    return "".join(rng.choice(ICE_CHARS) for _ in range(length))


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """The ICE attributes of a received Binding request."""

    #: The two halves of USERNAME: the receiver's ufrag, then the sender's.
    local_ufrag: str
    remote_ufrag: str
    priority: int
    #: ``True``: the sender claims controlling (ICE-CONTROLLING).
    controlling: bool
    tie_breaker: int
    use_candidate: bool


def split_username(message: Message) -> tuple[str, str] | None:
    """USERNAME as (receiver's ufrag, sender's ufrag), or ``None``."""
    username = message.text(AttributeType.USERNAME)
    if username is None:
        return None
    local, colon, remote = username.partition(":")
    if not colon or not local or not remote:
        return None
    return local, remote


def read_request(message: Message) -> CheckRequest | None:
    """The check's attributes, or ``None`` when one is missing or both
    role attributes are present (RFC 8445 §7.3: the request is malformed)."""
    names = split_username(message)
    if names is None:
        return None
    priority = controlling = controlled = None
    use_candidate = False
    for attribute in message.attributes:
        kind = attribute.type
        if kind == AttributeType.PRIORITY and priority is None:
            priority = attribute
        elif kind == AttributeType.ICE_CONTROLLING and controlling is None:
            controlling = attribute
        elif kind == AttributeType.ICE_CONTROLLED and controlled is None:
            controlled = attribute
        elif kind == AttributeType.USE_CANDIDATE:
            use_candidate = True
    role = controlling if controlled is None else (controlled if controlling is None else None)
    if not isinstance(priority, IntegerAttribute) or not isinstance(role, IntegerAttribute):
        return None
    if priority.value == 0:
        return None
    return CheckRequest(
        local_ufrag=names[0],
        remote_ufrag=names[1],
        priority=priority.value,
        controlling=role is controlling,
        tie_breaker=role.value,
        use_candidate=use_candidate,
    )


def build_request(
    transaction_id: bytes,
    *,
    username: TextAttribute,
    priority: int,
    controlling: bool,
    tie_breaker: int,
    use_candidate: bool,
    key: bytes,
) -> bytes:
    """A check: ``username`` is the prepared ``"their:ours"`` USERNAME,
    ``key`` the short-term key of *their* password."""
    role = AttributeType.ICE_CONTROLLING if controlling else AttributeType.ICE_CONTROLLED
    attributes: tuple[TextAttribute | IntegerAttribute | FlagAttribute, ...] = (
        username,
        IntegerAttribute(AttributeType.PRIORITY, priority),
        IntegerAttribute(role, tie_breaker),
    )
    if use_candidate:
        attributes += (_USE_CANDIDATE,)
    message = Message(Method.BINDING, MessageClass.REQUEST, transaction_id, attributes)
    return encode_message(message, integrity_key=key, fingerprint=True)


def build_success(transaction_id: bytes, source: Endpoint, key: bytes) -> bytes:
    """The answer to a check that came from ``source`` (RFC 8445 §7.3.1.2),
    signed with our own short-term key."""
    message = Message(
        Method.BINDING,
        MessageClass.SUCCESS_RESPONSE,
        transaction_id,
        (XorAddressAttribute(AttributeType.XOR_MAPPED_ADDRESS, source),),
    )
    return encode_message(message, integrity_key=key, fingerprint=True)


def build_role_conflict(transaction_id: bytes, key: bytes) -> bytes:
    """487 Role Conflict (RFC 8445 §7.3.1.1), signed with our own key."""
    code = ErrorCode.ROLE_CONFLICT
    message = Message(
        Method.BINDING,
        MessageClass.ERROR_RESPONSE,
        transaction_id,
        (ErrorCodeAttribute(code, ERROR_REASONS[code]),),
    )
    return encode_message(message, integrity_key=key, fingerprint=True)
