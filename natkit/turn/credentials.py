"""TURN credentials: a fixed user, or the TURN REST API's time-limited ones.

Long-term credentials (RFC 8489 §9.2) are a username and password; the key
is derived once the server names its realm (:func:`natkit.stun.integrity.long_term_key`).

The TURN REST API (draft-uberti-behave-turn-rest, coturn's
``use-auth-secret`` / ``static-auth-secret``), which is how coturn fleets
are run: whoever knows the shared secret mints credentials valid until a
Unix time, with no server round trip:

* username ``"<expiry as Unix seconds>:<name>"`` (just the expiry when no
  name is given),
* password ``base64(HMAC-SHA1(secret, username))``.

The server recomputes the password and refuses (401) once the expiry has
passed. The expiry is an input here: nothing in this package reads a clock.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from natkit.errors import LocalProtocolError
from natkit.stun.integrity import hmac_sha1


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and password for a TURN server's long-term mechanism."""

    username: str
    password: str

    def __post_init__(self) -> None:
        if not self.username:
            raise LocalProtocolError("a TURN username cannot be empty")

    def __repr__(self) -> str:
        # Never print the password (logs, tracebacks, test failures).
        return f"Credentials(username={self.username!r}, password=<hidden>)"


def rest_credentials(secret: str | bytes, expires_at: int, name: str = "") -> Credentials:
    """Time-limited credentials for a server sharing ``secret``, valid until
    ``expires_at`` (Unix seconds); ``name`` identifies the user in its logs."""
    if expires_at < 0:
        raise LocalProtocolError(f"expiry must be a Unix time, not {expires_at}")
    if ":" in name:
        raise LocalProtocolError(f"a REST API name cannot contain ':' ({name!r})")
    key = secret.encode() if isinstance(secret, str) else secret
    username = f"{expires_at}:{name}" if name else str(expires_at)
    password = base64.b64encode(hmac_sha1(key, username.encode())).decode("ascii")
    return Credentials(username, password)


def rest_expiry(username: str) -> int | None:
    """The expiry a REST API username carries, or ``None`` if it has none."""
    head = username.split(":", 1)[0]
    return int(head) if head.isdigit() else None
