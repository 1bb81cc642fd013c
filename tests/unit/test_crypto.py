from __future__ import annotations

import base64
import multiprocessing
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from shared.crypto import (
    MasterKeyError,
    SecretBox,
    SecretDecryptError,
    hash_token,
    key_hint,
    load_master_key,
    new_api_token,
)


def _load_in_child(key_file: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    results.put(load_master_key("", Path(key_file)))


# --- load_master_key -------------------------------------------------------------------


def test_key_file_created_0600_and_reused(tmp_path: Path) -> None:
    key_file = tmp_path / "nested" / "dir" / "secret.key"
    first = load_master_key("", key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(base64.urlsafe_b64decode(first)) == 32
    assert load_master_key("", key_file) == first
    assert key_file.read_bytes().strip() == first


def test_key_file_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0)
    try:
        load_master_key("", tmp_path / "k")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600


def test_concurrent_creation_threads_agree(tmp_path: Path) -> None:
    for attempt in range(20):
        key_file = tmp_path / f"race{attempt}.key"
        barrier = threading.Barrier(8)

        def load(_: int, key_file: Path = key_file, barrier: threading.Barrier = barrier) -> bytes:
            barrier.wait()
            return load_master_key("", key_file)

        with ThreadPoolExecutor(8) as pool:
            keys = set(pool.map(load, range(8)))
        assert keys == {key_file.read_bytes().strip()}


def test_concurrent_creation_processes_agree(tmp_path: Path) -> None:
    key_file = tmp_path / "proc.key"
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    children = [
        ctx.Process(target=_load_in_child, args=(str(key_file), barrier, results)) for _ in range(4)
    ]
    for child in children:
        child.start()
    keys = {results.get(timeout=30) for _ in children}
    for child in children:
        child.join(timeout=30)
    assert keys == {key_file.read_bytes().strip()}


def test_waits_for_a_key_file_being_written(tmp_path: Path) -> None:
    key_file = tmp_path / "slow.key"
    key_file.touch(mode=0o600)  # the winner created it but has not written yet
    key = Fernet.generate_key()

    def finish() -> None:
        time.sleep(0.2)
        key_file.write_bytes(key + b"\n")

    writer = threading.Thread(target=finish)
    writer.start()
    try:
        assert load_master_key("", key_file) == key
    finally:
        writer.join()


def test_empty_key_file_is_refused_after_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.crypto._KEY_FILE_WAIT_SECONDS", 0.05)
    key_file = tmp_path / "empty.key"
    key_file.touch()
    with pytest.raises(MasterKeyError, match="is empty"):
        load_master_key("", key_file)


def test_malformed_key_file_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "bad.key"
    key_file.write_text("not-a-key\n")
    with pytest.raises(MasterKeyError, match="does not hold a valid key") as info:
        load_master_key("", key_file)
    assert "not-a-key" not in str(info.value)


def test_secret_key_setting_wins_over_file(tmp_path: Path) -> None:
    key_file = tmp_path / "unused.key"
    fernet_key = Fernet.generate_key()
    assert load_master_key(fernet_key.decode(), key_file) == fernet_key
    assert not key_file.exists()


def test_secret_key_passphrase_is_derived_deterministically(tmp_path: Path) -> None:
    a = load_master_key("a long random operator secret 7f3c", tmp_path / "k")
    b = load_master_key("  a long random operator secret 7f3c\n", tmp_path / "k")
    c = load_master_key("another long random operator secret", tmp_path / "k")
    assert a == b != c
    assert len(base64.urlsafe_b64decode(a)) == 32
    assert SecretBox(a).decrypt(SecretBox(b).encrypt("x")) == "x"


# --- SecretBox -------------------------------------------------------------------------


def test_round_trip_unicode() -> None:
    box = SecretBox(Fernet.generate_key())
    token = box.encrypt("sk-ant-é✓")
    assert "sk-ant" not in token
    assert box.decrypt(token) == "sk-ant-é✓"


def test_accepts_raw_32_byte_key() -> None:
    raw = b"\x01" * 32
    assert SecretBox(raw).decrypt(SecretBox(base64.urlsafe_b64encode(raw)).encrypt("s")) == "s"


def test_wrong_master_key_raises_clear_error_without_data() -> None:
    token = SecretBox(Fernet.generate_key()).encrypt("sk-live-secret")
    with pytest.raises(SecretDecryptError, match="master key does not match") as info:
        SecretBox(Fernet.generate_key()).decrypt(token)
    assert token not in str(info.value)
    assert "sk-live-secret" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


@pytest.mark.parametrize("garbage", ["", "not a token", "é" * 10])
def test_garbage_token_raises_decrypt_error(garbage: str) -> None:
    with pytest.raises(SecretDecryptError):
        SecretBox(Fernet.generate_key()).decrypt(garbage)


def test_previous_keys_decrypt_and_rotate() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    token = SecretBox(old).encrypt("k")
    box = SecretBox(new, previous_keys=[old])
    assert box.decrypt(token) == "k"
    rotated = box.rotate(token)
    assert SecretBox(new).decrypt(rotated) == "k"


def test_invalid_master_key_refused() -> None:
    with pytest.raises(MasterKeyError):
        SecretBox(b"short")


def test_repr_does_not_reveal_key() -> None:
    key = Fernet.generate_key()
    box = SecretBox(key)
    assert key.decode() not in repr(box)
    assert key.decode() not in str(box)
    assert repr(box) == "SecretBox(keys=1)"


# --- hints and tokens ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "hint"),
    [("sk-ant-api03-abcdWXYZ", "WXYZ"), ("12345678", "5678"), ("1234567", ""), ("", "")],
)
def test_key_hint(secret: str, hint: str) -> None:
    assert key_hint(secret) == hint


def test_hash_token_is_sha256_hex() -> None:
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_new_api_token_is_random_and_prefixed() -> None:
    tokens = {new_api_token() for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert token.startswith("ok_")
        assert len(base64.urlsafe_b64decode(token[3:] + "=")) == 32
