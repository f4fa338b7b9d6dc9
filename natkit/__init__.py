"""natkit: NAT traversal and ICE connectivity toolkit.

The library in a handful of asyncio calls, each the whole of one ``natkit``
command (same defaults, same report)::

    report = await natkit.classify("203.0.113.10")        # natkit classify
    candidates = await natkit.gather_candidates(["203.0.113.10"])  # natkit candidates
    async with natkit.map_port(51820) as mapper: ...       # natkit portmap
    async with natkit.serve_stun("0.0.0.0") as server: ... # natkit stun-server
    event = await natkit.probe_birthday("easy", peer, key=key)  # natkit birthday probe
    async with natkit.connect(key, peers, rendezvous=rv) as node: ...  # natkit connect
    natkit.explain(report_a, report_b).sentence               # natkit explain

Their options and report types are exported here too, and so is the
exception tree: everything natkit raises on purpose is a
:class:`NatkitError`; a :class:`LocalProtocolError` is the caller's
mistake, a :class:`RemoteProtocolError` a peer's, a :class:`NatkitTimeout`
a peer's silence.

Underneath, the protocol logic lives in sans-IO cores (bytes and ``now``
in; datagrams, timers and events out): ``natkit.stun``, ``natkit.probe``,
``natkit.gather``, ``natkit.portmap``, ``natkit.birthday``. ``natkit.aio``
runs them on asyncio sockets, and ``natkit.simulations`` runs the very same
cores on a virtual clock.

``import natkit`` stays cheap (``natkit --version`` and every ``natkit
classify`` pay for it): the names below are imported on first use.
"""

from natkit.errors import (
    InvalidArgument,
    InvalidEndpoint,
    LocalProtocolError,
    MalformedInput,
    NatkitError,
    NatkitTimeout,
    RemoteProtocolError,
)

__version__ = "0.1.0"

#: Public name -> the module defining it, imported on first use (PEP 562).
#: A new export is one row here and the same import in the block below
#: (``tests/unit/project/test_api.py`` checks that the two agree).
_EXPORTS: dict[str, str] = {
    # Entry points.
    "classify": "natkit.aio.classify",
    "gather_candidates": "natkit.aio.candidates",
    "map_port": "natkit.aio.portmap.mapper",
    "serve_stun": "natkit.aio.stun_server",
    "probe_birthday": "natkit.aio.birthday",
    "connect": "natkit.aio.connect",
    # What they take and return.
    "ClassifierConfig": "natkit.probe.classifier",
    "LifetimeConfig": "natkit.probe.lifetime",
    "ClassificationReport": "natkit.probe.report",
    "GatherOptions": "natkit.aio.candidates",
    "CandidateReport": "natkit.gather.candidates",
    "Candidate": "natkit.gather.candidates",
    "PortMapper": "natkit.aio.portmap.mapper",
    "PortMapperConfig": "natkit.portmap.mapper",
    "Mapping": "natkit.portmap.mapping",
    "LeaseJournal": "natkit.aio.portmap.journal",
    "AsyncStunServer": "natkit.aio.stun_server",
    "BirthdayRole": "natkit.birthday.wire",
    "BirthdayEvent": "natkit.birthday.events",
    "PairFound": "natkit.birthday.events",
    "SearchExhausted": "natkit.birthday.events",
    "PortRange": "natkit.birthday.ports",
    "Endpoint": "natkit.endpoint",
    "Connection": "natkit.aio.connect",
    "ConnectOptions": "natkit.aio.connect",
    "PathSelected": "natkit.ice.events",
    "PathLost": "natkit.ice.events",
    "PeerUnreachable": "natkit.ice.events",
    "explain": "natkit.ice.explain",
    "Explanation": "natkit.ice.explain",
    "TraversalReport": "natkit.ice.report",
    "PrivateKey": "natkit.identity.keys",
    "PublicKey": "natkit.identity.keys",
    # Errors that belong to one entry point (the roots are imported above).
    "NoMappingError": "natkit.aio.portmap.mapper",
    "StunUnansweredError": "natkit.aio.birthday",
}

# ``typing.TYPE_CHECKING`` without importing ``typing`` (~10 ms at start-up);
# type checkers treat any ``TYPE_CHECKING`` as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from natkit.aio.birthday import StunUnansweredError as StunUnansweredError
    from natkit.aio.birthday import probe_birthday as probe_birthday
    from natkit.aio.candidates import GatherOptions as GatherOptions
    from natkit.aio.candidates import gather_candidates as gather_candidates
    from natkit.aio.classify import classify as classify
    from natkit.aio.connect import Connection as Connection
    from natkit.aio.connect import ConnectOptions as ConnectOptions
    from natkit.aio.connect import connect as connect
    from natkit.aio.portmap.journal import LeaseJournal as LeaseJournal
    from natkit.aio.portmap.mapper import NoMappingError as NoMappingError
    from natkit.aio.portmap.mapper import PortMapper as PortMapper
    from natkit.aio.portmap.mapper import map_port as map_port
    from natkit.aio.stun_server import AsyncStunServer as AsyncStunServer
    from natkit.aio.stun_server import serve_stun as serve_stun
    from natkit.birthday.events import BirthdayEvent as BirthdayEvent
    from natkit.birthday.events import PairFound as PairFound
    from natkit.birthday.events import SearchExhausted as SearchExhausted
    from natkit.birthday.ports import PortRange as PortRange
    from natkit.birthday.wire import BirthdayRole as BirthdayRole
    from natkit.endpoint import Endpoint as Endpoint
    from natkit.gather.candidates import Candidate as Candidate
    from natkit.gather.candidates import CandidateReport as CandidateReport
    from natkit.ice.events import PathLost as PathLost
    from natkit.ice.events import PathSelected as PathSelected
    from natkit.ice.events import PeerUnreachable as PeerUnreachable
    from natkit.ice.explain import Explanation as Explanation
    from natkit.ice.explain import explain as explain
    from natkit.ice.report import TraversalReport as TraversalReport
    from natkit.identity.keys import PrivateKey as PrivateKey
    from natkit.identity.keys import PublicKey as PublicKey
    from natkit.portmap.mapper import PortMapperConfig as PortMapperConfig
    from natkit.portmap.mapping import Mapping as Mapping
    from natkit.probe.classifier import ClassifierConfig as ClassifierConfig
    from natkit.probe.lifetime import LifetimeConfig as LifetimeConfig
    from natkit.probe.report import ClassificationReport as ClassificationReport

# The lazy names come from the table (``from natkit import *`` imports them all).
__all__ = [  # noqa: PLE0604
    "InvalidArgument",
    "InvalidEndpoint",
    "LocalProtocolError",
    "MalformedInput",
    "NatkitError",
    "NatkitTimeout",
    "RemoteProtocolError",
    "__version__",
    *_EXPORTS,
]


def __getattr__(name: str) -> object:
    """Import an exported name on first use (and keep it)."""
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'natkit' has no attribute {name!r}")
    import importlib  # noqa: PLC0415 (only when a name is first asked for)

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
