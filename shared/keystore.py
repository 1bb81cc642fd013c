"""The process's SecretBox, built once from the operator's master key."""

from __future__ import annotations

from functools import lru_cache

from shared.config import get_settings
from shared.crypto import SecretBox, load_master_key

__all__ = ["get_secret_box"]


@lru_cache(maxsize=1)
def get_secret_box() -> SecretBox:
    settings = get_settings()
    master_key = load_master_key(settings.secret_key.get_secret_value(), settings.master_key_file)
    return SecretBox(master_key)
