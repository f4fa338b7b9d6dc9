"""natkit: NAT traversal and ICE connectivity toolkit.

The protocol logic lives in sans-IO cores (bytes and ``now`` in; datagrams,
timers and events out). ``natkit.aio`` runs them on asyncio sockets, and
``simulations`` runs the very same cores on a virtual clock.
"""

__version__ = "0.1.0"
