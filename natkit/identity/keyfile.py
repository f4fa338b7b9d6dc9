"""Key files as ``wg genkey`` / ``wg pubkey`` write them: one line of base64.

A private key file must be a regular file that only its owner can read or
write (mode 0600 or stricter), as ssh insists for its keys; ``wg`` merely
warns, but a key others can read names someone else. Files are read
through one descriptor (``fstat`` then ``read``), so the checked file is
the one read, and never more than :data:`MAX_KEY_FILE` bytes.
"""

from __future__ import annotations

import enum
import os
import stat
from pathlib import Path

from natkit.errors import LocalProtocolError
from natkit.identity.keys import KeyFormatError, PrivateKey, PublicKey

#: A key file is one 44-character line; anything this long is not one.
MAX_KEY_FILE = 256


class KeyFileProblem(enum.Enum):
    """What is wrong with a key file."""

    MISSING = "missing"
    NOT_A_FILE = "not a regular file"
    PERMISSIONS = "readable or writable by others"
    SIZE = "too large"
    ENCODING = "not one base64 key"
    EXISTS = "already exists"
    UNREADABLE = "unreadable"
    UNWRITABLE = "cannot write"


class KeyFileError(LocalProtocolError):
    """A key file cannot be used; ``problem`` says why, ``detail`` how to fix it."""

    def __init__(self, path: str, problem: KeyFileProblem, detail: str) -> None:
        super().__init__(f"{path}: {problem.value}: {detail}")
        self.path = path
        self.problem = problem
        self.detail = detail


def key_text(data: bytes, source: str) -> str:
    """The one line of a key file (or of standard input), as text."""
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(
            source, KeyFileProblem.SIZE, f"more than {MAX_KEY_FILE} bytes; a key is one line"
        )
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(source, KeyFileProblem.ENCODING, "not ASCII text") from None
    if len(text.strip().splitlines()) > 1:
        raise KeyFileError(source, KeyFileProblem.ENCODING, "more than one line")
    return text


def parse_private_key(data: bytes, source: str = "<stdin>") -> PrivateKey:
    """Parse the bytes of a private key file (no permission check)."""
    try:
        return PrivateKey.from_base64(key_text(data, source))
    except KeyFormatError as exc:
        raise KeyFileError(source, KeyFileProblem.ENCODING, exc.problem) from None


def parse_public_key(data: bytes, source: str = "<stdin>") -> PublicKey:
    """Parse the bytes of a public key file."""
    try:
        return PublicKey.from_base64(key_text(data, source))
    except KeyFormatError as exc:
        raise KeyFileError(source, KeyFileProblem.ENCODING, exc.problem) from None


def _read(path: str | os.PathLike[str], *, private: bool) -> bytes:
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise KeyFileError(name, KeyFileProblem.MISSING, "no such file") from None
    except OSError as exc:
        raise KeyFileError(name, KeyFileProblem.UNREADABLE, exc.strerror or str(exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(name, KeyFileProblem.NOT_A_FILE, "a key file is a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if private and mode & 0o077:
            raise KeyFileError(
                name,
                KeyFileProblem.PERMISSIONS,
                f"mode {mode:04o}; a private key must be mode 0600 (chmod 600 {name})",
            )
        if info.st_size > MAX_KEY_FILE:
            raise KeyFileError(
                name, KeyFileProblem.SIZE, f"{info.st_size} bytes; a key file is one line"
            )
        return os.read(fd, MAX_KEY_FILE + 1)
    finally:
        os.close(fd)


def load_private_key(path: str | os.PathLike[str]) -> PrivateKey:
    """Read a private key file; it must be a regular file of mode 0600 or stricter."""
    return parse_private_key(_read(path, private=True), os.fspath(path))


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """Read a public key file (any permissions)."""
    return parse_public_key(_read(path, private=False), os.fspath(path))


def save_private_key(path: str | os.PathLike[str], key: PrivateKey) -> None:
    """Write a new private key file, mode 0600; an existing file is never replaced."""
    name = os.fspath(path)
    try:
        # Created 0600 (a umask can only take bits away), never replaced (O_EXCL).
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise KeyFileError(name, KeyFileProblem.EXISTS, "not overwriting a key") from None
    except OSError as exc:
        raise KeyFileError(name, KeyFileProblem.UNWRITABLE, exc.strerror or str(exc)) from None
    try:
        data = (key.to_base64() + "\n").encode()
        while data:  # a write may be short (a full disk, a signal)
            data = data[os.write(fd, data) :]
    except OSError as exc:
        os.close(fd)
        Path(name).unlink(missing_ok=True)  # no half-written key left behind
        raise KeyFileError(name, KeyFileProblem.UNWRITABLE, exc.strerror or str(exc)) from None
    os.close(fd)
