"""Flag checks more than one command shares; each raises
:class:`~natkit.errors.LocalProtocolError` naming the flag, which the
commands print as one line and exit 64 (EX_USAGE)."""

from __future__ import annotations

import ssl

from natkit.aio.stun_stream import tls_context
from natkit.errors import LocalProtocolError

__all__ = ["tls_ca_context"]


def tls_ca_context(cafile: str, *, verify: bool = True) -> ssl.SSLContext:
    """``--tls-ca FILE``, loaded once while the flags are checked: a file that
    cannot be read or holds no certificate is refused before anything starts."""
    try:
        return tls_context(cafile, verify=verify)
    except LocalProtocolError as exc:
        raise LocalProtocolError(f"--tls-ca {exc}") from None
