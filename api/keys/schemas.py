from __future__ import annotations

from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from shared.providers import DEFAULT_BASE_URLS, NEEDS_SECRET
from shared.queues import QueueName

ProviderName = Literal[
    "anthropic", "openai", "mistral", "groq", "ollama", "lmstudio", "openai_compatible"
]


def check_base_url(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("base_url must be an http:// or https:// URL, e.g. https://host/v1")
    if parts.username or parts.password:
        raise ValueError("base_url must not carry credentials; put the secret in api_key")
    return value.rstrip("/")


# Far above any provider's published limit, and inside a 32-bit integer column.
MAX_LIMIT = 1_000_000_000
RPM_DESCRIPTION = "requests per minute across all workers; null for no limit"
TPM_DESCRIPTION = "tokens per minute across all workers; null for no limit"


def check_name(value: str) -> str:
    if not value.strip():
        raise ValueError("name must not be blank")
    if "\x00" in value:
        raise ValueError("name must not contain NUL (\\u0000) characters")
    return value.strip()


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: ProviderName
    name: str = Field(min_length=1, max_length=100)
    api_key: SecretStr | None = Field(default=None, max_length=4096)
    base_url: str | None = Field(default=None, max_length=500)
    rpm: int | None = Field(default=None, ge=1, le=MAX_LIMIT, description=RPM_DESCRIPTION)
    tpm: int | None = Field(default=None, ge=1, le=MAX_LIMIT, description=TPM_DESCRIPTION)
    queue: QueueName | None = None

    _base_url = field_validator("base_url")(check_base_url)
    _name = field_validator("name")(check_name)

    @model_validator(mode="after")
    def _provider_needs(self) -> KeyCreate:
        if self.provider == "openai_compatible" and not self.base_url:
            raise ValueError("base_url is required for provider openai_compatible")
        secret = self.api_key.get_secret_value().strip() if self.api_key else ""
        if self.provider in NEEDS_SECRET and not secret:
            raise ValueError(f"api_key is required for provider {self.provider}")
        return self

    def resolved_base_url(self) -> str:
        url = self.base_url or DEFAULT_BASE_URLS[self.provider]
        assert url is not None
        return url


class KeyUpdate(BaseModel):
    """PATCH: only the fields sent change; null clears a limit. The secret is not here on
    purpose: a new secret is a new key (create it, move the agents, delete the old one),
    so a run never switches secret halfway."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    base_url: str | None = Field(default=None, max_length=500)
    rpm: int | None = Field(default=None, ge=1, le=MAX_LIMIT, description=RPM_DESCRIPTION)
    tpm: int | None = Field(default=None, ge=1, le=MAX_LIMIT, description=TPM_DESCRIPTION)
    # null clears it: the agents' steps then go to the default queue.
    queue: QueueName | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_secret(cls, data: object) -> object:
        if isinstance(data, dict) and "api_key" in data:
            raise ValueError(
                "api_key cannot be changed: create a new key with the new secret, "
                "move the agents to it, then delete this one"
            )
        return data

    @field_validator("name", "base_url", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Only an explicit null reaches here (defaults are not validated).
        if value is None:
            raise ValueError("may be left out but not set to null")
        return value

    _base_url = field_validator("base_url")(check_base_url)
    _name = field_validator("name")(check_name)


class KeyPublic(BaseModel):
    """What the API shows of a key: never the secret, only its last four characters."""

    id: str
    provider: str
    name: str
    base_url: str
    key_hint: str
    rpm: int | None
    tpm: int | None
    queue: str | None
    created_at: datetime


class KeyList(BaseModel):
    data: list[KeyPublic]
    count: int


class KeyTestResult(BaseModel):
    ok: bool
    provider: str
    error: str | None = None
    models_count: int | None = None


class ModelList(BaseModel):
    data: list[str]
    count: int
