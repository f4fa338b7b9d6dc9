"""The connect core's knobs, with their defaults and the bounds they imply.

Every timing of :class:`~natkit.ice.agent.ConnectAgent` is a field here
(no module globals to patch). The defaults, and why:

* **Pacing** ``ta`` = 50 ms (RFC 8445 §14.2): at most one connectivity
  check (new, triggered, re-check, retransmission) leaves the agent per
  ``ta``, over all peers. Keepalives are not paced by ``ta`` (they are
  consent checks on selected paths, RFC 7675 §5.1; RFC 8445 §11 paces
  keepalives separately): each selected path sends one per interval.
* **Checks** retransmit at 0, 0.5, 1.5, 3.5, 7.5 s and fail at 9.5 s
  (``check_policy``: RTO 500 ms doubling, 5 transmissions, then 4 RTOs);
  re-checks of pairs that failed before send ``recheck_transmissions``.
* **Selection**: the controlling side picks among valid pairs by smoothed
  RTT once every pair has been checked or ``selection_settle`` after the
  first success. A switch to another pair needs ``switch_confirmations``
  consecutive samples that beat the selected path's SRTT by both
  ``switch_margin`` seconds and ``switch_ratio`` of it (5 ms and 10 %), one
  every ``confirm_interval`` (a direct pair of higher priority needs only
  samples not worse by both): near-equal paths never flap.
* **Keepalive**: every ``keepalive_interval`` (15 s, or 45 % of the NAT's
  ``binding_lifetime`` when ``classify`` measured it, so two keepalives
  fit in one lifetime), jittered down by up to ``keepalive_jitter``.
* **Loss**: an unanswered keepalive is resent every ``loss_retransmit``
  (0.5 s); after ``loss_transmissions`` (5) the path is lost. Bound: a path
  that dies is reported lost at most ``loss_bound`` = keepalive interval +
  2.5 s later (17.5 s by default).
* **Upgrade re-checks**: every pair but the selected one is re-checked;
  the interval starts at ``recheck_min`` (5 s) and doubles while nothing
  changes, up to ``recheck_max`` (2 min) for working pairs and
  ``retry_max`` (5 min) for failed ones; it never stops, and restarts at
  ``recheck_min`` on ``network_changed``, a new remote candidate, a lost
  path or a peer restart.
* **Relay** (issue 12): while no path is selected, relayed pairs are
  checked first and the first valid one is nominated at once (no settling
  wait: a direct path replaces it through the hysteresis). While a direct
  path is selected and a relayed pair is valid, the relayed pair is
  re-checked every keepalive interval (it stands by, warm), and the direct
  path is kept alive every ``standby_keepalive`` (5 s, RFC 7675's consent
  interval), so its loss is noticed within ``downgrade_bound`` (7.5 s) and
  traffic moves to the relay one relay round trip later.
* **Signalling**: an announcement not yet acknowledged is re-sent after 1,
  2, 4, ... s, at most every ``signal_retry_max`` (5 min).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from natkit.errors import LocalProtocolError
from natkit.ice.ladder import LadderConfig
from natkit.stun.transaction import RetransmissionPolicy

#: RFC 8445 §14.2: Ta must not be below 5 ms.
MIN_TA = 0.005


@dataclass(frozen=True, slots=True)
class ConnectConfig:
    """Timings and limits of a connect agent (see the module doc)."""

    #: RFC 8445 §14.2 pacing of connectivity checks, agent-wide, seconds.
    ta: float = 0.05
    #: Retransmission of a check: RTO, transmissions, final wait in RTOs.
    check_policy: RetransmissionPolicy = field(
        default_factory=lambda: RetransmissionPolicy(rto=0.5, rc=5, rm=4)
    )
    #: Transmissions of a re-check of a pair that failed before.
    recheck_transmissions: int = 2
    #: Longest wait after the first valid pair before the first selection.
    selection_settle: float = 0.5
    #: A switch needs the challenger faster by this many seconds...
    switch_margin: float = 0.005
    #: ...and by this fraction of the selected path's SRTT...
    switch_ratio: float = 0.10
    #: ...in this many consecutive samples...
    switch_confirmations: int = 3
    #: ...taken this far apart.
    confirm_interval: float = 1.0
    #: The NAT's UDP binding lifetime from ``classify`` (``None``: unknown).
    binding_lifetime: float | None = None
    #: Keepalive interval when the binding lifetime is unknown (RFC 8445 §11).
    keepalive_default: float = 15.0
    #: Never keep alive more often than this.
    keepalive_minimum: float = 1.0
    #: Each keepalive comes up to this fraction early (RFC 7675 §5.1 randomises).
    keepalive_jitter: float = 0.2
    #: Resend an unanswered keepalive this often...
    loss_retransmit: float = 0.5
    #: ...this many times in all, then the path is lost.
    loss_transmissions: int = 5
    #: First re-check interval of unselected pairs (and after any restart).
    recheck_min: float = 5.0
    #: Longest re-check interval of a working, unselected pair.
    recheck_max: float = 120.0
    #: Longest re-check interval of a failed pair (the reconnection backoff).
    retry_max: float = 300.0
    #: First re-send of an unacknowledged announcement.
    signal_retry_min: float = 1.0
    #: Longest interval between re-sends.
    signal_retry_max: float = 300.0
    #: Report ``PeerUnreachable(NO_SIGNAL)`` when the peer is silent this long.
    signal_timeout: float = 30.0
    #: A path the consumer rejected is not selected again for this long.
    unusable_hold: float = 60.0
    #: Most remote candidates per peer (peer-reflexive ones included).
    max_remote_candidates: int = 32
    #: Most candidate pairs per peer (RFC 8445 §6.1.2.5 suggests 100).
    max_pairs: int = 100
    #: Emit a ``PairChecked`` event for every check that ends.
    pair_events: bool = False
    #: Check relayed pairs first while no path is selected, and select the
    #: first valid one at once (issue 12's relay-first).
    relay_first: bool = True
    #: Keepalive interval of a selected direct path while a relayed pair
    #: stands by (RFC 7675 §5.1's 5 s consent checks).
    standby_keepalive: float = 5.0
    #: When birthday probing is worth trying (the escalation ladder).
    ladder: LadderConfig = field(default_factory=LadderConfig)

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, float) and not (math.isfinite(value) and value >= 0):
                raise LocalProtocolError(f"ConnectConfig.{item.name} must be finite and >= 0")
        if self.ta < MIN_TA:
            raise LocalProtocolError(f"ta must be at least {MIN_TA} s (RFC 8445 §14.2)")
        positive = (
            "loss_retransmit",
            "confirm_interval",
            "keepalive_minimum",
            "recheck_min",
            "signal_retry_min",
            "standby_keepalive",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise LocalProtocolError(f"ConnectConfig.{name} must be > 0")
        if self.binding_lifetime is not None and not self.binding_lifetime > 0:
            raise LocalProtocolError("binding_lifetime must be > 0")
        if not 0 <= self.keepalive_jitter < 1 or not 0 <= self.switch_ratio < 1:
            raise LocalProtocolError("keepalive_jitter and switch_ratio must be in [0, 1)")
        counts = ("recheck_transmissions", "switch_confirmations", "loss_transmissions")
        for name in counts:
            if getattr(self, name) < 1:
                raise LocalProtocolError(f"ConnectConfig.{name} must be >= 1")
        if self.recheck_max < self.recheck_min or self.retry_max < self.recheck_min:
            raise LocalProtocolError("recheck_max and retry_max must be >= recheck_min")
        if self.signal_retry_max < self.signal_retry_min:
            raise LocalProtocolError("signal_retry_max must be >= signal_retry_min")
        if self.max_remote_candidates < 1 or self.max_pairs < 1:
            raise LocalProtocolError("max_remote_candidates and max_pairs must be >= 1")

    @property
    def keepalive_interval(self) -> float:
        """Seconds between keepalives on a selected path: the default, or
        45 % of the binding lifetime when that is shorter (two keepalives per
        lifetime, so one lost keepalive does not let the mapping expire)."""
        interval = self.keepalive_default
        if self.binding_lifetime is not None:
            interval = min(interval, 0.45 * self.binding_lifetime)
        return max(self.keepalive_minimum, interval)

    @property
    def loss_window(self) -> float:
        """Seconds from an unanswered keepalive to ``PathLost``."""
        return self.loss_retransmit * self.loss_transmissions

    @property
    def loss_bound(self) -> float:
        """Longest time from a path's death to its ``PathLost``."""
        return self.keepalive_interval + self.loss_window

    @property
    def standby_interval(self) -> float:
        """Keepalive interval of a direct path with a relayed one standing by."""
        return max(self.keepalive_minimum, min(self.keepalive_interval, self.standby_keepalive))

    @property
    def downgrade_bound(self) -> float:
        """Longest time from a direct path's death to its ``PathLost`` when a
        relayed pair stands by (the relayed path is selected one relay round
        trip later: its nomination check)."""
        return self.standby_interval + self.loss_window
