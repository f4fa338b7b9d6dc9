"""How a rendezvous client proves it holds the key it claims.

The server opens every connection with a fresh ephemeral X25519 key and a
random 32-byte challenge (SERVER_HELLO). The client answers with its
long-term public key and the challenge sealed from its private key to the
server's ephemeral key (CLIENT_HELLO). Only the holder of the client's
private key (or of the ephemeral key, which never leaves the server) can
make a box that opens with that pair of keys, so nobody can register under
someone else's key and black-hole their messages. A fresh ephemeral key and
challenge per connection make an old proof useless on a new connection.

The sealed text starts with :data:`AUTH_LABEL`, whose first byte is 0x00:
a malicious server could announce a *peer's* public key as its "ephemeral"
key and forward the proof to that peer as if it were a signal message, so
the connect layer's messages must never start with 0x00 (they do not: their
first byte is a non-zero version) and the proof can never be read as one.

What this does not do: authenticate the server (there is no TLS). A
man in the middle can drop or delay messages, as any relay can, but cannot
read or forge them: they are sealed end to end.
"""

from __future__ import annotations

import hmac

from natkit.identity import SEAL_OVERHEAD, PrivateKey, PublicKey, SealError, seal, unseal

#: Length of the server's random challenge.
CHALLENGE_LENGTH = 32
#: What the client seals, before the challenge (domain separation).
AUTH_LABEL = b"\x00natkit-rendezvous-auth-v1\x00"
#: Length of the sealed proof in CLIENT_HELLO.
PROOF_LENGTH = SEAL_OVERHEAD + len(AUTH_LABEL) + CHALLENGE_LENGTH


def prove(client: PrivateKey, server_key: PublicKey, challenge: bytes) -> bytes:
    """The client's answer to ``challenge`` from the server's ephemeral ``server_key``."""
    return seal(client, server_key, AUTH_LABEL + challenge)


def verify(server: PrivateKey, client_key: PublicKey, challenge: bytes, proof: bytes) -> bool:
    """Whether ``proof`` shows that ``client_key``'s holder answered ``challenge``."""
    try:
        opened = unseal(server, client_key, proof)
    except SealError:
        return False
    return hmac.compare_digest(opened, AUTH_LABEL + challenge)
