"""Shared constants and helpers of the birthday tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from natkit.birthday.prober import ProberConfig
from natkit.birthday.wire import Kind, Packet, Side, encode_packet, parse_packet
from natkit.sansio import Datagram

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
SESSION = b"\x5e\x55\x10\x4e\x00\x00\x00\x01"
OTHER_SESSION = b"\x5e\x55\x10\x4e\x00\x00\x00\x02"


def config(side: Side, **changes: object) -> ProberConfig:
    """A prober config with the shared key and session."""
    return dataclasses.replace(ProberConfig(KEY, SESSION, side), **changes)  # type: ignore[arg-type]


def packet(kind: Kind, side: Side, sequence: int = 1, echo: int = 0, **changes: object) -> bytes:
    """An authentic packet (unless ``key=``/``session=`` say otherwise)."""
    key = changes.pop("key", KEY)
    session = changes.pop("session", SESSION)
    assert isinstance(key, bytes)
    assert isinstance(session, bytes)
    assert not changes
    return encode_packet(Packet(kind, side, session, sequence, echo), key)


def kinds(sent: Iterable[tuple[float, Datagram]]) -> list[tuple[float, Kind]]:
    """(time, kind) of each datagram a host sent."""
    return [(at, parse_packet(d.data, KEY).kind) for at, d in sent]


def paced_times(sent: Iterable[tuple[float, Datagram]]) -> list[float]:
    """Send times of the rate-capped packets (everything but ACKs)."""
    return [at for at, kind in kinds(sent) if kind is not Kind.ACK]
