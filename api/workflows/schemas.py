from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class WorkflowPublic(BaseModel):
    id: str
    name: str
    version: int
    description: str | None
    steps: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime


class WorkflowList(BaseModel):
    data: list[WorkflowPublic]
    count: int


WORKFLOW_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["name", "steps"],
                    "properties": {
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "steps": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["id", "agent", "prompt"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "agent": {"type": "string"},
                                    "prompt": {"type": "string"},
                                    "depends_on": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                        },
                    },
                }
            },
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}
