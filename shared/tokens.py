"""API tokens: shown once at creation, stored only as a hash."""

from __future__ import annotations

from sqlmodel import Session, select

from shared.crypto import hash_token, new_api_token
from shared.models import ApiToken

__all__ = ["create_api_token", "find_active_token", "token_is_valid"]


def create_api_token(session: Session, *, name: str) -> str:
    token = new_api_token()
    session.add(ApiToken(name=name, token_hash=hash_token(token)))
    session.flush()
    return token


def find_active_token(session: Session, token_hash: str) -> ApiToken | None:
    """The unrevoked token with this hash, if any."""
    return session.exec(
        select(ApiToken).where(
            ApiToken.token_hash == token_hash,
            ApiToken.revoked_at.is_(None),  # type: ignore[union-attr]
        )
    ).first()


def token_is_valid(session: Session, token: str) -> bool:
    return find_active_token(session, hash_token(token)) is not None
