"""The one exception the simulator raises on purpose."""

from __future__ import annotations

from natkit.errors import LocalProtocolError


class SimulationError(LocalProtocolError):
    """A topology or driver was set up or used in a way the simulator cannot model.

    Examples: binding an address the host does not hold, two nodes claiming
    one address in a realm, a core naming a socket index it was not given,
    or scheduling an event in the virtual past.
    """
