from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from shared.queues import QueueName

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\- ]{0,99}$"


def _refuse_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and no prompt or model name needs one.
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


Text = Annotated[str, AfterValidator(_refuse_nul)]
# NaN and Infinity parse as JSON numbers in Python; no setting means either, and a NaN
# stored would make every later answer about the agent fail to serialize.
FINITE = ConfigDict(extra="forbid", allow_inf_nan=False)


class AgentFields(BaseModel):
    model_config = FINITE

    system_prompt: Text | None = Field(default=None, max_length=100_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    timeout_seconds: float | None = Field(default=None, gt=0, le=3600)
    max_attempts: int = Field(default=3, ge=1, le=10)
    queue: QueueName | None = None


class AgentCreate(AgentFields):
    name: str = Field(pattern=NAME_PATTERN)
    key_id: str = Field(min_length=1, max_length=32)
    model: Text = Field(min_length=1, max_length=200)

    @field_validator("model")
    @classmethod
    def _model_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model must not be blank")
        return value.strip()


class AgentUpdate(BaseModel):
    """Partial update: only the fields sent change."""

    model_config = FINITE

    key_id: str | None = Field(default=None, min_length=1, max_length=32)
    model: Text | None = Field(default=None, min_length=1, max_length=200)
    system_prompt: Text | None = Field(default=None, max_length=100_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    timeout_seconds: float | None = Field(default=None, gt=0, le=3600)
    max_attempts: int | None = Field(default=None, ge=1, le=10)
    # null clears it: the agent's steps then follow its key's queue.
    queue: QueueName | None = None

    @field_validator("model")
    @classmethod
    def _model_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("model must not be blank")
        return value.strip() if value is not None else None


class AgentPublic(BaseModel):
    id: str
    name: str
    key_id: str
    provider: str
    model: str
    system_prompt: str | None
    temperature: float | None
    max_tokens: int | None
    timeout_seconds: float | None
    max_attempts: int
    queue: str | None
    created_at: datetime
    updated_at: datetime


class AgentList(BaseModel):
    data: list[AgentPublic]
    count: int
