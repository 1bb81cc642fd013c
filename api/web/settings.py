"""Web UI pages: Settings → Account, API tokens, Users (admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import forget_cached_tokens
from api.errors import ApiError
from api.tokens import service as tokens
from api.users import service as users
from api.users.schemas import UserCreate, UserUpdate
from api.web.forms import api_errors
from api.web.render import render
from api.web.session import FormAdmin, FormMember, FormViewer, PageAdmin, PageViewer
from shared.db import read_session, session_scope
from shared.models import Role

router = APIRouter(prefix="/settings", include_in_schema=False)


# --- Account -------------------------------------------------------------------------


@router.get("/account")
def account(request: Request, who: PageViewer, changed: bool = False) -> Response:
    return render(request, "settings_account.html", who, errors={}, changed=changed)


@router.post("/account/password")
def change_password(
    request: Request,
    who: FormViewer,
    current_password: Annotated[str, Form(max_length=1024)] = "",
    new_password: Annotated[str, Form(max_length=1024)] = "",
    repeat_password: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    if new_password != repeat_password:
        errors = {"repeat_password": "the two new passwords differ"}
        return render(request, "settings_account.html", who, errors=errors, status_code=422)
    try:
        with session_scope() as session:
            users.change_own_password(
                session, who.user_id, current_password, new_password, who.actor
            )
    except ApiError as exc:
        errors = api_errors(exc, ("current_password", "new_password", "repeat_password"))
        return render(request, "settings_account.html", who, errors=errors, status_code=422)
    # The new password ended every session, this one included: sign in again.
    return RedirectResponse("/login?next=/settings/account", status_code=303)


# --- API tokens ----------------------------------------------------------------------


def _tokens_page(
    request: Request, who: PageViewer, *, created: str | None = None, errors: dict[str, str]
) -> Response:
    everyone = who.may(Role.admin)
    with read_session() as session:
        data = tokens.list_tokens(session, user_id=None if everyone else who.user_id)
        people = [u.username for u in users.list_users(session)] if everyone else []
    return render(
        request,
        "settings_tokens.html",
        who,
        tokens=data,
        created=created,
        errors=errors,
        people=people,
        status_code=422 if errors else 200,
    )


@router.get("/tokens")
def tokens_page(request: Request, who: PageViewer) -> Response:
    return _tokens_page(request, who, errors={})


@router.post("/tokens")
def create_token(
    request: Request,
    who: FormMember,
    name: Annotated[str, Form(max_length=200)] = "",
    user: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    name = name.strip()
    if not name or len(name) > 100:
        return _tokens_page(
            request, who, errors={"name": "give the token a name (1-100 characters)"}
        )
    try:
        with session_scope() as session:
            owner = (who.user_id, who.username)
            if user and user != who.username and who.may(Role.admin):
                found = users.get_user(session, user)
                owner = (found.id, found.username)
            created = tokens.create_token(session, name=name, actor=who.actor, owner=owner)
    except ApiError as exc:
        return _tokens_page(request, who, errors=api_errors(exc, ("name", "user")))
    return _tokens_page(request, who, created=created.token, errors={})


@router.post("/tokens/{token_id}/revoke")
def revoke_token(token_id: str, who: FormMember) -> Response:
    with session_scope() as session:
        tokens.revoke_token(
            session, token_id=token_id, actor=who.actor, any_user=who.may(Role.admin)
        )
    forget_cached_tokens()
    return RedirectResponse("/settings/tokens", status_code=303)


# --- Users (admins) ------------------------------------------------------------------


def _users_page(
    request: Request,
    who: PageAdmin,
    *,
    errors: dict[str, str],
    created: tuple[str, str | None] | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    with read_session() as session:
        data = [users.to_public(u) for u in users.list_users(session)]
    return render(
        request,
        "settings_users.html",
        who,
        users=data,
        roles=list(Role),
        errors=errors,
        created=created,
        form=form or {},
        status_code=422 if errors else 200,
    )


@router.get("/users")
def users_page(request: Request, who: PageAdmin) -> Response:
    return _users_page(request, who, errors={})


@router.post("/users")
def create_user(
    request: Request,
    who: FormAdmin,
    username: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=16)] = Role.member,
) -> Response:
    form = {"username": username, "role": role}
    if role not in set(Role):
        return _users_page(request, who, errors={"role": "pick a role"}, form=form)
    try:
        with session_scope() as session:
            made = users.add_user(
                session, UserCreate(username=username.strip(), role=Role(role)), who.actor
            )
    except ApiError as exc:
        errors = api_errors(exc, ("username", "role"), conflict_field="username")
        return _users_page(request, who, errors=errors, form=form)
    except ValueError as exc:  # pydantic: empty or too long a name
        return _users_page(request, who, errors={"username": str(exc).splitlines()[-1]}, form=form)
    return _users_page(request, who, errors={}, created=(made.username, made.password))


@router.post("/users/{user_id}")
def update_user(
    request: Request,
    user_id: str,
    who: FormAdmin,
    role: Annotated[str, Form(max_length=16)] = "",
    disabled: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    change = UserUpdate(
        role=Role(role) if role in set(Role) else None,
        disabled=None if disabled == "" else disabled == "true",
    )
    try:
        with session_scope() as session:
            users.update_user(session, user_id, change, who.actor)
    except ApiError as exc:
        return _users_page(request, who, errors={"_form": exc.message})
    forget_cached_tokens()
    return RedirectResponse("/settings/users", status_code=303)
