"""TSIG key files (RFC 8945) as knot and BIND write them. Pure: text in.

Accepted, one key per file:

* knot's, as ``keymgr -t NAME hmac-sha256`` prints it (a YAML ``key:``
  section, the form knot.conf includes)::

      # hmac-sha256:natkit-update:cDrQXeE7...=
      key:
        - id: natkit-update
          algorithm: hmac-sha256
          secret: cDrQXeE7...=

* BIND's, as ``tsig-keygen NAME`` (or ``ddns-confgen``) prints it::

      key "natkit-update" {
          algorithm hmac-sha256;
          secret "cDrQXeE7...=";
      };

* the one-line ``[ALGORITHM:]NAME:SECRET`` form of ``kdig -y`` and
  ``knsupdate -y`` (the comment line above, without its ``#``).

The parser takes no more of YAML or BIND's grammar than key files use, so
a file that is something else (a whole knot.conf, a private DNSSEC key) is
refused with the line that gave it away rather than half understood.
HMAC-MD5 is refused (RFC 8945 §6: MD5 is broken); the secret must be at
least 16 bytes.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

import dns.exception
import dns.name

from natkit.directory.errors import TsigKeyFileError
from natkit.directory.records import decode_base64

#: The shortest secret accepted (keymgr and tsig-keygen make 32 for SHA-256).
MIN_SECRET_LENGTH = 16


class TsigAlgorithm(enum.StrEnum):
    """The HMAC algorithms natkit signs with (RFC 8945 §6; dnspython names)."""

    HMAC_SHA1 = "hmac-sha1"
    HMAC_SHA224 = "hmac-sha224"
    HMAC_SHA256 = "hmac-sha256"
    HMAC_SHA384 = "hmac-sha384"
    HMAC_SHA512 = "hmac-sha512"


@dataclass(frozen=True, slots=True)
class TsigKey:
    """One TSIG key: its name (absolute, lowercase), algorithm and secret."""

    name: str
    algorithm: TsigAlgorithm
    #: The raw secret; never shown by ``repr``.
    secret: bytes = field(repr=False)


_MD5 = ("hmac-md5", "hmac-md5.sig-alg.reg.int")
_KNOT_ITEM = re.compile(r"^(\s+)-\s+([A-Za-z][\w-]*)\s*:\s*(.*?)\s*$")
_KNOT_FIELD = re.compile(r"^(\s+)([A-Za-z][\w-]*)\s*:\s*(.*?)\s*$")
_BIND_KEY = re.compile(r'^\s*key\s+(?:"([^"\s]+)"|([A-Za-z0-9._-]+))\s*\{(.*)\}\s*;\s*$', re.DOTALL)
_BIND_STATEMENT = re.compile(r'^\s*(algorithm|secret)\s+(?:"([^"]*)"|([A-Za-z0-9.+/=_-]+))\s*$')
_ONE_LINE = re.compile(r"^(?:([A-Za-z0-9.-]+):)?([A-Za-z0-9._-]+):([A-Za-z0-9+/=]+)$")


def parse_tsig_key(text: str, source: str = "<text>") -> TsigKey:
    """The one key in ``text``; :class:`TsigKeyFileError` saying what is wrong."""
    lines = text.splitlines()
    significant = [
        (number, line)
        for number, line in enumerate(lines, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not significant:
        raise TsigKeyFileError(source, "empty: no key in it (make one with keymgr -t NAME)")
    first = significant[0][1].strip()
    if first.rstrip() == "key:":
        return _parse_knot(significant, source)
    if first.startswith(("key ", "key\t", 'key"', "//", "/*")):
        return _parse_bind(text, source)
    if len(significant) == 1 and (match := _ONE_LINE.match(first)):
        return _make_key(match.group(2), match.group(1) or "hmac-sha256", match.group(3), source)
    number, line = significant[0]
    raise TsigKeyFileError(
        source,
        f"not a TSIG key file (knot's key: section, BIND's key block, or ALG:NAME:SECRET);"
        f" found {line.strip()[:40]!r}",
        number,
    )


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _parse_knot(significant: list[tuple[int, str]], source: str) -> TsigKey:
    """knot's ``key:`` list: items ``- id:``, then ``algorithm:``, ``secret:``."""
    items: list[dict[str, tuple[int, str]]] = []
    for number, line in significant[1:]:
        if not line[:1].isspace():
            raise TsigKeyFileError(
                source, f"only a key: section may be in the file, found {line.strip()!r}", number
            )
        if start := _KNOT_ITEM.match(line):
            items.append({start.group(2): (number, _unquote(start.group(3)))})
            continue
        entry = _KNOT_FIELD.match(line)
        if entry is None or not items:
            raise TsigKeyFileError(source, f"cannot read {line.strip()!r}", number)
        name = entry.group(2)
        if name in items[-1]:
            raise TsigKeyFileError(source, f"{name} given twice", number)
        items[-1][name] = (number, _unquote(entry.group(3)))
    if len(items) != 1:
        raise TsigKeyFileError(source, f"holds {len(items)} keys; give a file with exactly one")
    (fields,) = items
    unknown = sorted(set(fields) - {"id", "algorithm", "secret", "comment"})
    if unknown:
        raise TsigKeyFileError(source, f"unknown key field {unknown[0]!r}", fields[unknown[0]][0])
    missing = [f for f in ("id", "algorithm", "secret") if f not in fields]
    if missing:
        raise TsigKeyFileError(source, f"the key has no {missing[0]}")
    return _make_key(fields["id"][1], fields["algorithm"][1], fields["secret"][1], source)


