from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.datasets import has_nul

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_IDEMPOTENCY_KEY_CHARS = 255


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow: str = Field(min_length=1, max_length=100, description="workflow id or name")
    input: dict[str, Any] = Field(default_factory=dict, description="a JSON object")

    @field_validator("input")
    @classmethod
    def _no_nul(cls, value: dict[str, Any]) -> dict[str, Any]:
        # It would reach a prompt, which PostgreSQL text cannot store.
        if has_nul(value):
            raise ValueError("input must not contain NUL (\\u0000) characters")
        return value


class RunAccepted(BaseModel):
    id: str
    status: str


class StepPublic(BaseModel):
    id: str
    step_run_id: str
    status: str
    agent: str
    provider: str
    model: str
    depends_on: list[str]
    output: str | None
    error: str | None
    input_tokens: int | None
    output_tokens: int | None
    cached_tokens: int | None
    cost_usd: float | None
    latency_ms: int | None
    attempts: int
    attempt_log: list[dict[str, Any]]
    worker_host: str | None
    started_at: datetime | None
    finished_at: datetime | None
    # The broker queue the step was planned on, and, while it is queued there with no
    # live worker consuming it, why it does not start.
    queue: str
    waiting_for: str | None = None


class RunSummary(BaseModel):
    id: str
    status: str
    workflow: str
    workflow_id: str
    workflow_version: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float
    cost_incomplete: bool
    failed_step: str | None
    error: str | None


class RunPublic(RunSummary):
    input: dict[str, Any]
    steps: list[StepPublic]


class RunList(BaseModel):
    data: list[RunSummary]
    count: int
