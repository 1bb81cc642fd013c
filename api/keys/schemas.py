from __future__ import annotations

from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from shared.providers import DEFAULT_BASE_URLS, NEEDS_SECRET

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


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: ProviderName
    name: str = Field(min_length=1, max_length=100)
    api_key: SecretStr | None = Field(default=None, max_length=4096)
    base_url: str | None = Field(default=None, max_length=500)

    _base_url = field_validator("base_url")(check_base_url)

    @field_validator("name")
    @classmethod
    def _strip_name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("name must not be blank")
        return value.strip()

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


class KeyPublic(BaseModel):
    """What the API shows of a key: never the secret, only its last four characters."""

    id: str
    provider: str
    name: str
    base_url: str
    key_hint: str
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
