from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from api.keys import schemas as keys_schemas

Scope = Literal["instance", "key", "workflow"]
Window = Literal["month", "custom"]

# Far above any real budget, and well inside a 64-bit count of nano-dollars.
MAX_LIMIT_USD = Decimal(1_000_000_000)
LIMIT_DESCRIPTION = "USD per window, up to 9 decimal places; spent >= limit stops new calls"
SOFT_DESCRIPTION = "warn (log and webhooks) once per window when this percent is spent"
SCOPE_ID_DESCRIPTION = "the key's or workflow's id or name; left out for scope instance"
WINDOW_DESCRIPTION = "month: each calendar month (UTC); custom: window_start .. window_end"


def as_utc(value: datetime | None) -> datetime | None:
    """A time without a zone is taken as UTC; every time is stored in UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class BudgetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    scope: Scope
    scope_id: str | None = Field(
        default=None, min_length=1, max_length=100, description=SCOPE_ID_DESCRIPTION
    )
    limit_usd: Decimal = Field(
        gt=0, le=MAX_LIMIT_USD, decimal_places=9, description=LIMIT_DESCRIPTION
    )
    window: Window = Field(default="month", description=WINDOW_DESCRIPTION)
    window_start: datetime | None = Field(default=None, description="custom windows: from")
    window_end: datetime | None = Field(default=None, description="custom windows: until")
    soft_limit_percent: int | None = Field(default=None, ge=1, le=100, description=SOFT_DESCRIPTION)

    _name = field_validator("name")(keys_schemas.check_name)
    _utc = field_validator("window_start", "window_end")(as_utc)


class BudgetUpdate(BaseModel):
    """PATCH: only the fields sent change; null clears the soft limit. The scope is not
    here on purpose: the spend recorded so far belongs to the old one."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    limit_usd: Decimal | None = Field(
        default=None, gt=0, le=MAX_LIMIT_USD, decimal_places=9, description=LIMIT_DESCRIPTION
    )
    window: Window | None = Field(default=None, description=WINDOW_DESCRIPTION)
    window_start: datetime | None = None
    window_end: datetime | None = None
    soft_limit_percent: int | None = Field(default=None, ge=1, le=100, description=SOFT_DESCRIPTION)

    @model_validator(mode="before")
    @classmethod
    def _no_scope(cls, data: object) -> object:
        if isinstance(data, dict) and ("scope" in data or "scope_id" in data):
            raise ValueError(
                "scope and scope_id cannot be changed: create a new budget for the new "
                "scope, then delete this one"
            )
        return data

    @field_validator("name", "limit_usd", "window", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Only an explicit null reaches here (defaults are not validated).
        if value is None:
            raise ValueError("may be left out but not set to null")
        return value

    _name = field_validator("name")(keys_schemas.check_name)
    _utc = field_validator("window_start", "window_end")(as_utc)


class BudgetPublic(BaseModel):
    """A budget and its current window: what it has spent and what remains."""

    id: str
    name: str
    scope: str
    scope_id: str | None
    scope_name: str | None = Field(description="the key's or workflow's name")
    limit_usd: float
    window: str
    window_start: datetime | None = Field(description="custom windows only")
    window_end: datetime | None = Field(description="custom windows only")
    period_start: datetime = Field(description="the window spent_usd counts: this month's")
    period_end: datetime
    active: bool = Field(description="whether now is inside the window")
    soft_limit_percent: int | None
    spent_usd: float
    remaining_usd: float
    exceeded: bool = Field(description="spent >= limit: no further calls in this window")
    soft_warned_at: datetime | None
    exceeded_at: datetime | None
    created_at: datetime
    updated_at: datetime


class BudgetList(BaseModel):
    data: list[BudgetPublic]
    count: int
