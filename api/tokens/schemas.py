from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="what the token is for")
    user: str | None = Field(
        default=None,
        max_length=64,
        description="admins: the user (id or name) the token acts as; default yourself",
    )


class TokenPublic(BaseModel):
    id: str
    name: str
    username: str
    created_at: datetime
    revoked: bool


class TokenCreated(TokenPublic):
    token: str = Field(description="shown only in this answer; ownkey keeps only its hash")


class TokenList(BaseModel):
    data: list[TokenPublic]
    count: int
