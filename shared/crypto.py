"""Secrets at rest: the master key, provider keys encrypted with it, API tokens.

Provider keys are stored encrypted with Fernet (AES-128-CBC + HMAC-SHA256)
under a master key the operator controls: either ``OWNKEY_SECRET_KEY`` or a key
file generated once into the data directory with mode 0600. Losing the master
key means re-entering every provider key; it is never stored in the database.

API tokens are random, so they are stored as a plain SHA-256 (see hash_token).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "API_TOKEN_PREFIX",
    "MasterKeyError",
    "SecretBox",
    "SecretDecryptError",
    "hash_token",
    "key_hint",
    "load_master_key",
    "new_api_token",
]

API_TOKEN_PREFIX = "ok_"
_HKDF_INFO = b"ownkey-master-key-v1"
# How long a process waits for another one that has just created the key file
# to finish writing it.
_KEY_FILE_WAIT_SECONDS = 2.0


class MasterKeyError(RuntimeError):
    """The master key cannot be loaded or created; the message says how to fix it."""


class SecretDecryptError(ValueError):
    """A stored secret cannot be decrypted. Never carries the ciphertext or plaintext."""


def _is_fernet_key(candidate: bytes) -> bool:
    try:
        raw = base64.urlsafe_b64decode(candidate)
    except (binascii.Error, ValueError):
        return False
    return len(raw) == 32 and len(candidate) == 44


def load_master_key(secret_key: str, key_file: Path) -> bytes:
    """The master key, as a Fernet key (urlsafe base64 of 32 bytes).

    A non-empty ``secret_key`` wins: used as is when it already is a Fernet key,
    otherwise stretched to 32 bytes with HKDF-SHA256 (fine for a long random
    string; HKDF is not a password hash, so do not use a short password).
    Otherwise the key is read from ``key_file``, which is created on first use
    (mode 0600, exclusive create: of two processes starting together, one
    writes and the other reads the winner's key).
    """
    secret_key = secret_key.strip()
    if secret_key:
        encoded = secret_key.encode("utf-8")
        if _is_fernet_key(encoded):
            return encoded
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
            encoded
        )
        return base64.urlsafe_b64encode(derived)
    return _load_or_create_key_file(key_file)


def _load_or_create_key_file(key_file: Path) -> bytes:
    try:
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key_file(key_file)
    except OSError as exc:
        raise MasterKeyError(f"cannot create the master key file {key_file}: {exc}") from None
    key = Fernet.generate_key()
    try:
        os.fchmod(fd, 0o600)  # whatever the umask said
        os.write(fd, key + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def _read_key_file(key_file: Path) -> bytes:
    # The file may exist but still be empty for a moment: another process won the
    # exclusive create and is writing. Wait briefly for its key.
    deadline = time.monotonic() + _KEY_FILE_WAIT_SECONDS
    while True:
        try:
            content = key_file.read_bytes().strip()
        except OSError as exc:
            raise MasterKeyError(f"cannot read the master key file {key_file}: {exc}") from None
        if content or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    if not content:
        raise MasterKeyError(
            f"the master key file {key_file} is empty (a start-up was interrupted?); "
            "nothing can have been encrypted with it, so delete it and start again"
        )
    if not _is_fernet_key(content):
        raise MasterKeyError(
            f"the master key file {key_file} does not hold a valid key (expected 44 characters "
            "of urlsafe base64, as written by ownkey); restore the right file or set "
            "OWNKEY_SECRET_KEY"
        )
    return content


class SecretBox:
    """Encrypts and decrypts secrets with the master key.

    ``previous_keys`` lets a rotated-out master key still decrypt old tokens
    (MultiFernet); ``encrypt`` always uses ``master_key``.
    """

    __slots__ = ("_fernet", "_key_count")

    def __init__(self, master_key: bytes, *, previous_keys: Sequence[bytes] = ()) -> None:
        keys = [master_key, *previous_keys]
        try:
            self._fernet = MultiFernet([Fernet(_as_fernet_key(key)) for key in keys])
        except (ValueError, TypeError):
            raise MasterKeyError(
                "a master key must be 32 bytes, raw or urlsafe-base64 encoded"
            ) from None
        self._key_count = len(keys)

    def __repr__(self) -> str:
        return f"SecretBox(keys={self._key_count})"

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("utf-8")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SecretDecryptError(
                "cannot decrypt a stored secret: the master key does not match the one it was "
                "encrypted with, or the stored value is damaged; restore the original master key "
                "or enter the secret again"
            ) from None

    def rotate(self, token: str) -> str:
        """Re-encrypt a token under the current master key (after a key rotation)."""
        try:
            return self._fernet.rotate(token.encode("utf-8")).decode("ascii")
        except InvalidToken:
            raise SecretDecryptError(
                "cannot re-encrypt a stored secret: none of the master keys match"
            ) from None


def _as_fernet_key(key: bytes) -> bytes:
    # Accept the raw 32 bytes as well as Fernet's encoding; the lengths differ (32 vs 44).
    return base64.urlsafe_b64encode(key) if len(key) == 32 else key


def key_hint(secret: str) -> str:
    """The last 4 characters of a secret, for telling keys apart in the UI.

    Secrets shorter than 8 characters give "": four characters would be half of
    such a secret.
    """
    return secret[-4:] if len(secret) >= 8 else ""


def hash_token(token: str) -> str:
    """SHA-256 hex of an API token, the form stored in the database.

    A fast hash is right here, unlike for passwords: tokens are 32 random bytes,
    so there is nothing to brute-force, and a deterministic hash lets the API
    find the token row with an indexed lookup on every request.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_api_token() -> str:
    """A new API token: ``ok_`` plus 32 random bytes, urlsafe base64."""
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)
