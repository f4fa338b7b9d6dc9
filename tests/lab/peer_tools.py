"""Third-party clients run inside the lab, and parsers for what they print."""

from __future__ import annotations

import re

from natkit.endpoint import Endpoint
from natkit.lab import Lab

_NATDISCOVERY_WORDS = {
    "Endpoint Independent": "EI",
    "Address Dependent": "AD",
    "Address and Port Dependent": "APD",
}
_VERDICT = re.compile(r"NAT with (Endpoint Independent|Address Dependent|Address and Port"
                      r" Dependent) (Mapping|Filtering)!")  # fmt: skip


def natdiscovery(lab: Lab, server: Endpoint, *flags: str) -> str:
    """Run coturn's RFC 5780 client in the lab's client namespace against ``server``."""
    argv = ["turnutils_natdiscovery", *flags, "-p", str(server.port), str(server.address)]
    return lab.client_exec(argv, timeout=60).stdout


def parse_verdicts(output: str) -> dict[str, str]:
    """``{"Mapping": "EIM", "Filtering": "APDF"}`` from natdiscovery's output."""
    verdicts: dict[str, str] = {}
    for match in _VERDICT.finditer(output):
        words, kind = match.groups()
        verdicts[kind] = _NATDISCOVERY_WORDS[words] + kind[0]
    return verdicts
