"""The tag-length-value fields of natkit's own binary formats.

Signal messages (:mod:`natkit.ice.signals`) and traversal reports
(:mod:`natkit.ice.report`) carry their fields as a 1-byte tag, a 2-byte
length (network order) and the value. Each format keeps its own tags,
limits and errors; this module only frames the fields.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

#: Bytes before a field's value: the tag and the length.
FIELD_HEADER = 3


def encode_field(tag: int, value: bytes) -> bytes:
    """One field: ``tag`` (0-255) and ``value`` (at most 65,535 bytes)."""
    return struct.pack("!BH", tag, len(value)) + value


def iter_fields(
    data: bytes, offset: int, truncated: Callable[[str], Exception]
) -> Iterator[tuple[int, bytes]]:
    """``(tag, value)`` of every field from ``offset`` to the end of ``data``;
    a field cut short raises ``truncated(detail)`` (the format's own error)."""
    while offset < len(data):
        if len(data) - offset < FIELD_HEADER:
            raise truncated(f"field header at {offset}")
        tag, length = struct.unpack_from("!BH", data, offset)
        start, offset = offset + FIELD_HEADER, offset + FIELD_HEADER + length
        if offset > len(data):
            raise truncated(f"field {tag} of {length} bytes")
        yield tag, bytes(data[start:offset])
