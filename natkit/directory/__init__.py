"""The DNS directory's pure parts: signalling through DNS-SD records in a zone.

Nodes publish sealed messages for each other under ``_wireguard._udp.ZONE``
with RFC 2136 UPDATEs signed by TSIG, and read each other's by polling;
the asyncio channel is :class:`natkit.aio.dns_directory.DnsDirectory`.
Here, without I/O:

* :mod:`~natkit.directory.names`: where a node's records live (key labels
  in base32, recipient hashes);
* :mod:`~natkit.directory.records`: the TXT strings and their strict parsing;
* :mod:`~natkit.directory.window`: at-least-once delivery (the sender's
  window, the reader's cursor);
* :mod:`~natkit.directory.poll`: when to read (rate cap, backoff);
* :mod:`~natkit.directory.wire`: the UPDATE and query messages (dnspython);
* :mod:`~natkit.directory.tsig` and :mod:`~natkit.directory.spec`: the
  ``--tsig-key FILE`` and ``dns:ZONE@SERVER[:PORT]`` parsers.
"""

from natkit.directory.errors import (
    DirectoryError,
    DirectorySpecError,
    RecordError,
    RecordProblem,
    RefusalReason,
    TsigKeyFileError,
    UpdateRefused,
)
from natkit.directory.names import instance_name, key_label, message_name, recipient_label
from natkit.directory.poll import PollConfig, PollSchedule
from natkit.directory.records import MAX_WINDOW, MessageRecord
from natkit.directory.spec import DirectorySpec, parse_directory, parse_read_server
from natkit.directory.tsig import TsigAlgorithm, TsigKey, parse_tsig_key
from natkit.directory.window import Delivery, Outbox, Reader, WindowConfig

__all__ = [
    "MAX_WINDOW",
    "Delivery",
    "DirectoryError",
    "DirectorySpec",
    "DirectorySpecError",
    "MessageRecord",
    "Outbox",
    "PollConfig",
    "PollSchedule",
    "Reader",
    "RecordError",
    "RecordProblem",
    "RefusalReason",
    "TsigAlgorithm",
    "TsigKey",
    "TsigKeyFileError",
    "UpdateRefused",
    "WindowConfig",
    "instance_name",
    "key_label",
    "message_name",
    "parse_directory",
    "parse_read_server",
    "parse_tsig_key",
    "recipient_label",
]
