"""Link impairments: one-way delay, jitter and loss, per direction."""

from __future__ import annotations

import math
from dataclasses import dataclass

from natkit.simulations.errors import SimulationError


@dataclass(frozen=True, slots=True)
class OneWay:
    """The impairment a datagram suffers crossing a link in one direction.

    The delay of one crossing is ``delay + U[0, jitter)``; with jitter,
    datagrams sent close together may arrive out of order, as on real paths.
    """

    #: Fixed one-way delay in seconds.
    delay: float = 0.0
    #: Upper bound of the extra uniform random delay in seconds.
    jitter: float = 0.0
    #: Probability in [0, 1] that a datagram is lost on this crossing.
    loss: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.delay) and self.delay >= 0):
            raise SimulationError(f"delay must be finite and >= 0, not {self.delay}")
        if not (math.isfinite(self.jitter) and self.jitter >= 0):
            raise SimulationError(f"jitter must be finite and >= 0, not {self.jitter}")
        if not 0.0 <= self.loss <= 1.0:
            raise SimulationError(f"loss must be in [0, 1], not {self.loss}")


#: A perfect crossing: no delay, no jitter, no loss.
IDEAL = OneWay()


@dataclass(frozen=True, slots=True)
class Link:
    """How a node is attached to a realm.

    ``up`` applies to datagrams the node sends into the realm, ``down`` to
    datagrams the realm delivers to the node. A datagram between two nodes
    of one realm crosses the sender's ``up`` and the receiver's ``down``.
    """

    up: OneWay = IDEAL
    down: OneWay = IDEAL

    @classmethod
    def symmetric(cls, delay: float = 0.0, jitter: float = 0.0, loss: float = 0.0) -> Link:
        """The same impairment both ways."""
        way = OneWay(delay, jitter, loss)
        return cls(way, way)


#: An ideal attachment, the default everywhere.
PERFECT = Link()
