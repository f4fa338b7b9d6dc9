"""Learn a socket's STUN-mapped endpoint with natkit's own client and server.

The peers of :mod:`natkit.simulations.sites` find out how their NAT maps them the
way real peers do: :class:`~natkit.stun.client.StunClient` sends a Binding
request to :class:`~natkit.stun.server.StunServer` on the simulated STUN
host, and the XOR-MAPPED-ADDRESS of the response is the answer. The client's
driver is closed afterwards, so the same socket can then be handed to the
core that punches or probes from it (the mapping it made stays in the NAT).
"""

from __future__ import annotations

import random

from natkit.endpoint import Endpoint
from natkit.simulations.driver import CoreDriver
from natkit.simulations.network import SimSocket
from natkit.simulations.sites import STUN_SERVER, TwoSites
from natkit.stun.client import StunClient
from natkit.stun.codec import binding_request
from natkit.stun.events import ClientEvent, ResponseReceived
from natkit.stun.server import ServerConfig, StunServer

#: A Binding transaction gives up after 39.5 s with the RFC 8489 defaults.
STUN_GIVE_UP = 40.0


def start_stun_server(sites: TwoSites) -> CoreDriver[None]:
    """Run a plain RFC 8489 Binding server on the sites' STUN host."""
    sockets = sites.stun.bind_all([(STUN_SERVER.address, STUN_SERVER.port)])
    return CoreDriver(StunServer(ServerConfig((STUN_SERVER,))), sockets)


def mapped_endpoint(sock: SimSocket, rng: random.Random) -> Endpoint | None:
    """The endpoint the STUN server saw ``sock`` at (``None``: no answer).

    Runs the virtual clock until the response arrives or the transaction
    gives up; a server must be running (:func:`start_stun_server`).
    """
    client = StunClient(rng=rng)
    driver: CoreDriver[ClientEvent] = CoreDriver(client, [sock])
    request = binding_request(client.new_transaction_id())
    driver.invoke(lambda now: client.send_request(request, STUN_SERVER, now))
    sock.host.network.loop.run_until(lambda: bool(driver.events), timeout=STUN_GIVE_UP)
    driver.close()
    for event in driver.events:
        if isinstance(event, ResponseReceived):
            return event.response.xor_mapped_address
    return None
