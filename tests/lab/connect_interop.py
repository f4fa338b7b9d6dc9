"""One end of an ICE session between natkit and aioice, run in a lab namespace.

    python connect_interop.py natkit|aioice --controlling|--controlled --stun IP:PORT

aioice's ``Connection`` has no signalling, so the test carries it: each end
prints one JSON line with its credentials and candidates (SDP candidate
attribute values, RFC 8839 §5.1), reads the other's from stdin, then prints
``{"event": "connected", "local": ..., "remote": ...}`` once it has a
nominated, checked pair, and keeps answering until stdin closes.

The natkit end is natkit's own stack as ``natkit connect`` runs it (the
agent behind the mux, the trickle gathering on its sockets, ``CoreRunner``),
with the peer's role fixed as for any third-party agent (``add_peer(...,
role=...)``); its candidates go out once gathering has settled, since
aioice takes remote candidates before ``connect()``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from typing import Any

PEER = "aioice"


def candidate_sdp(foundation: str, priority: int, host: str, port: int, kind: str) -> str:
    return f"{foundation} 1 udp {priority} {host} {port} typ {kind}"


async def read_line() -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    return dict(json.loads(line))


async def wait_for_eof() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


def emit(document: dict[str, Any]) -> None:
    print(json.dumps(document), flush=True)


async def run_aioice(controlling: bool, stun: tuple[str, int]) -> None:
    import aioice  # noqa: PLC0415

    connection = aioice.Connection(ice_controlling=controlling, stun_server=stun, use_ipv6=False)
    await connection.gather_candidates()
    emit(
        {
            "ufrag": connection.local_username,
            "pwd": connection.local_password,
            "candidates": [c.to_sdp() for c in connection.local_candidates],
        }
    )
    peer = await read_line()
    connection.remote_username = peer["ufrag"]
    connection.remote_password = peer["pwd"]
    for text in peer["candidates"]:
        await connection.add_remote_candidate(aioice.Candidate.from_sdp(text))
    await connection.add_remote_candidate(None)
    await asyncio.wait_for(connection.connect(), 30)
    pair = connection._nominated[1]
    emit(
        {
            "event": "connected",
            "local": f"{pair.local_candidate.host}:{pair.local_candidate.port}",
            "remote": f"{pair.remote_addr[0]}:{pair.remote_addr[1]}",
        }
    )
    await wait_for_eof()
    await connection.close()


async def run_natkit(controlling: bool, stun: tuple[str, int]) -> None:
    from natkit.aio.candidates import GatherOptions  # noqa: PLC0415
    from natkit.aio.connect_gather import TrickleGathering  # noqa: PLC0415
    from natkit.aio.driver import CoreRunner  # noqa: PLC0415
    from natkit.aio.interfaces import open_gathering_sockets  # noqa: PLC0415
    from natkit.endpoint import Endpoint  # noqa: PLC0415
    from natkit.ice import (  # noqa: PLC0415
        Announcement,
        ConnectAgent,
        PathSelected,
        Role,
        SignalCandidate,
    )
    from natkit.ice.candidates import CandidateKind  # noqa: PLC0415
    from natkit.ice.mux import ConnectMux, HelperEvent  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    sockets = open_gathering_sockets(0)[:1]  # IPv4 only, as the aioice end
    bound = [Endpoint.from_sockaddr(s.getsockname()) for s in sockets]
    agent = ConnectAgent("natkit", rng=random.SystemRandom(), sockets=bound)
    mux = ConnectMux(agent)
    selected: asyncio.Future[PathSelected] = loop.create_future()
    gathering: TrickleGathering

    def on_event(event: object) -> None:
        if isinstance(event, HelperEvent):
            gathering.helper_event(event.event)
        elif isinstance(event, PathSelected) and not selected.done():
            selected.set_result(event)

    runner: CoreRunner[Any] = CoreRunner(mux, on_event, loop)
    await runner.attach(sockets)

    def added(new: Any, removed: Any) -> None:
        now = loop.time()
        for candidate in new:
            agent.add_local_candidate(candidate, now, socket=0)
        runner.transmit(now)

    gathering = TrickleGathering(
        mux,
        runner.transmit,
        runner.local_endpoints,
        servers=[f"{stun[0]}:{stun[1]}"],
        options=GatherOptions(nat64=False),
        on_change=added,
    )
    gathering.start()
    role = Role.CONTROLLING if controlling else Role.CONTROLLED
    agent.add_peer(PEER, loop.time(), role=role)
    runner.transmit()
    while gathering.rounds == 0 or gathering.gathering:
        await asyncio.sleep(0.05)
    ufrag, pwd = agent.credentials(PEER)
    emit(
        {
            "ufrag": ufrag,
            "pwd": pwd,
            "candidates": [
                candidate_sdp(c.foundation, c.priority, str(c.address.address), c.address.port,
                              c.kind.value)
                for c in agent.announced
            ],
        }
    )  # fmt: skip
    peer = await read_line()
    kinds = {kind.value: kind for kind in CandidateKind}
    remote = []
    for text in peer["candidates"]:
        foundation, _component, _transport, priority, host, port, _typ, kind, *_ = text.split()
        remote.append(
            SignalCandidate(
                kinds[kind], Endpoint.parse(f"{host}:{port}"), int(priority), foundation
            )
        )
    announcement = Announcement(
        generation=1, ufrag=peer["ufrag"], pwd=peer["pwd"], tie_breaker=0, candidates=tuple(remote)
    )
    agent.receive_signal(PEER, announcement, loop.time())
    runner.transmit()
    path = await asyncio.wait_for(selected, 30)
    emit(
        {
            "event": "connected",
            "local": str(path.local),
            "remote": str(path.remote),
            "kind": path.kind.value,
        }
    )
    await wait_for_eof()
    await gathering.close()
    runner.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("side", choices=["natkit", "aioice"])
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--controlling", action="store_true")
    role.add_argument("--controlled", action="store_true")
    parser.add_argument("--stun", required=True)
    args = parser.parse_args()
    host, _, port = args.stun.rpartition(":")
    run = run_natkit if args.side == "natkit" else run_aioice
    asyncio.run(run(args.controlling, (host, int(port))))


if __name__ == "__main__":
    main()