def _parse_bind(text: str, source: str) -> TsigKey:
    """BIND's ``key "NAME" { algorithm ALG; secret "B64"; };``."""
    body = "\n".join(_strip_bind_comment(line) for line in text.splitlines())
    body = re.sub(r"/\*.*?\*/", " ", body, flags=re.DOTALL)
    if len(re.findall(r"(?m)^\s*key\b", body)) > 1:
        raise TsigKeyFileError(source, "holds several keys; give a file with exactly one")
    match = _BIND_KEY.match(body)
    if match is None:
        raise TsigKeyFileError(source, 'not a BIND key block: key "NAME" { ... };')
    name = match.group(1) or match.group(2)
    values: dict[str, str] = {}
    for statement in match.group(3).split(";"):
        if not statement.strip():
            continue
        found = _BIND_STATEMENT.match(statement)
        if found is None:
            raise TsigKeyFileError(
                source, f"cannot read {statement.strip()[:40]!r} in the key block"
            )
        kind = found.group(1)
        if kind in values:
            raise TsigKeyFileError(source, f"{kind} given twice")
        values[kind] = found.group(2) if found.group(2) is not None else found.group(3)
    for required in ("algorithm", "secret"):
        if required not in values:
            raise TsigKeyFileError(source, f"the key block has no {required}")
    return _make_key(name, values["algorithm"], values["secret"], source)


def _strip_bind_comment(line: str) -> str:
    """Drop ``//`` and ``#`` comments outside quotes."""
    quoted = False
    for i, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif not quoted and (char == "#" or line.startswith("//", i)):
            return line[:i]
    return line


def _make_key(name: str, algorithm: str, secret: str, source: str) -> TsigKey:
    try:
        parsed = dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        raise TsigKeyFileError(source, f"key name {name!r} is not a DNS name: {exc}") from None
    if parsed == dns.name.root:
        raise TsigKeyFileError(source, "the key has an empty name")
    algorithm = algorithm.lower().rstrip(".")
    if algorithm in _MD5:
        raise TsigKeyFileError(
            source, "hmac-md5 is not accepted (MD5 is broken); make an hmac-sha256 key"
        )
    try:
        chosen = TsigAlgorithm(algorithm)
    except ValueError:
        known = ", ".join(a.value for a in TsigAlgorithm)
        raise TsigKeyFileError(
            source, f"unknown algorithm {algorithm!r} (known: {known})"
        ) from None
    raw = decode_base64(secret.encode("ascii", "replace"))
    if raw is None:
        raise TsigKeyFileError(source, "the secret is not base64")
    if len(raw) < MIN_SECRET_LENGTH:
        raise TsigKeyFileError(
            source, f"the secret is {len(raw)} bytes; at least {MIN_SECRET_LENGTH} are needed"
        )
    return TsigKey(parsed.to_text().lower(), chosen, raw)
