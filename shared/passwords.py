"""Password hashing: argon2id with argon2-cffi's defaults (RFC 9106's second choice).

Verification of an unknown user still spends one hash (`verify_dummy`), so the time a
failed sign-in takes does not tell whether the user exists.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "hash_password",
    "needs_rehash",
    "verify_dummy",
    "verify_password",
]

MIN_PASSWORD_LENGTH = 10
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("ownkey: no such user")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def verify_dummy(password: str) -> None:
    verify_password(_DUMMY_HASH, password)


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
