"""Where a node's records live in the zone: DNS-SD names (RFC 6763) per key.

For a zone ``Z`` (``natkit.test.``)::

    _wireguard._udp.Z                  PTR  <node>._wireguard._udp.Z     one per node
    <node>._wireguard._udp.Z           TXT  "txtvers=1" "pub=<base64 key>"
                                       SRV  0 0 <port> <node>._wireguard._udp.Z
                                       A / AAAA  <advertised address>    (SRV and A/AAAA
                                                                          only when advertised)
    <rcpt>.<node>._wireguard._udp.Z    TXT  one record per message to that recipient

``<node>`` is the node's 32-byte public key in lowercase RFC 4648 base32
without padding (52 characters): base64 is not a valid host name label
(``+``, ``/``, ``=``), and base32's letters survive DNS's case folding.
wgsd does the same, but keeps the ``====`` padding, which is not a host
name character either. ``<rcpt>`` is a short hash of the recipient's key
(:func:`recipient_label`, 16 characters): a reader asks for exactly its own
messages from each peer, one name per (sender, recipient) pair, so what it
reads stays the same size however many peers the sender talks to.

Everything here is pure (dnspython's name type, no I/O).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

import dns.exception
import dns.name

#: Raw length of a node key (X25519, RFC 7748).
KEY_LENGTH = 32
#: Characters of a key label: ceil(256 / 5).
KEY_LABEL_LENGTH = 52
#: Bytes of the recipient hash: 80 bits, so finding a second key with the same
#: label is as hard as 2**80 hashes; its label is 16 base32 characters.
RECIPIENT_HASH_LENGTH = 10
RECIPIENT_LABEL_LENGTH = 16
#: BLAKE2b personalisation: this hash is used for nothing else.
_PERSON = b"natkit-dnsdir-v1"
#: The DNS-SD service type WireGuard peers use (wgsd's, RFC 6763 §7).
SERVICE_LABELS: tuple[bytes, ...] = (b"_wireguard", b"_udp")
#: A zone label: host name characters (RFC 1123) and ``_`` (RFC 8552 names).
_ZONE_LABEL = re.compile(rb"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")
#: RFC 1035 §2.3.4: a name is at most 255 octets on the wire. A message name
#: adds ``<rcpt>.<node>._wireguard._udp.`` (86 octets) to the zone's.
MAX_ZONE_WIRE = (
    255
    - (1 + RECIPIENT_LABEL_LENGTH + 1 + KEY_LABEL_LENGTH)
    - sum(1 + len(label) for label in SERVICE_LABELS)
)


def key_label(raw: bytes) -> str:
    """A key's label: lowercase base32 without padding."""
    if len(raw) != KEY_LENGTH:
        raise ValueError(f"a node key is {KEY_LENGTH} bytes, got {len(raw)}")
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def parse_key_label(label: str | bytes) -> bytes | None:
    """The key a label names, or ``None`` if it is not a canonical key label.

    Case is ignored (DNS compares names case-insensitively, RFC 4343), but
    the unused low bits of the last character must be zero, so one key has
    one label.
    """
    text = label.decode("ascii", "replace") if isinstance(label, bytes) else label
    if len(text) != KEY_LABEL_LENGTH:
        return None
    upper = text.upper()
    try:
        raw = base64.b32decode(upper + "====")
    except (binascii.Error, ValueError):
        return None
    if len(raw) != KEY_LENGTH or key_label(raw) != text.lower():
        return None
    return raw


def recipient_label(raw: bytes) -> str:
    """The label naming a recipient: base32 of BLAKE2b-80 of its key."""
    if len(raw) != KEY_LENGTH:
        raise ValueError(f"a node key is {KEY_LENGTH} bytes, got {len(raw)}")
    digest = hashlib.blake2b(raw, digest_size=RECIPIENT_HASH_LENGTH, person=_PERSON).digest()
    return base64.b32encode(digest).decode("ascii").lower()


def zone_name(zone: str | dns.name.Name) -> dns.name.Name:
    """A zone as an absolute name; ``ValueError`` if it is not a usable one."""
    try:
        name = zone if isinstance(zone, dns.name.Name) else dns.name.from_text(zone)
    except dns.exception.DNSException as exc:
        raise ValueError(f"not a DNS name: {exc}") from None
    if name == dns.name.root:
        raise ValueError("the root zone cannot be a directory")
    for label in name.labels[:-1]:
        if not _ZONE_LABEL.fullmatch(label):
            raise ValueError(
                f"label {label.decode('ascii', 'replace')!r} is not letters, digits, - and _"
            )
    if len(name.to_wire() or b"") > MAX_ZONE_WIRE:
        raise ValueError(f"longer than the {MAX_ZONE_WIRE} octets that leave room for node names")
    return name


def service_name(zone: dns.name.Name) -> dns.name.Name:
    """``_wireguard._udp.ZONE``: where the PTR records are."""
    return dns.name.Name(SERVICE_LABELS).concatenate(zone)


def instance_name(zone: dns.name.Name, raw: bytes) -> dns.name.Name:
    """``<node>._wireguard._udp.ZONE``: a node's SRV, TXT and address."""
    return dns.name.Name((key_label(raw).encode("ascii"), *SERVICE_LABELS)).concatenate(zone)


def message_name(zone: dns.name.Name, sender: bytes, recipient: bytes) -> dns.name.Name:
    """``<rcpt>.<node>._wireguard._udp.ZONE``: ``sender``'s messages to ``recipient``."""
    label = recipient_label(recipient).encode("ascii")
    return dns.name.Name((label,)).concatenate(instance_name(zone, sender))


def node_of_instance(zone: dns.name.Name, name: dns.name.Name) -> bytes | None:
    """The key an instance name belongs to, or ``None`` if ``name`` is not
    exactly ``<node>._wireguard._udp.ZONE`` for this zone."""
    service = service_name(zone)
    if name == service or not name.is_subdomain(service):
        return None
    relative = name.relativize(service)
    if len(relative.labels) != 1:
        return None
    return parse_key_label(relative.labels[0])
