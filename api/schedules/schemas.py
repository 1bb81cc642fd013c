from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.keys.schemas import check_name
from scheduler.cron import check_cron, check_timezone
from shared.automation_models import MisfirePolicy
from shared.datasets import has_nul

CRON_DESCRIPTION = (
    "minute hour day month weekday, in `timezone` (e.g. '30 2 * * *'); a sixth field is "
    "seconds ('*/30 * * * * 0'); @hourly, @daily, @weekly, @monthly and @yearly too"
)
TIMEZONE_DESCRIPTION = "IANA time zone the cron is read in, e.g. Europe/Berlin"
INPUT_DESCRIPTION = "one run per fire time with this input (a JSON object); or send dataset"
DATASET_DESCRIPTION = "a batch per fire time: one run per item (JSON objects); or send input"
MISFIRE_DESCRIPTION = (
    "fire times missed while beat was down: skip drops them; catch_up runs once for "
    "them all and records them"
)
MAX_DATASET_ITEMS = 100_000


def _name(value: str | None) -> str | None:
    return None if value is None else check_name(value)


def _cron(value: str) -> str:
    check_cron(value)
    return " ".join(value.split())


def _timezone(value: str) -> str:
    check_timezone(value)
    return value


def _input(value: dict[str, Any] | None) -> dict[str, Any] | None:
    # It reaches a prompt, which PostgreSQL text cannot store with a NUL in it.
    if value is not None and has_nul(value):
        raise ValueError("input must not contain NUL (\\u0000) characters")
    return value


def _dataset(value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if value is not None and has_nul(value):
        raise ValueError("dataset must not contain NUL (\\u0000) characters")
    return value


class ScheduleCreate(BaseModel):
    """Exactly one of `input` and `dataset` (checked by the service, which names the
    field)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None, min_length=1, max_length=100, description="default: workflow + id"
    )
    workflow: str = Field(min_length=1, max_length=100, description="workflow id or name")
    cron: str = Field(min_length=1, max_length=100, description=CRON_DESCRIPTION)
    timezone: str = Field(
        default="UTC", min_length=1, max_length=64, description=TIMEZONE_DESCRIPTION
    )
    input: dict[str, Any] | None = Field(default=None, description=INPUT_DESCRIPTION)
    dataset: list[dict[str, Any]] | None = Field(
        default=None, min_length=1, max_length=MAX_DATASET_ITEMS, description=DATASET_DESCRIPTION
    )
    max_in_flight: int = Field(default=10, ge=1, le=1000, description="a batch's runs at once")
    enabled: bool = True
    misfire_policy: MisfirePolicy = Field(
        default=MisfirePolicy.skip, description=MISFIRE_DESCRIPTION
    )

    _name = field_validator("name")(_name)
    _cron = field_validator("cron")(_cron)
    _timezone = field_validator("timezone")(_timezone)
    _input = field_validator("input")(_input)
    _dataset = field_validator("dataset")(_dataset)


class ScheduleUpdate(BaseModel):
    """PATCH: only the fields sent change. Sending `input` turns a dataset schedule into a
    single-run one, and `dataset` the other way round."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    workflow: str | None = Field(default=None, min_length=1, max_length=100)
    cron: str | None = Field(default=None, min_length=1, max_length=100)
    timezone: str | None = Field(default=None, min_length=1, max_length=64)
    input: dict[str, Any] | None = None
    dataset: list[dict[str, Any]] | None = Field(
        default=None, min_length=1, max_length=MAX_DATASET_ITEMS
    )
    max_in_flight: int | None = Field(default=None, ge=1, le=1000)
    enabled: bool | None = None
    misfire_policy: MisfirePolicy | None = None

    @field_validator(
        "name",
        "workflow",
        "cron",
        "timezone",
        "max_in_flight",
        "enabled",
        "misfire_policy",
        mode="before",
    )
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Only an explicit null reaches here (defaults are not validated).
        if value is None:
            raise ValueError("may be left out but not set to null")
        return value

    _name = field_validator("name")(_name)
    _cron = field_validator("cron")(_cron)
    _timezone = field_validator("timezone")(_timezone)
    _input = field_validator("input")(_input)
    _dataset = field_validator("dataset")(_dataset)


class FirePublic(BaseModel):
    """One fire time and what it started; `missed` lists the earlier fire times a
    catch-up covered."""

    id: str
    fire_time: datetime
    missed: list[str]
    run_id: str | None
    batch_id: str | None
    error: str | None
    created_at: datetime


class FireList(BaseModel):
    data: list[FirePublic]
    count: int


class SchedulePublic(BaseModel):
    id: str
    name: str
    workflow: str
    workflow_id: str
    cron: str
    timezone: str
    input: dict[str, Any] | None
    dataset_items: int | None = Field(description="the dataset's length; null for input")
    max_in_flight: int
    enabled: bool
    misfire_policy: str
    next_fire_at: datetime | None = Field(description="UTC; null while paused")
    last_fire_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ScheduleDetail(SchedulePublic):
    dataset: list[dict[str, Any]] | None
    next_fire_times: list[datetime] = Field(
        description="the next 5 fire times in the schedule's time zone (none while paused)"
    )
    recent_fires: list[FirePublic] = Field(description="the last 10, newest first")


class ScheduleList(BaseModel):
    data: list[SchedulePublic]
    count: int
