"""Trust, then verify: moving a WireGuard peer's endpoint, and checking it (pure).

natkit trusts its own checks to choose a path, then verifies that WireGuard
itself works over it, because a path that carries STUN may still not carry
WireGuard (a firewall that passes only what it saw first, a peer whose
WireGuard is down or has another key). Theory of operation:

1. **Move.** :func:`endpoint_change` is the ``wg set`` sequence for one
   change: the endpoint first, with persistent keepalive off; then
   keepalive on, which makes WireGuard send one keepalive at once (the
   kernel module and wireguard-go both do when it goes from off to on), so
   a handshake starts now if there is no session, or the session's next
   packet takes the new path if there is one; then the user's own setting
   back. The order matters: keepalive set before an endpoint fails
   wireguard-go's first handshake ("no known endpoint") and the next try
   waits REKEY_TIMEOUT.
2. **Verify.** Before the change the peer's endpoint, ``latest-handshake``
   and ``transfer-rx`` are noted (:class:`Baseline`). The change is verified
   (:func:`evidence`) as soon as WireGuard shows a handshake newer than the
   baseline, or received bytes from the peer since within a session: both
   mean the peer's WireGuard reached ours after the change, and heard us
   (a handshake completes on both ends only when both messages passed; an
   initiation we answered into a dead end brings bytes but no handshake).
   The peer's adapter moves its own endpoint at the same moment (both ends
   select the same pair), and its keepalive is the traffic that proves the
   path even when a session already exists (WireGuard rekeys only every 2
   minutes, so a fresh handshake alone cannot be demanded without dropping
   the session).
   The peer may have been first: its handshake then reached our WireGuard
   before our change, and WireGuard, which moves a peer's endpoint to the
   source of every authenticated packet (roaming), already used the new
   endpoint. That counts too (``roamed``), when the session is live.
3. **Revert.** Without evidence within :data:`VERIFY_WINDOW` (two of
   WireGuard's REKEY_TIMEOUTs: the first handshake initiation and its
   retransmission), the endpoint goes back to the last verified one and the
   path is rejected (the connect core keeps it out of selection for a while
   and fails over).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from natkit.endpoint import Endpoint
from natkit.wireguard.commands import PeerConfig
from natkit.wireguard.dump import PeerStatus
from natkit.wireguard.keys import WireGuardKey

#: WireGuard's REKEY_TIMEOUT (whitepaper §6.1, the kernel's and
#: wireguard-go's constant): a handshake initiation is retried after it.
REKEY_TIMEOUT = 5.0
#: How long a changed endpoint has to show WireGuard working.
VERIFY_WINDOW = 2 * REKEY_TIMEOUT
#: The persistent keepalive used to make WireGuard send once (seconds); the
#: peer's own setting replaces it at once.
KICK_KEEPALIVE = 25
#: WireGuard's REJECT_AFTER_TIME: a session older than this carries nothing.
SESSION_LIFETIME = 180


class Evidence(enum.Enum):
    """What showed that WireGuard works over a new endpoint."""

    #: A handshake completed after the change.
    HANDSHAKE = "handshake"
    #: Authenticated bytes from the peer arrived after the change.
    RECEIVED = "received"
    #: WireGuard had moved to the endpoint itself (roaming: an authenticated
    #: packet came from it) in a live session before natkit set it.
    ROAMED = "roamed"


@dataclass(frozen=True, slots=True)
class Baseline:
    """A peer's WireGuard state just before an endpoint change."""

    latest_handshake: int | None
    rx_bytes: int
    #: Where WireGuard sent before the change.
    endpoint: Endpoint | None = None
    #: Unix time when it was read (whole seconds, as ``wg`` prints handshakes).
    taken_at: int = 0

    @classmethod
    def of(cls, peer: PeerStatus | None, taken_at: int = 0) -> Baseline:
        """From ``wg show dump``'s line for the peer (``None``: not listed)."""
        if peer is None:
            return cls(None, 0, None, taken_at)
        return cls(peer.latest_handshake, peer.rx_bytes, peer.endpoint, taken_at)


def evidence(baseline: Baseline, now: PeerStatus | None, endpoint: Endpoint) -> Evidence | None:
    """Whether WireGuard works over ``endpoint``, the one set after
    ``baseline``: ``now`` is the peer's line read since; ``None``: not yet.

    Handshake times are whole seconds, so a handshake in the same second as
    the baseline's does not count; the bytes it brought do.
    """
    live = (
        baseline.latest_handshake is not None
        and baseline.taken_at - baseline.latest_handshake <= SESSION_LIFETIME
    )
    if baseline.endpoint == endpoint and live:
        return Evidence.ROAMED
    if now is None:
        return None
    handshake = now.latest_handshake
    if handshake is not None and (
        baseline.latest_handshake is None or handshake > baseline.latest_handshake
    ):
        return Evidence.HANDSHAKE
    # Bytes alone may be a handshake initiation we answered into a dead end
    # (the responder's handshake completes only with the initiator's first
    # data packet): they count within a session.
    if handshake is not None and now.rx_bytes > baseline.rx_bytes:
        return Evidence.RECEIVED
    return None


def endpoint_change(
    peer: WireGuardKey, endpoint: Endpoint, keepalive: int | None
) -> list[PeerConfig]:
    """The ``wg set`` steps that move ``peer`` to ``endpoint`` and make
    WireGuard send at once (module doc, 1); ``keepalive``: the peer's own
    persistent keepalive (``None``: off), restored at the end."""
    steps = [
        PeerConfig(peer, endpoint=endpoint, persistent_keepalive=0),
        PeerConfig(peer, persistent_keepalive=keepalive or KICK_KEEPALIVE),
    ]
    if keepalive is None:
        steps.append(PeerConfig(peer, persistent_keepalive=0))
    return steps
