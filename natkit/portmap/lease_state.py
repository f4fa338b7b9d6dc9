"""The lease engine's states, and which calls and moves each one allows.

One file owns the rules (after h11's ``_state.py``): a lease client stores
its :class:`ClientState` explicitly and changes it only along
:data:`TRANSITIONS`; a caller's :class:`LeaseCall` made in a state that does
not allow it raises :class:`LeaseStateError` naming both, instead of being
ignored (a silent no-op hid bugs such as a second ``delete`` waiting for an
event that never came).

The states:

* IDLE: not started. Built with ``start=False`` to delete a lease an
  earlier run left (from a journal), or to probe first.
* PROBING: asking whether the gateway speaks the protocol, creating
  nothing (NAT-PMP's public address request, UPnP's description and
  GetExternalIPAddress); back to IDLE with the answer.
* REQUESTING: creating the mapping, or re-creating one that was lost.
* HELD: a mapping is granted; a renewal is scheduled.
* RENEWING: a renewal is in flight; the mapping stays valid meanwhile.
* DELETING: the caller asked for deletion.
* DELETED, FAILED: finished (deletion over; a permanent refusal or a
  timeout ended it). Nothing leaves a finished client any more.
"""

from __future__ import annotations

from enum import Enum

from natkit.errors import LocalProtocolError


class ClientState(Enum):
    """Where a lease client stands (see the module docstring)."""

    IDLE = "idle"
    PROBING = "probing"
    REQUESTING = "requesting"
    HELD = "held"
    RENEWING = "renewing"
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"


class LeaseCall(Enum):
    """The calls a user makes on a lease client."""

    START = "start"
    PROBE = "probe"
    DELETE = "delete"
    REVALIDATE = "revalidate"


_S = ClientState

#: The states each call is legal in.
ALLOWED_CALLS: dict[LeaseCall, frozenset[ClientState]] = {
    LeaseCall.START: frozenset({_S.IDLE}),
    LeaseCall.PROBE: frozenset({_S.IDLE}),
    # Deleting a probe or an idle client ends it at once (nothing was asked
    # for); otherwise it asks the gateway.
    LeaseCall.DELETE: frozenset({_S.IDLE, _S.PROBING, _S.REQUESTING, _S.HELD, _S.RENEWING}),
    # Re-validation renews a held mapping, or brings a re-creation forward.
    LeaseCall.REVALIDATE: frozenset({_S.REQUESTING, _S.HELD, _S.RENEWING}),
}

#: Every state change the engine may make.
TRANSITIONS: dict[ClientState, frozenset[ClientState]] = {
    _S.IDLE: frozenset({_S.PROBING, _S.REQUESTING, _S.DELETING, _S.DELETED}),
    _S.PROBING: frozenset({_S.IDLE, _S.FAILED, _S.DELETED}),
    _S.REQUESTING: frozenset({_S.HELD, _S.DELETING, _S.DELETED, _S.FAILED}),
    # HELD -> REQUESTING: lost (expired, revoked) or the gateway restarted.
    _S.HELD: frozenset({_S.RENEWING, _S.REQUESTING, _S.DELETING, _S.FAILED}),
    _S.RENEWING: frozenset({_S.HELD, _S.REQUESTING, _S.DELETING, _S.FAILED}),
    _S.DELETING: frozenset({_S.DELETED}),
    _S.DELETED: frozenset(),
    _S.FAILED: frozenset(),
}

#: No datagram, timer or event comes from a client in these states.
FINISHED = frozenset({_S.DELETED, _S.FAILED})


class LeaseStateError(LocalProtocolError):
    """A call (or, from a natkit bug, a move) the client's state does not allow."""

    def __init__(self, state: ClientState, attempted: LeaseCall | ClientState) -> None:
        self.state = state
        self.attempted = attempted
        if isinstance(attempted, LeaseCall):
            text = f"{attempted.value}() is not allowed in state {state.value}"
        else:
            text = f"no move from state {state.value} to {attempted.value}"
        super().__init__(text)


def check_call(state: ClientState, call: LeaseCall) -> None:
    """Raise :class:`LeaseStateError` unless ``call`` is legal in ``state``."""
    if state not in ALLOWED_CALLS[call]:
        raise LeaseStateError(state, call)


def check_move(state: ClientState, new: ClientState) -> None:
    """Raise :class:`LeaseStateError` unless ``state`` may become ``new``."""
    if new is not state and new not in TRANSITIONS[state]:
        raise LeaseStateError(state, new)
