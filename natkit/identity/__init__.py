"""A node's identity: its long-term X25519 key pair, key files, and sealing.

Peers are named by their :class:`PublicKey`; everything sent through
signalling is sealed end to end with :func:`seal` / :func:`unseal`.
"""

from natkit.identity.keyfile import (
    KeyFileError,
    KeyFileProblem,
    load_private_key,
    load_public_key,
    parse_private_key,
    parse_public_key,
    save_private_key,
)
from natkit.identity.keys import KEY_LENGTH, KeyFormatError, PrivateKey, PublicKey
from natkit.identity.seal import (
    SEAL_OVERHEAD,
    SealError,
    SealFailure,
    WeakKeyError,
    seal,
    unseal,
)

__all__ = [
    "KEY_LENGTH",
    "SEAL_OVERHEAD",
    "KeyFileError",
    "KeyFileProblem",
    "KeyFormatError",
    "PrivateKey",
    "PublicKey",
    "SealError",
    "SealFailure",
    "WeakKeyError",
    "load_private_key",
    "load_public_key",
    "parse_private_key",
    "parse_public_key",
    "save_private_key",
    "seal",
    "unseal",
]
