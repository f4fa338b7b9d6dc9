"""The TXT strings natkit writes in the zone, and their strict parsing.

**Message records.** A sender keeps, per recipient, a window of its latest
messages (:mod:`natkit.directory.window`); each is one TXT record at
``<rcpt>.<node>._wireguard._udp.ZONE`` (:mod:`natkit.directory.names`),
whose strings are, in order (RFC 6763 §6 ``key=value`` strings, ``txtvers``
first as §6.7 asks)::

    "txtvers=1"  "stream=<16 hex>"  "seq=<1..2**63-1>"  "<base64>" "<base64>" ...

``stream`` is drawn at random when the sender starts, so a reader can tell a
restarted sender (its numbering starts over) from an old message; ``seq``
counts that stream's messages to this recipient from 1, so a reader that
fell behind the window sees the gap. The sealed message is standard base64
(RFC 4648 §4, padded), cut into strings of exactly 255 characters but the
last: a TXT string holds at most 255 bytes (RFC 1035 §3.3.14), and the
strings of one record keep their order, while the records of a set do not.
One record per message keeps every message whole under DNS's set semantics.

**Instance record.** ``<node>._wireguard._udp.ZONE TXT "txtvers=1"
"pub=<base64 key>"``: the key in its usual text form next to its label.

Parsing accepts exactly what :func:`message_strings` writes: anything else
raises :class:`~natkit.directory.errors.RecordError` with a
:class:`~natkit.directory.errors.RecordProblem`, never another exception,
whatever the bytes (the zone is shared, so its content is untrusted).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from natkit.directory.errors import RecordError, RecordProblem
from natkit.directory.names import KEY_LENGTH
from natkit.signal.channel import MAX_SEALED

#: RFC 1035 §3.3.14: a character-string is a length octet and up to 255 bytes.
MAX_STRING = 255
TXTVERS = b"txtvers=1"
#: Sequence numbers fit a signed 64-bit integer (other implementations' int64).
MAX_SEQ = 2**63 - 1
#: A stream id: 64 random bits as 16 lowercase hex digits.
STREAM_LENGTH = 16
_STREAM_RE = re.compile(rb"stream=([0-9a-f]{16})")
_SEQ_RE = re.compile(rb"seq=([1-9][0-9]{0,18})")
_STREAM_TEXT_RE = re.compile(r"[0-9a-f]{16}")
#: base64 characters of the largest sealed message natkit carries.
MAX_ENCODED = 4 * ((MAX_SEALED + 2) // 3)
#: Header strings before the data.
_HEADER = 3
#: The largest message record on the wire: its strings with their length
#: octets (the header at its longest), plus the record's own overhead in a
#: DNS message (a compressed owner pointer, type, class, TTL, length: 12).
MAX_RECORD_WIRE = (
    1 + len(TXTVERS)
    + 1 + len(b"stream=") + STREAM_LENGTH
    + 1 + len(b"seq=") + len(str(MAX_SEQ))
    + MAX_ENCODED + -(-MAX_ENCODED // MAX_STRING)
    + 12
)  # fmt: skip
#: Room for message records in one DNS message (65,535 bytes over TCP, RFC
#: 1035 §4.2.2), leaving 5,000 for the header, question, the instance
#: records an update also carries, and the TSIG record.
_MESSAGE_BUDGET = 65_535 - 5_000
#: The most records a window may hold, so that a full window of the largest
#: messages still fits one UPDATE and one answer: 10 for 4,096-byte messages.
MAX_WINDOW = _MESSAGE_BUDGET // MAX_RECORD_WIRE


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One sealed message in a sender's window for one recipient."""

    #: The sender's stream: 16 lowercase hex digits, new at each start.
    stream: str
    #: 1 for the stream's first message to this recipient, then +1 each.
    seq: int
    #: The sealed message, opaque here.
    sealed: bytes

    def __post_init__(self) -> None:
        if not _STREAM_TEXT_RE.fullmatch(self.stream):
            raise ValueError(f"a stream id is {STREAM_LENGTH} lowercase hex digits")
        if not 1 <= self.seq <= MAX_SEQ:
            raise ValueError(f"seq out of range: {self.seq}")
        if not 1 <= len(self.sealed) <= MAX_SEALED:
            raise ValueError(f"a sealed message is 1..{MAX_SEALED} bytes, got {len(self.sealed)}")


