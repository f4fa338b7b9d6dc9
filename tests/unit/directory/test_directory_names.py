"""Names of the directory's records: key labels, recipient hashes, zones."""

from __future__ import annotations

import base64

import dns.name
import pytest
from hypothesis import given
from hypothesis import strategies as st

from natkit.directory.names import (
    KEY_LABEL_LENGTH,
    MAX_ZONE_WIRE,
    RECIPIENT_LABEL_LENGTH,
    instance_name,
    key_label,
    message_name,
    node_of_instance,
    parse_key_label,
    recipient_label,
    service_name,
    zone_name,
)

ZONE = dns.name.from_text("natkit.test.")
KEY = bytes(range(32))
keys = st.binary(min_size=32, max_size=32)


@given(keys)
def test_key_label_round_trips_and_is_a_host_name_label(raw: bytes) -> None:
    label = key_label(raw)
    assert len(label) == KEY_LABEL_LENGTH
    assert label.isalnum()
    assert label == label.lower()
    assert parse_key_label(label) == raw
    # DNS folds case (RFC 4343): the upper-case spelling names the same key.
    assert parse_key_label(label.upper()) == raw


def test_key_label_is_unpadded_rfc4648_base32() -> None:
    assert key_label(KEY) == base64.b32encode(KEY).decode().rstrip("=").lower()
    assert key_label(KEY) == "aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq"


@pytest.mark.parametrize(
    "label",
    [
        "",
        "a" * 51,
        "a" * 53,
        "aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypr",  # stray low bits
        "aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dyp1",  # 1 is not base32
        "aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dyp=",
    ],
)
def test_non_canonical_key_labels_are_refused(label: str) -> None:
    assert parse_key_label(label) is None


def test_recipient_label_is_a_short_fixed_hash() -> None:
    label = recipient_label(KEY)
    assert len(label) == RECIPIENT_LABEL_LENGTH
    assert label.isalnum()
    assert label == recipient_label(KEY)
    assert label != recipient_label(bytes(32))


def test_names_nest_under_the_service() -> None:
    assert service_name(ZONE) == dns.name.from_text("_wireguard._udp.natkit.test.")
    instance = instance_name(ZONE, KEY)
    assert instance.parent() == service_name(ZONE)
    other = bytes(31) + b"\x01"
    message = message_name(ZONE, KEY, other)
    assert message.parent() == instance
    assert message.labels[0].decode() == recipient_label(other)


def test_node_of_instance_accepts_only_instance_names_of_the_zone() -> None:
    instance = instance_name(ZONE, KEY)
    assert node_of_instance(ZONE, instance) == KEY
    other_zone = dns.name.from_text("example.")
    assert node_of_instance(ZONE, instance_name(other_zone, KEY)) is None
    assert node_of_instance(ZONE, message_name(ZONE, KEY, KEY)) is None
    assert node_of_instance(ZONE, service_name(ZONE)) is None
    assert node_of_instance(ZONE, dns.name.from_text("junk._wireguard._udp.natkit.test.")) is None


def test_zone_leaves_room_for_the_longest_name() -> None:
    longest = dns.name.from_text(".".join(["a" * 63, "b" * 63, "c" * 39]))
    assert len(longest.to_wire() or b"") == MAX_ZONE_WIRE
    name = message_name(zone_name(longest), KEY, KEY)
    assert len(name.to_wire() or b"") == 255
    with pytest.raises(ValueError, match="longer than the 169 octets"):
        zone_name(".".join(["a" * 63, "b" * 63, "c" * 40]))
    with pytest.raises(ValueError, match="root zone"):
        zone_name(".")
