"""``dns:ZONE@SERVER[:PORT]`` and read servers, as the CLI will pass them."""

from __future__ import annotations

import pytest

from natkit.directory.errors import DirectorySpecError
from natkit.directory.spec import parse_directory, parse_read_server
from natkit.endpoint import Endpoint


@pytest.mark.parametrize(
    ("text", "zone", "server"),
    [
        ("dns:natkit.test@203.0.113.53", "natkit.test.", "203.0.113.53:53"),
        ("dns:natkit.test.@203.0.113.53:5353", "natkit.test.", "203.0.113.53:5353"),
        ("DNS:Natkit.Test@[2001:db8::53]:53", "Natkit.Test.", "[2001:db8::53]:53"),
        ("dns:natkit.test@2001:db8::53", "natkit.test.", "[2001:db8::53]:53"),
        (" dns:_natkit.example@192.0.2.1 ", "_natkit.example.", "192.0.2.1:53"),
    ],
)
def test_directories_parse(text: str, zone: str, server: str) -> None:
    spec = parse_directory(text)
    assert spec.zone.to_text() == zone
    assert str(spec.server) == server
    assert str(spec) == f"dns:{zone}@{server}"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("natkit.test@203.0.113.53", "it must start with dns:"),
        ("dns:natkit.test", "no @SERVER after the zone"),
        ("dns:@203.0.113.53", "no zone before the @"),
        ("dns:.@203.0.113.53", "the root zone cannot be a directory"),
        ("dns:a..b@203.0.113.53", "not a DNS name"),
        ("dns:a@b@203.0.113.53", "label 'a@b' is not letters, digits, - and _"),
        ("dns:-a.test@203.0.113.53", "label '-a' is not"),
        ("dns:natkit.test@ns1.natkit.test", "must be an IP address with an optional port"),
        ("dns:natkit.test@203.0.113.53:0", "port 0"),
        ("dns:natkit.test@203.0.113.53:65536", "must be an IP address"),
        ("dns:natkit.test@", "must be an IP address"),
    ],
)
def test_bad_directories_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(DirectorySpecError) as caught:
        parse_directory(text)
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"bad directory {text!r}: ")
    assert str(caught.value).endswith("(expected dns:ZONE@SERVER[:PORT])")


def test_read_servers() -> None:
    assert parse_read_server("203.0.113.54") == Endpoint.parse("203.0.113.54:53")
    with pytest.raises(DirectorySpecError, match=r"expected a read server IP\[:PORT\]"):
        parse_read_server("secondary")
