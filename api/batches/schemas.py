from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.batches import MAX_IN_FLIGHT
from shared.datasets import FORMATS


class BatchOptions(BaseModel):
    """What a batch runs and how: the JSON body's fields, or the upload form's."""

    model_config = ConfigDict(extra="forbid")

    workflow: str = Field(min_length=1, max_length=100, description="workflow id or name")
    max_in_flight: int = Field(
        default=10, ge=1, le=MAX_IN_FLIGHT, description="runs of this batch in flight at once"
    )
    name: str | None = Field(default=None, max_length=200)
    skip_invalid: bool = Field(
        default=False,
        description="run the valid rows and list the invalid ones, instead of a 422",
    )
    dry_run: bool = Field(default=False, description="answer with the estimate; store nothing")

    @field_validator("workflow", "name")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL (\\u0000) characters")
        return value


class BatchCreate(BatchOptions):
    dataset: list[Any] = Field(description="one JSON object per run: each is a run's input")


class BatchForm(BatchOptions):
    """The upload form's fields besides `file`."""

    format: Literal["jsonl", "csv", "json"] | None = Field(
        default=None, description=f"one of {', '.join(FORMATS)}; default: from the file name"
    )


class BatchCounts(BaseModel):
    waiting: int
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int


class BatchPublic(BaseModel):
    id: str
    name: str | None
    workflow: str
    workflow_id: str
    status: str
    max_in_flight: int
    total: int
    progress: BatchCounts
    done: int = Field(description="items whose run has closed, whatever its outcome")
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float
    cost_incomplete: bool
    eta_seconds: float | None = Field(description="at the rate items have closed so far")
    schedule_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class BatchList(BaseModel):
    data: list[BatchPublic]
    count: int


class SkippedRow(BaseModel):
    line: int = Field(description="the line number in the file (the item number in a list)")
    msg: str


class BatchAccepted(BatchPublic):
    skipped: list[SkippedRow]
    skipped_count: int


class BatchRetried(BatchPublic):
    retried: int


class StepEstimatePublic(BaseModel):
    step: str
    agent: str
    provider: str
    model: str
    basis: str = Field(description="history or prompt_length")
    samples: int = Field(description="succeeded runs the history figures come from")
    input_tokens_per_item: tuple[int, int] = Field(description="low, high")
    output_tokens_per_item: tuple[int, int]
    low_usd: float | None = Field(description="null: no known price for the model")
    high_usd: float | None
    expected_usd: float | None


class BatchEstimatePublic(BaseModel):
    workflow: str
    items: int
    low_usd: float
    high_usd: float
    expected_usd: float | None
    basis: str = Field(description="history, prompt_length or mixed")
    basis_detail: str
    complete: bool = Field(description="false: some steps' models have no known price")
    unpriced_steps: list[str]
    steps: list[StepEstimatePublic]
    skipped: list[SkippedRow]
    skipped_count: int


def _form_schema() -> dict[str, Any]:
    fields = BatchForm.model_json_schema()
    fields["properties"]["file"] = {
        "type": "string",
        "format": "binary",
        "description": "the dataset: JSONL (one object a line) or CSV (a header line)",
    }
    fields["required"] = ["workflow", "file"]
    return fields


BATCH_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": BatchCreate.model_json_schema()},
            "multipart/form-data": {"schema": _form_schema()},
        },
    }
}
