"""TSIG key files: knot's keymgr, BIND's tsig-keygen, the one-line form;
and the errors a CLI prints for a bad file."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from natkit.aio.dns_directory import read_tsig_key_file
from natkit.directory.errors import TsigKeyFileError
from natkit.directory.tsig import TsigAlgorithm, TsigKey, parse_tsig_key

SECRET = "cDrQXeE7gGEsu0EGi0TRbSda44mFgplQxURHQ6cw+Pc="
RAW = base64.b64decode(SECRET)
EXPECTED = TsigKey("natkit-update.", TsigAlgorithm.HMAC_SHA256, RAW)

#: ``keymgr -t natkit-update hmac-sha256`` (knot 3.2.6), verbatim.
KEYMGR = f"""# hmac-sha256:natkit-update:{SECRET}
key:
  - id: natkit-update
    algorithm: hmac-sha256
    secret: {SECRET}
"""
#: ``tsig-keygen -a hmac-sha256 natkit-update`` (BIND 9.18), verbatim form.
TSIG_KEYGEN = f"""key "natkit-update" {{
\talgorithm hmac-sha256;
\tsecret "{SECRET}";
}};
"""


@pytest.mark.parametrize(
    "text",
    [
        KEYMGR,
        KEYMGR.split("\n", 1)[1],  # without the comment
        KEYMGR.replace("natkit-update\n", '"natkit-update"\n'),  # quoted YAML value
        KEYMGR.replace("    secret", "    comment: made for the lab\n    secret"),
        TSIG_KEYGEN,
        TSIG_KEYGEN.replace('"natkit-update"', "natkit-update"),
        "// made by hand\n" + TSIG_KEYGEN.replace("\t", "  ").replace("\n", " "),
        "/* block */ " + TSIG_KEYGEN + "# trailing comment\n",
        f"hmac-sha256:natkit-update:{SECRET}\n",
        f"natkit-update:{SECRET}",  # kdig -y default algorithm
    ],
)
def test_key_files_parse(text: str) -> None:
    assert parse_tsig_key(text) == EXPECTED


def test_the_secret_is_not_in_the_repr() -> None:
    assert SECRET not in repr(EXPECTED)
    assert "secret" not in repr(EXPECTED)


@pytest.mark.skipif(shutil.which("keymgr") is None, reason="knot's keymgr is not installed")
@pytest.mark.parametrize("algorithm", ["hmac-sha256", "hmac-sha512", "hmac-sha1"])
def test_what_keymgr_writes_parses(algorithm: str) -> None:
    text = subprocess.run(
        ["keymgr", "-t", "node-a.natkit.test", algorithm],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    key = parse_tsig_key(text)
    assert key.name == "node-a.natkit.test."
    assert key.algorithm.value == algorithm
    assert (
        text.splitlines()[0]
        == f"# {algorithm}:node-a.natkit.test:" + base64.b64encode(key.secret).decode()
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "f.key: empty: no key in it"),
        ("# only a comment\n", "f.key: empty: no key in it"),
        ("hello world\n", "f.key:1: not a TSIG key file"),
        ("server:\n  listen: 0.0.0.0\n", "f.key:1: not a TSIG key file"),
        (KEYMGR + "server:\n  listen: 1\n", "f.key:6: only a key: section may be in the file"),
        (KEYMGR + KEYMGR.split("key:\n", 1)[1], "f.key: holds 2 keys"),
        ("key:\n", "f.key: holds 0 keys"),
        (KEYMGR.replace("    algorithm: hmac-sha256\n", ""), "f.key: the key has no algorithm"),
        (
            KEYMGR.replace("    secret", "    colour: blue\n    secret"),
            "f.key:5: unknown key field",
        ),
        (
            KEYMGR.replace("    secret", "    algorithm: hmac-sha1\n    secret"),
            "algorithm given twice",
        ),
        (KEYMGR.replace("hmac-sha256\n", "hmac-md5\n"), "hmac-md5 is not accepted"),
        (KEYMGR.replace("hmac-sha256\n", "hmac-whirlpool\n"), "unknown algorithm 'hmac-whirlpool'"),
        (KEYMGR.replace(f"secret: {SECRET}", "secret: not*base64"), "the secret is not base64"),
        (KEYMGR.replace(f"secret: {SECRET}", "secret: c2hvcnQ="), "the secret is 5 bytes"),
        (KEYMGR.replace("id: natkit-update", "id: a..b"), "is not a DNS name"),
        (TSIG_KEYGEN.replace("\tsecret", "\t# secret"), "the key block has no secret"),
        (TSIG_KEYGEN + TSIG_KEYGEN, "holds several keys"),
        (TSIG_KEYGEN.replace("algorithm", "algo"), "cannot read 'algo hmac-sha256'"),
        (TSIG_KEYGEN.replace("};", "}"), "not a BIND key block"),
    ],
)
def test_bad_key_files_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(TsigKeyFileError) as caught:
        parse_tsig_key(text, "f.key")
    assert message in str(caught.value)
    assert str(caught.value).startswith("TSIG key file f.key")


@given(st.text(max_size=400))
def test_any_text_parses_or_raises_a_key_file_error(text: str) -> None:
    with contextlib.suppress(TsigKeyFileError):
        parse_tsig_key(text)


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_read_tsig_key_file(tmp_path: Path) -> None:
    assert read_tsig_key_file(_write(tmp_path / "k", KEYMGR)) == EXPECTED
    assert read_tsig_key_file(_write(tmp_path / "g", KEYMGR, 0o640)) == EXPECTED


def test_read_tsig_key_file_errors(tmp_path: Path) -> None:
    with pytest.raises(TsigKeyFileError, match="cannot read it: No such file"):
        read_tsig_key_file(tmp_path / "missing")
    with pytest.raises(TsigKeyFileError, match="other users can read it"):
        read_tsig_key_file(_write(tmp_path / "open", KEYMGR, 0o644))
    with pytest.raises(TsigKeyFileError, match="not a regular file"):
        read_tsig_key_file(tmp_path)
    with pytest.raises(TsigKeyFileError, match="larger than"):
        read_tsig_key_file(_write(tmp_path / "big", "#" * 70_000))
    (tmp_path / "bin").write_bytes(b"\xff\xfe")
    os.chmod(tmp_path / "bin", 0o600)
    with pytest.raises(TsigKeyFileError, match="not text"):
        read_tsig_key_file(tmp_path / "bin")
