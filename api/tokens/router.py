from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import Member, ReadSessionDep, SessionDep, Viewer, forget_cached_tokens
from api.errors import Forbidden
from api.tokens import service
from api.tokens.schemas import TokenCreate, TokenCreated, TokenList
from api.users.service import get_user
from shared.models import Role

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.get("", response_model=TokenList)
def list_tokens(
    session: ReadSessionDep,
    who: Viewer,
    all_users: Annotated[bool, Query(alias="all", description="everyone's (admins)")] = False,
) -> TokenList:
    """Your API tokens (never the tokens themselves: those are shown once)."""
    if all_users and not who.may(Role.admin):
        raise Forbidden("only admins can list everyone's tokens")
    data = service.list_tokens(session, user_id=None if all_users else who.user_id)
    return TokenList(data=data, count=len(data))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TokenCreated)
def create_token(body: TokenCreate, session: SessionDep, who: Member) -> TokenCreated:
    """A token that acts as you (admins: as `user`), with that user's role; the answer
    holds it, this once. Viewers get theirs from an admin: they change nothing."""
    owner = who.user_id, who.username
    if body.user is not None:
        if not who.may(Role.admin):
            raise Forbidden("only admins can create tokens for other users")
        user = get_user(session, body.user)
        owner = user.id, user.username
    return service.create_token(session, name=body.name, actor=who.actor, owner=owner)


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: str, session: SessionDep, who: Member) -> None:
    """Revoke one of your tokens (admins: anyone's). It stops working at once on this API
    process, and within seconds on others."""
    service.revoke_token(session, token_id=token_id, actor=who.actor, any_user=who.may(Role.admin))
    forget_cached_tokens()
