"""API tokens: shown once at creation, stored only as a hash."""

from __future__ import annotations

from sqlmodel import Session, col, select

from shared.crypto import hash_token, new_api_token
from shared.models import ApiToken, User

__all__ = ["create_api_token", "find_active_token", "token_is_valid"]


def create_api_token(session: Session, *, name: str, user_id: str) -> tuple[ApiToken, str]:
    """A new token acting as `user_id`: its row, and the token itself, which is returned
    this once and never stored."""
    token = new_api_token()
    row = ApiToken(name=name, token_hash=hash_token(token), user_id=user_id)
    session.add(row)
    session.flush()
    return row, token


def find_active_token(session: Session, token_hash: str) -> tuple[ApiToken, User] | None:
    """The unrevoked token with this hash and its active user, if any."""
    row = session.exec(
        select(ApiToken, User).where(
            ApiToken.token_hash == token_hash,
            col(ApiToken.revoked_at).is_(None),
            ApiToken.user_id == User.id,
            col(User.disabled_at).is_(None),
        )
    ).first()
    return None if row is None else (row[0], row[1])


def token_is_valid(session: Session, token: str) -> bool:
    return find_active_token(session, hash_token(token)) is not None