def chunk(data: bytes, size: int = MAX_STRING) -> tuple[bytes, ...]:
    """``data`` cut into strings of ``size`` bytes, the last one shorter."""
    return tuple(data[i : i + size] for i in range(0, len(data), size))


def message_strings(record: MessageRecord) -> tuple[bytes, ...]:
    """The TXT strings of one message record (see the module docs)."""
    return (
        TXTVERS,
        b"stream=" + record.stream.encode("ascii"),
        b"seq=%d" % record.seq,
        *chunk(base64.b64encode(record.sealed)),
    )


def parse_message_strings(strings: Sequence[bytes]) -> MessageRecord:
    """The record :func:`message_strings` wrote; :class:`RecordError` otherwise."""
    if not strings or strings[0] != TXTVERS:
        raise RecordError(RecordProblem.VERSION)
    if len(strings) < 2 or not (stream := _STREAM_RE.fullmatch(strings[1])):
        raise RecordError(RecordProblem.STREAM)
    if len(strings) < 3 or not (seq_match := _SEQ_RE.fullmatch(strings[2])):
        raise RecordError(RecordProblem.SEQUENCE)
    seq = int(seq_match.group(1))
    if seq > MAX_SEQ:
        raise RecordError(RecordProblem.SEQUENCE, "beyond 2**63-1")
    data = strings[_HEADER:]
    if not data:
        raise RecordError(RecordProblem.CHUNKING, "no data strings")
    if sum(len(s) for s in data) > MAX_ENCODED:
        raise RecordError(RecordProblem.TOO_LARGE)
    if any(len(s) != MAX_STRING for s in data[:-1]) or not data[-1]:
        raise RecordError(RecordProblem.CHUNKING, "strings not cut at 255 characters")
    encoded = b"".join(data)
    sealed = decode_base64(encoded)
    if sealed is None or not sealed:
        raise RecordError(RecordProblem.ENCODING)
    if len(sealed) > MAX_SEALED:  # unreachable given MAX_ENCODED; kept as the invariant
        raise RecordError(RecordProblem.TOO_LARGE)
    return MessageRecord(stream.group(1).decode("ascii"), seq, sealed)


def decode_base64(encoded: bytes) -> bytes | None:
    """Canonical standard base64 (padded, no stray bits), or ``None``."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw) == encoded else None


def check_window(records: Iterable[MessageRecord]) -> tuple[MessageRecord, ...]:
    """One sender's window, by ``seq``: one stream, no repeated ``seq``, at most
    :data:`MAX_WINDOW` records. An update replaces a window whole, so a set
    that breaks this was not written by natkit, and is dropped whole."""
    window = tuple(sorted(records, key=lambda r: r.seq))
    if len(window) > MAX_WINDOW:
        raise RecordError(RecordProblem.WINDOW, f"{len(window)} records")
    if len({r.stream for r in window}) > 1:
        raise RecordError(RecordProblem.WINDOW, "several streams")
    if len({r.seq for r in window}) != len(window):
        raise RecordError(RecordProblem.WINDOW, "a sequence number twice")
    return window


def instance_strings(raw: bytes) -> tuple[bytes, ...]:
    """The TXT strings of a node's instance record."""
    if len(raw) != KEY_LENGTH:
        raise ValueError(f"a node key is {KEY_LENGTH} bytes")
    return (TXTVERS, b"pub=" + base64.b64encode(raw))


def parse_instance_strings(strings: Sequence[bytes], label_key: bytes) -> bytes:
    """The key of an instance record, which must be the one its name carries.

    Other ``key=value`` strings are ignored (RFC 6763 §6.4: unknown keys),
    so later versions can add some.
    """
    if not strings or strings[0] != TXTVERS:
        raise RecordError(RecordProblem.VERSION)
    keys = [s[4:] for s in strings[1:] if s.startswith(b"pub=")]
    if len(keys) != 1:
        raise RecordError(RecordProblem.KEY, f"{len(keys)} pub= strings")
    raw = decode_base64(keys[0])
    if raw is None or len(raw) != KEY_LENGTH:
        raise RecordError(RecordProblem.KEY, "not a base64 key")
    if raw != label_key:
        raise RecordError(RecordProblem.KEY, "not the key its name carries")
    return raw
