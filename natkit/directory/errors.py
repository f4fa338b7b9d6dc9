"""What the DNS directory raises, rooted in :mod:`natkit.errors`.

Three kinds, each with fields a CLI can print without parsing:

* our own configuration is wrong (:class:`DirectorySpecError` for the
  ``dns:ZONE@SERVER[:PORT]`` text, :class:`TsigKeyFileError` for the key
  file): a :class:`~natkit.errors.LocalProtocolError`;
* the primary server refused an update (:class:`UpdateRefused`, with the
  :class:`RefusalReason`): permanent until the configuration changes, so it
  is raised rather than retried, and nothing was published;
* a record read back from the zone is malformed (:class:`RecordError`): a
  :class:`~natkit.errors.RemoteProtocolError`, which readers catch, count and
  drop; it never reaches the user.
"""

from __future__ import annotations

import enum

from natkit.errors import LocalProtocolError, NatkitError, RemoteProtocolError


class DirectoryError(NatkitError):
    """Root of every error the DNS directory raises."""


class DirectorySpecError(DirectoryError, LocalProtocolError):
    """A ``dns:ZONE@SERVER[:PORT]`` directory (or a read server) that does not parse."""

    def __init__(self, text: str, problem: str, expected: str = "dns:ZONE@SERVER[:PORT]") -> None:
        super().__init__(f"bad directory {text!r}: {problem} (expected {expected})")
        #: The text as given.
        self.text = text
        #: What is wrong with it.
        self.problem = problem


class TsigKeyFileError(DirectoryError, LocalProtocolError):
    """A TSIG key file that natkit cannot use."""

    def __init__(self, source: str, problem: str, line: int | None = None) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"TSIG key file {where}: {problem}")
        #: The file (or a label for text not read from a file).
        self.source = source
        #: What is wrong, for the user.
        self.problem = problem
        #: The 1-based line the problem is on, when there is one.
        self.line = line


class RefusalReason(enum.Enum):
    """Why the primary server refused an update (RFC 2136 §2.2, RFC 8945 §5.3)."""

    #: The server knows our key name but not with this secret (TSIG BADSIG).
    BAD_SIGNATURE = "bad-signature"
    #: The server knows no key of this name and algorithm (TSIG BADKEY); knot
    #: also answers so when its ACL does not let the key update these names.
    BAD_KEY = "bad-key"
    #: Our clock and the server's differ by more than the TSIG fudge (BADTIME).
    BAD_TIME = "bad-time"
    #: NOTAUTH: the server wants a TSIG-signed update (none was sent, or the
    #: key may not update this zone), or is not authoritative for it.
    NOT_AUTHORIZED = "not-authorized"
    #: REFUSED: the server's policy does not allow this update.
    REFUSED = "refused"
    #: NOTZONE: the records are not in the zone the update names.
    NOT_ZONE = "not-zone"
    #: Any other error code the server answered with (see ``detail``).
    OTHER = "other"


#: What each refusal means for the user, after "the server refused the update:".
_EXPLANATIONS: dict[RefusalReason, str] = {
    RefusalReason.BAD_SIGNATURE: "the TSIG key {key} has a different secret on the server (BADSIG)",
    RefusalReason.BAD_KEY: (
        "the server knows no TSIG key {key} with this algorithm, or its ACL does not let"
        " that key update these names (BADKEY)"
    ),
    RefusalReason.BAD_TIME: "this host's clock and the server's differ too much (TSIG BADTIME)",
    RefusalReason.NOT_AUTHORIZED: "{notauth}",
    RefusalReason.REFUSED: "its policy refuses updates to this zone with key {key} (REFUSED)",
    RefusalReason.NOT_ZONE: "the server does not hold zone {zone} (NOTZONE)",
    RefusalReason.OTHER: "it answered {detail}",
}


class UpdateRefused(DirectoryError):
    """The primary server refused an RFC 2136 UPDATE; nothing was published."""

    def __init__(
        self,
        reason: RefusalReason,
        *,
        server: str,
        zone: str,
        key_name: str | None,
        detail: str = "",
    ) -> None:
        key = f"{key_name!r}" if key_name is not None else "(none)"
        notauth = (
            "it wants updates signed with a TSIG key and none was given (NOTAUTH):"
            " pass --tsig-key FILE"
            if key_name is None
            else f"key {key} may not update zone {zone}, or the server is not its primary (NOTAUTH)"
        )
        explanation = _EXPLANATIONS[reason].format(
            key=key, zone=zone, detail=detail, notauth=notauth
        )
        super().__init__(
            f"DNS server {server} refused the update of zone {zone}: {explanation};"
            " nothing was published"
        )
        self.reason = reason
        #: ``IP:PORT`` of the server that refused.
        self.server = server
        self.zone = zone
        #: The TSIG key name the update was signed with (``None``: unsigned).
        self.key_name = key_name
        #: The server's error code or dnspython's exception text.
        self.detail = detail


class RecordProblem(enum.Enum):
    """What is wrong with a record read from the zone (it is dropped)."""

    #: The first string is not ``txtvers=1``.
    VERSION = "version"
    #: No ``stream=`` string of 16 lowercase hex digits.
    STREAM = "stream"
    #: No ``seq=`` string with a canonical decimal in range.
    SEQUENCE = "sequence"
    #: No data strings, or data strings not cut at 255 characters.
    CHUNKING = "chunking"
    #: The data is not canonical base64.
    ENCODING = "encoding"
    #: The sealed message is longer than natkit ever sends.
    TOO_LARGE = "too-large"
    #: A name (PTR target, owner) that is not a node of this zone.
    NAME = "name"
    #: An instance TXT whose ``pub=`` key is missing, malformed or not its label's.
    KEY = "key"
    #: A record set that cannot be one sender's window (several streams,
    #: repeated sequence numbers, more records than a window holds).
    WINDOW = "window"


class RecordError(DirectoryError, RemoteProtocolError):
    """A record read from the zone is not what natkit writes."""

    def __init__(self, problem: RecordProblem, detail: str = "") -> None:
        super().__init__(
            f"malformed directory record ({problem.value}){': ' if detail else ''}{detail}"
        )
        self.problem = problem
        self.detail = detail
