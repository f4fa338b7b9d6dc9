"""The error-answer table (natkit.turn.requests), row by row."""

from __future__ import annotations

import pytest

from natkit.stun.attributes import ErrorCodeAttribute, TextAttribute
from natkit.stun.codec import Message
from natkit.stun.constants import AttributeType, MessageClass, Method
from natkit.turn.events import TurnFailure
from natkit.turn.requests import (
    Action,
    Request,
    RequestKind,
    RetryLimits,
    Scope,
    decide_error,
    scope_of,
)

LIMITS = RetryLimits(max_stale_nonce=2, max_server_errors=1, backoff=1.0)


def _error(code: int, nonce: str | None = "n2", realm: str | None = "r") -> Message:
    attributes: list[object] = [ErrorCodeAttribute(code, "why")]
    if nonce is not None:
        attributes.append(TextAttribute(AttributeType.NONCE, nonce))
    if realm is not None:
        attributes.append(TextAttribute(AttributeType.REALM, realm))
    return Message(
        Method.ALLOCATE,
        MessageClass.ERROR_RESPONSE,
        b"\0" * 12,
        tuple(attributes),  # type: ignore[arg-type]
    )


def _decide(request: Request, response: Message, credentials: bool = True) -> Action:
    return decide_error(request, response, limits=LIMITS, credentials=credentials, realm="r").action


@pytest.mark.parametrize(
    ("request_state", "response", "credentials", "action"),
    [
        # 401: the challenge to an unsigned request is answered...
        ({}, _error(401), True, Action.RESEND_SIGNED),
        # ...but not without credentials, or without realm and nonce.
        ({}, _error(401), False, Action.FAIL),
        ({}, _error(401, nonce=None), True, Action.FAIL),
        # Signed and refused with the same nonce: wrong credentials.
        ({"nonce": "n2"}, _error(401), True, Action.FAIL),
        # Signed, and a new nonce (restarted server): once.
        ({"nonce": "n1"}, _error(401), True, Action.RESEND_SIGNED),
        ({"nonce": "n1", "reauthenticated": True}, _error(401), True, Action.FAIL),
        # 438: retried while under the limit, realm remembered if absent.
        ({"nonce": "n1"}, _error(438, realm=None), True, Action.RESEND_SIGNED),
        ({"nonce": "n1", "stale_nonces": 2}, _error(438), True, Action.FAIL),
        ({"nonce": "n1"}, _error(438, nonce=None), True, Action.FAIL),
        # 500: once (max_server_errors=1), not for deallocation.
        ({}, _error(500), True, Action.RESEND_LATER),
        ({"server_errors": 1}, _error(500), True, Action.FAIL),
        ({"kind": RequestKind.DEALLOCATE}, _error(500), True, Action.FAIL),
        # Everything else fails at once.
        ({}, _error(486), True, Action.FAIL),
        ({}, _error(508), True, Action.FAIL),
    ],
)
def test_error_table(
    request_state: dict[str, object], response: Message, credentials: bool, action: Action
) -> None:
    fields: dict[str, object] = {"kind": RequestKind.ALLOCATE, "attributes": ()} | request_state
    assert _decide(Request(**fields), response, credentials) is action  # type: ignore[arg-type]


def test_backoff_doubles_and_failures_are_typed() -> None:
    request = Request(RequestKind.REFRESH, (), server_errors=0)
    limits = RetryLimits(2, 3, 1.5)
    delays = []
    for errors in range(3):
        request.server_errors = errors
        delays.append(
            decide_error(request, _error(500), limits=limits, credentials=True, realm="r").delay
        )
    assert delays == [1.5, 3.0, 6.0]
    decision = decide_error(request, _error(486), limits=LIMITS, credentials=True, realm="r")
    assert decision.outcome is not None
    assert (decision.outcome.failure, decision.outcome.code, decision.outcome.reason) == (
        TurnFailure.QUOTA_REACHED,
        486,
        "why",
    )


@pytest.mark.parametrize(
    ("kind", "failure", "scope"),
    [
        (RequestKind.PERMISSION, TurnFailure.FORBIDDEN, Scope.PERMISSION),
        (RequestKind.PERMISSION, TurnFailure.ALLOCATION_MISMATCH, Scope.ALLOCATION),
        (RequestKind.PERMISSION, TurnFailure.TIMEOUT, Scope.ALLOCATION),
        (RequestKind.CHANNEL, TurnFailure.REJECTED, Scope.CHANNEL),
        (RequestKind.REFRESH, TurnFailure.SERVER_ERROR, Scope.ALLOCATION),
        (RequestKind.KEEPALIVE, TurnFailure.REJECTED, Scope.NOTHING),
        (RequestKind.KEEPALIVE, TurnFailure.TIMEOUT, Scope.ALLOCATION),
        (RequestKind.DEALLOCATE, TurnFailure.TIMEOUT, Scope.CLOSE),
    ],
)
def test_what_a_failure_takes_down(kind: RequestKind, failure: TurnFailure, scope: Scope) -> None:
    assert scope_of(kind, failure) is scope
