"""TURN requests and what to do when one is answered with an error.

The decisions are plain functions of the request and the answer, so the
rules read as a table (h11 style) and are tested without a client:

=====  =======================================  ================================
code   condition                                action
=====  =======================================  ================================
401    unsigned request, realm and nonce given  sign with them and resend
401    signed, new nonce, first time            resend (a restarted server)
401    otherwise                                fail: UNAUTHORIZED
438    nonce given, < ``max_stale_nonce`` yet   resend with the new nonce
500    < ``max_server_errors`` yet              resend after 1, 2, 4... × backoff
other                                           fail, typed by the code
=====  =======================================  ================================

and, once a request has failed, what the failure touches (:func:`scope_of`):
a permission or a channel alone, the whole allocation, or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from natkit.endpoint import Endpoint, IPAddress
from natkit.stun.attributes import AddressAttribute, Attribute
from natkit.stun.codec import Message
from natkit.stun.constants import AttributeType, ErrorCode, Method
from natkit.turn.events import Outcome, TurnFailure, failure_for_code

#: Errors servers send without MESSAGE-INTEGRITY (RFC 8489 §9.2.5 for 401 and
#: 438; coturn sends 437 unsigned too).
UNSIGNED_ERRORS = frozenset(
    {ErrorCode.UNAUTHENTICATED, ErrorCode.STALE_NONCE, ErrorCode.ALLOCATION_MISMATCH}
)


class RequestKind(Enum):
    """What a request is for (two kinds share the Refresh method)."""

    ALLOCATE = "allocate"
    REFRESH = "refresh"
    PERMISSION = "permission"
    CHANNEL = "channel"
    DEALLOCATE = "deallocate"
    KEEPALIVE = "keepalive"
    #: A Binding the caller asked for, to measure the round trip.
    PING = "ping"

    @property
    def unsigned(self) -> bool:
        """Binding requests need no credentials (RFC 8489 §10)."""
        return self in (RequestKind.KEEPALIVE, RequestKind.PING)

    @property
    def method(self) -> Method:
        return _METHODS[self]


_METHODS = {
    RequestKind.ALLOCATE: Method.ALLOCATE,
    RequestKind.REFRESH: Method.REFRESH,
    RequestKind.PERMISSION: Method.CREATE_PERMISSION,
    RequestKind.CHANNEL: Method.CHANNEL_BIND,
    RequestKind.DEALLOCATE: Method.REFRESH,
    RequestKind.KEEPALIVE: Method.BINDING,
    RequestKind.PING: Method.BINDING,
}


@dataclass(slots=True)
class Request:
    """One logical request, which may take several transactions (401, 438, 500)."""

    kind: RequestKind
    attributes: tuple[Attribute, ...]
    #: The permission's address or the channel's peer it is about.
    peer: IPAddress | Endpoint | None = None
    #: The nonce the latest transaction was signed with (``None``: unsigned).
    nonce: str | None = None
    stale_nonces: int = 0
    server_errors: int = 0
    reauthenticated: bool = False


@dataclass(frozen=True, slots=True)
class RetryLimits:
    max_stale_nonce: int
    max_server_errors: int
    #: The first 500's delay; doubled for each further one.
    backoff: float


class Action(Enum):
    #: Take ``realm``/``nonce`` and resend signed (401 and 438).
    RESEND_SIGNED = "resend-signed"
    #: Resend after ``delay`` seconds (500).
    RESEND_LATER = "resend-later"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    outcome: Outcome | None = None
    realm: str | None = None
    nonce: str | None = None
    delay: float = 0.0


def decide_error(
    request: Request,
    response: Message,
    *,
    limits: RetryLimits,
    credentials: bool,
    realm: str | None,
) -> Decision:
    """What to do with an error response to ``request`` (see the table above).

    ``credentials``: whether the client has any; ``realm``: the one it
    already knows. Updates nothing: the caller applies the decision.
    """
    error = response.error_code
    if error is None:
        return _fail(TurnFailure.PROTOCOL_ERROR, None, "error response without ERROR-CODE")
    code = error.code
    nonce = response.text(AttributeType.NONCE)
    new_realm = response.text(AttributeType.REALM)
    if code == ErrorCode.UNAUTHENTICATED:
        if not credentials:
            return _fail(TurnFailure.UNAUTHORIZED, code, "the server wants credentials")
        signed = request.nonce is not None
        refused = signed and (request.reauthenticated or nonce == request.nonce)
        if new_realm is not None and nonce is not None and not refused:
            return Decision(Action.RESEND_SIGNED, realm=new_realm, nonce=nonce)
    elif code == ErrorCode.STALE_NONCE:
        known = new_realm or realm
        if credentials and nonce and known and request.stale_nonces < limits.max_stale_nonce:
            return Decision(Action.RESEND_SIGNED, realm=known, nonce=nonce)
    elif code == ErrorCode.SERVER_ERROR and _may_retry(request, limits):
        delay = limits.backoff * (2**request.server_errors)
        return Decision(Action.RESEND_LATER, delay=delay)
    alternate = response.find(AttributeType.ALTERNATE_SERVER)
    return Decision(
        Action.FAIL,
        Outcome(
            failure_for_code(code),
            code,
            error.reason.rstrip("\x00"),  # coturn NUL-terminates some phrases
            alternate.endpoint if isinstance(alternate, AddressAttribute) else None,
        ),
    )


def _may_retry(request: Request, limits: RetryLimits) -> bool:
    # Deallocation is bounded by close_timeout, and keepalives recur anyway.
    return (
        request.kind not in (RequestKind.DEALLOCATE, RequestKind.KEEPALIVE, RequestKind.PING)
        and request.server_errors < limits.max_server_errors
    )


def _fail(failure: TurnFailure, code: int | None, reason: str) -> Decision:
    return Decision(Action.FAIL, Outcome(failure, code, reason))


class Scope(Enum):
    """What a failed request takes down."""

    #: The allocation (AllocationFailed / AllocationLost).
    ALLOCATION = "allocation"
    #: Only the permission it asked for.
    PERMISSION = "permission"
    #: Only the channel it asked for (the peer falls back to indications).
    CHANNEL = "channel"
    #: The deallocation is over (confirmed or not).
    CLOSE = "close"
    #: Nothing: an error answer to a keepalive still shows the server is there.
    NOTHING = "nothing"


def scope_of(kind: RequestKind, failure: TurnFailure) -> Scope:
    """RFC 8656: 437 to any request means the allocation is gone (§7-§12);
    a transaction timeout means the server is (rule 3 of the client)."""
    if kind is RequestKind.DEALLOCATE:
        return Scope.CLOSE
    if kind is RequestKind.PING:
        return Scope.NOTHING  # the caller learns from PingCompleted
    fatal = failure in (TurnFailure.ALLOCATION_MISMATCH, TurnFailure.TIMEOUT)
    if kind is RequestKind.KEEPALIVE:
        return Scope.ALLOCATION if failure is TurnFailure.TIMEOUT else Scope.NOTHING
    if kind is RequestKind.PERMISSION and not fatal:
        return Scope.PERMISSION
    if kind is RequestKind.CHANNEL and not fatal:
        return Scope.CHANNEL
    return Scope.ALLOCATION
