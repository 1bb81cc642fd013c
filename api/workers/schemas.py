from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class WorkerPublic(BaseModel):
    node: str
    host: str
    queues: list[str]
    concurrency: int
    pid: int
    started_at: datetime
    seen_at: datetime


class WorkerList(BaseModel):
    data: list[WorkerPublic]
    count: int
