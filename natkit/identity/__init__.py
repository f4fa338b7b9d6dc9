"""A node's identity: its long-term X25519 key pair and sealing.

Peers are named by their :class:`PublicKey`; everything sent through
signalling is sealed end to end with :func:`seal` / :func:`unseal`. Key files
(``wg genkey`` format) are read and written by :mod:`natkit.identity.keyfile`,
the one module here that touches files, imported only by those who need it.
"""

from natkit.identity.keys import KEY_LENGTH, KeyFormatError, PrivateKey, PublicKey
from natkit.identity.seal import (
    SEAL_OVERHEAD,
    SealError,
    SealFailure,
    WeakKeyError,
    check_recipient,
    seal,
    unseal,
)

__all__ = [
    "KEY_LENGTH",
    "SEAL_OVERHEAD",
    "KeyFormatError",
    "PrivateKey",
    "PublicKey",
    "SealError",
    "SealFailure",
    "WeakKeyError",
    "check_recipient",
    "seal",
    "unseal",
]
