"""API tokens per user: each user manages their own; admins see and revoke everyone's."""

from __future__ import annotations

from sqlmodel import Session, col, select

from api.errors import NotFound
from api.tokens.schemas import TokenCreated, TokenPublic
from shared import audit
from shared.audit import Actor
from shared.models import ApiToken, User, utcnow
from shared.tokens import create_api_token


def _public(token: ApiToken, username: str) -> TokenPublic:
    return TokenPublic(
        id=token.id,
        name=token.name,
        username=username,
        created_at=token.created_at,
        revoked=token.revoked_at is not None,
    )


def list_tokens(session: Session, *, user_id: str | None) -> list[TokenPublic]:
    """One user's tokens, or everyone's (`user_id` None), newest first."""
    query = select(ApiToken, User.username).where(ApiToken.user_id == User.id)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    rows = session.exec(query.order_by(col(ApiToken.created_at).desc())).all()
    return [_public(token, username) for token, username in rows]


def create_token(
    session: Session, *, name: str, actor: Actor, owner: tuple[str, str]
) -> TokenCreated:
    """A token for `owner` (user id, username)."""
    token, secret = create_api_token(session, name=name, user_id=owner[0])
    audit.record(
        session,
        actor,
        "token.created",
        target_type="token",
        target_id=token.id,
        target_name=name,
        detail={"user": owner[1]},
    )
    return TokenCreated(**_public(token, owner[1]).model_dump(), token=secret)


def revoke_token(session: Session, *, token_id: str, actor: Actor, any_user: bool) -> None:
    token = session.get(ApiToken, token_id)
    if token is None or (not any_user and token.user_id != actor.user_id):
        raise NotFound(f"no token with id '{token_id}'")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.add(token)
        audit.record(
            session,
            actor,
            "token.revoked",
            target_type="token",
            target_id=token.id,
            target_name=token.name,
        )
