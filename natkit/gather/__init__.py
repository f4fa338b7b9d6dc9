"""Candidate gathering: every address at which a peer might reach one socket.

ICE-style candidates (RFC 8445 §5.1.1) and the two kinds ICE has no name
for: host, server-reflexive, port-mapped, NAT64 and static.

* :mod:`~natkit.gather.candidates`: the candidate and report types, the JSON.
* :mod:`~natkit.gather.host`: which interface addresses are host candidates
  (and whether a CLAT runs here).
* :mod:`~natkit.gather.plan`: which server to ask over which path, and
  the report from what they answered (pure functions).
* :mod:`~natkit.gather.reflexive`: the sans-IO core asking many STUN
  servers at once from one socket.

:mod:`natkit.aio.candidates` runs them on real sockets.
"""
