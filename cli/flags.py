"""Flag checks more than one command shares; each raises
:class:`~natkit.errors.LocalProtocolError` naming the flag, which the
commands print as one line and exit 64 (EX_USAGE)."""

from __future__ import annotations

import argparse
import ssl

from natkit.aio.stun_stream import tls_context
from natkit.endpoint import Endpoint
from natkit.errors import InvalidEndpoint, LocalProtocolError
from natkit.portmap.wire import SERVER_PORT

__all__ = ["gateway_address", "tls_ca_context"]


def gateway_address(text: str) -> str:
    """``--gateway IP`` (or ``IP:PORT``) as an argparse ``type``: an address,
    or argparse's usage error naming the flag (exit 64), rather than a
    port mapping silently skipped for a gateway that cannot be."""
    try:
        Endpoint.parse(text, SERVER_PORT)
    except InvalidEndpoint:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None
    return text


def tls_ca_context(cafile: str, *, verify: bool = True) -> ssl.SSLContext:
    """``--tls-ca FILE``, loaded once while the flags are checked: a file that
    cannot be read or holds no certificate is refused before anything starts."""
    try:
        return tls_context(cafile, verify=verify)
    except LocalProtocolError as exc:
        raise LocalProtocolError(f"--tls-ca {exc}") from None
