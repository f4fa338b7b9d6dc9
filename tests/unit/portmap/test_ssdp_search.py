"""Where the SSDP search goes: the group, and the named gateway by unicast."""

from __future__ import annotations

import ipaddress

from natkit.portmap.ssdp import SSDP_ENDPOINT, SSDP_PORT
from natkit.portmap.ssdp_search import SsdpSearch

GATEWAY = ipaddress.ip_address("192.168.1.1")


def _targets(search: SsdpSearch) -> set[str]:
    search.handle_timer(0.0)
    return {str(d.remote) for d in search.datagrams_to_send()}


def test_the_search_goes_to_the_group_and_to_a_named_gateway() -> None:
    assert _targets(SsdpSearch(0.0, gateway=GATEWAY)) == {
        str(SSDP_ENDPOINT),
        f"{GATEWAY}:{SSDP_PORT}",
    }
    assert _targets(SsdpSearch(0.0)) == {str(SSDP_ENDPOINT)}


def test_only_the_named_gateway_is_asked_when_only_it_may_answer() -> None:
    # --gateway X: no other device on the LAN needs to hear the search.
    assert _targets(SsdpSearch(0.0, gateway=GATEWAY, only_gateway=True)) == {
        f"{GATEWAY}:{SSDP_PORT}"
    }
