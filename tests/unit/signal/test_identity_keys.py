"""Keys: text form, order, key files and their permissions, ``wg`` interop."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from natkit.identity import KeyFormatError, PrivateKey, PublicKey
from natkit.identity.keyfile import (
    KeyFileError,
    KeyFileProblem,
    load_private_key,
    load_public_key,
    parse_private_key,
    save_private_key,
)

# RFC 7748 §6.1 test vector (Alice).
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")


def test_public_key_matches_rfc7748_vector() -> None:
    key = PrivateKey(ALICE_PRIVATE)
    assert key.public_key == PublicKey(ALICE_PUBLIC)


def test_text_round_trip_and_str() -> None:
    key = PrivateKey.generate()
    text = key.to_base64()
    assert len(text) == 44
    assert text.endswith("=")
    assert PrivateKey.from_base64(text + "\n") == key
    public = key.public_key
    assert PublicKey.from_base64(str(public)) == public
    assert str(public) == base64.b64encode(public.raw).decode()


def test_private_key_never_prints_itself() -> None:
    key = PrivateKey(ALICE_PRIVATE)
    secret = key.to_base64()
    for text in (str(key), repr(key), f"{key}", repr([key])):
        assert secret not in text
        assert str(key.public_key) in text


def test_generated_keys_are_clamped_like_wg_genkey() -> None:
    for _ in range(20):
        raw = PrivateKey.generate().raw
        assert raw[0] & 7 == 0
        assert raw[31] & 0x80 == 0
        assert raw[31] & 0x40


def test_public_keys_are_hashable_and_ordered_by_bytes() -> None:
    low = PublicKey(bytes(31) + b"\x01")
    high = PublicKey(b"\x01" + bytes(31))
    assert low < high
    assert not high < low
    assert sorted([high, low]) == [low, high]
    assert {low, PublicKey(bytes(31) + b"\x01")} == {low}
    assert min(high, low) is low


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must be 44 characters"),
        ("AAAA", "must be 44 characters"),
        ("!" * 43 + "=", "not valid base64"),
        # 33 bytes of base64 without padding: right length, wrong size.
        (base64.b64encode(bytes(33)).decode()[:44], "canonical"),
        # Non-zero padding bits: decodes to the same bytes as ...A=, but is another spelling.
        ("A" * 42 + "B=", "canonical"),
        ("A" * 43 + "=" + "A" * 44, "must be 44 characters"),
    ],
)
def test_bad_key_text_is_refused(text: str, message: str) -> None:
    with pytest.raises(KeyFormatError, match=message):
        PublicKey.from_base64(text)
    with pytest.raises(KeyFormatError, match=message):
        PrivateKey.from_base64(text)


def test_wrong_raw_length_is_refused() -> None:
    with pytest.raises(KeyFormatError):
        PublicKey(bytes(31))
    with pytest.raises(KeyFormatError):
        PrivateKey(bytes(33))


def test_save_then_load_round_trip_with_mode_0600(tmp_path: Path) -> None:
    key = PrivateKey.generate()
    path = tmp_path / "node.key"
    old = os.umask(0)  # the file's mode must not depend on the umask
    try:
        save_private_key(path, key)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == key.to_base64() + "\n"
    assert load_private_key(path) == key


def test_save_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.write_text("keep me\n")
    with pytest.raises(KeyFileError) as info:
        save_private_key(path, PrivateKey.generate())
    assert info.value.problem is KeyFileProblem.EXISTS
    assert path.read_text() == "keep me\n"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_private_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    path.write_text(PrivateKey.generate().to_base64() + "\n")
    path.chmod(mode)
    with pytest.raises(KeyFileError) as info:
        load_private_key(path)
    assert info.value.problem is KeyFileProblem.PERMISSIONS
    assert f"{mode:04o}" in str(info.value)
    assert "chmod 600" in info.value.detail


def test_stricter_modes_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    key = PrivateKey.generate()
    path.write_text(key.to_base64())  # no newline is fine too
    path.chmod(0o400)
    assert load_private_key(path) == key


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"A" * 300, KeyFileProblem.SIZE),
        (b"\xff" * 44, KeyFileProblem.ENCODING),
        (b"not a key\n", KeyFileProblem.ENCODING),
        (b"", KeyFileProblem.ENCODING),
        (("A" * 43 + "=\n").encode() * 2, KeyFileProblem.ENCODING),
    ],
)
def test_bad_private_key_files(tmp_path: Path, content: bytes, problem: KeyFileProblem) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError) as info:
        load_private_key(path)
    assert info.value.problem is problem
    assert str(path) in str(info.value)


def test_missing_and_non_regular_files(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError) as info:
        load_private_key(tmp_path / "absent.key")
    assert info.value.problem is KeyFileProblem.MISSING
    with pytest.raises(KeyFileError) as info:
        load_private_key(tmp_path)
    assert info.value.problem is KeyFileProblem.NOT_A_FILE


def test_public_key_files_need_no_special_mode(tmp_path: Path) -> None:
    public = PrivateKey.generate().public_key
    path = tmp_path / "peer.pub"
    path.write_text(f"{public}\n")
    path.chmod(0o644)
    assert load_public_key(path) == public


def test_parse_from_bytes_names_its_source() -> None:
    with pytest.raises(KeyFileError, match="<stdin>"):
        parse_private_key(b"junk")


WG = shutil.which("wg")


@pytest.mark.skipif(WG is None, reason="wg (Debian wireguard-tools) is not installed")
def test_keys_are_interchangeable_with_wg() -> None:
    assert WG is not None
    wg_private = subprocess.run([WG, "genkey"], capture_output=True, check=True).stdout
    wg_public = subprocess.run(
        [WG, "pubkey"], input=wg_private, capture_output=True, check=True
    ).stdout
    assert str(parse_private_key(wg_private).public_key) == wg_public.decode().strip()
    ours = PrivateKey.generate()
    theirs = subprocess.run(
        [WG, "pubkey"], input=(ours.to_base64() + "\n").encode(), capture_output=True, check=True
    ).stdout
    assert theirs.decode().strip() == str(ours.public_key)
