from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

TargetType = Literal["workflow", "batch", "budget"]
DeliveryStatus = Literal["pending", "delivered", "failed"]
EventName = Literal["run.finished", "batch.finished", "budget.soft_limit"]


def check_url(value: str) -> str:
    """An absolute http(s) URL without credentials: a receiver authenticates ownkey by
    the signature, and a password in the URL would be shown to every viewer."""
    value = value.strip()
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("url must not contain spaces or control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "url must be an http:// or https:// URL, e.g. https://example.com/hooks/ownkey"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "url must not carry credentials (user:password@); check the "
            "X-Ownkey-Signature header instead"
        )
    try:
        _ = parts.port
        httpx.URL(value)
    except (ValueError, httpx.InvalidURL):
        raise ValueError("url is not a valid URL (check the host and port)") from None
    return value


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_type: TargetType = Field(
        description="workflow: every run of it finishing, and its batches; batch: the "
        "batch finishing; budget: its soft limit reached (admins only)"
    )
    target: str = Field(
        min_length=1, max_length=100, description="the workflow, batch or budget: id or name"
    )
    url: str = Field(min_length=1, max_length=2000, description="an http:// or https:// URL")

    _url = field_validator("url")(check_url)

    @field_validator("target")
    @classmethod
    def _plain_target(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("target must not contain NUL (\\u0000) characters")
        return value.strip()


class WebhookPublic(BaseModel):
    """A webhook as the API shows it: never its secret."""

    id: str
    target_type: str
    target_id: str
    url: str
    created_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(
        description="the signing secret (whsec_...): shown this once, never again; "
        "receivers check X-Ownkey-Signature with it"
    )


class WebhookList(BaseModel):
    data: list[WebhookPublic]
    count: int


class DeliveryPublic(BaseModel):
    id: str
    webhook_id: str | None = Field(description="the webhook it is for (it may have been deleted)")
    event: str
    subject_id: str
    url: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]


class DeliveryList(BaseModel):
    data: list[DeliveryPublic]
    count: int
