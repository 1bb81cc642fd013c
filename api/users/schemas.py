from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from shared.models import Role


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    role: Role = Role.member
    password: SecretStr | None = Field(
        default=None, description="at least 10 characters; omitted: one is generated"
    )


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    disabled: bool | None = None
    password: SecretStr | None = None


class UserPublic(BaseModel):
    id: str
    username: str
    role: Role
    created_at: datetime
    last_login_at: datetime | None
    disabled: bool
    can_sign_in: bool


class UserCreated(UserPublic):
    # Only when ownkey generated the password: shown this once.
    password: str | None = None


class UserList(BaseModel):
    data: list[UserPublic]
    count: int


class Me(BaseModel):
    id: str
    username: str
    role: Role
    via: str
