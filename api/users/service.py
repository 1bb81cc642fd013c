"""Users: created, re-roled, disabled and given passwords by admins.

An installation always keeps one active admin who can sign in: the last one cannot be
demoted or disabled.
"""

from __future__ import annotations

from sqlmodel import Session, col, func, select

from api.errors import Conflict, NotFound, Unprocessable, field_error
from api.users.schemas import UserCreate, UserCreated, UserPublic, UserUpdate
from shared import audit
from shared.audit import Actor
from shared.models import Role, User, utcnow
from shared.passwords import verify_password
from shared.users import (
    AccountError,
    create_user,
    end_all_sessions,
    generate_password,
    set_password,
)


def to_public(user: User) -> UserPublic:
    return UserPublic(
        id=user.id,
        username=user.username,
        role=Role(user.role),
        created_at=user.created_at,
        last_login_at=user.last_login_at,
        disabled=user.disabled_at is not None,
        can_sign_in=user.disabled_at is None and user.password_hash is not None,
    )


def list_users(session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(col(User.username))).all())


def get_user(session: Session, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None:
        user = session.exec(select(User).where(User.username == user_id)).first()
    if user is None:
        raise NotFound(f"no user with id or name '{user_id}'")
    return user


def _unprocessable(exc: AccountError) -> Unprocessable:
    return Unprocessable([field_error(exc.field, str(exc))])


def add_user(session: Session, body: UserCreate, actor: Actor) -> UserCreated:
    generated = None if body.password is not None else generate_password()
    password = body.password.get_secret_value() if body.password is not None else generated
    try:
        user = create_user(session, username=body.username, role=body.role, password=password)
    except AccountError as exc:
        if "already exists" in str(exc):
            raise Conflict(str(exc)) from exc
        raise _unprocessable(exc) from exc
    audit.record(
        session,
        actor,
        "user.created",
        target_type="user",
        target_id=user.id,
        target_name=user.username,
        detail={"role": user.role},
    )
    return UserCreated(**to_public(user).model_dump(), password=generated)


def _other_active_admins(session: Session, user: User) -> int:
    return session.exec(
        select(func.count())
        .select_from(User)
        .where(
            User.role == Role.admin,
            col(User.disabled_at).is_(None),
            col(User.password_hash).is_not(None),
            User.id != user.id,
        )
    ).one()


def update_user(session: Session, user_id: str, body: UserUpdate, actor: Actor) -> User:
    user = get_user(session, user_id)
    losing_admin = (body.role is not None and body.role != Role.admin) or body.disabled is True
    if user.role == Role.admin and losing_admin and not _other_active_admins(session, user):
        raise Conflict(f"'{user.username}' is the last admin who can sign in; make another first")
    detail: dict[str, object] = {}
    if body.role is not None and body.role != user.role:
        detail["role"] = {"from": user.role, "to": body.role}
        user.role = body.role
    if body.disabled is not None and body.disabled != (user.disabled_at is not None):
        user.disabled_at = utcnow() if body.disabled else None
        detail["disabled"] = body.disabled
        if body.disabled:
            end_all_sessions(session, user.id)
    if body.password is not None:
        try:
            set_password(session, user, body.password.get_secret_value())
        except AccountError as exc:
            raise _unprocessable(exc) from exc
        detail["password"] = "changed"
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor,
        "user.updated",
        target_type="user",
        target_id=user.id,
        target_name=user.username,
        detail=detail,
    )
    return user


def change_own_password(
    session: Session, user_id: str, current: str, new: str, actor: Actor
) -> None:
    user = get_user(session, user_id)
    if user.password_hash is None or not verify_password(user.password_hash, current):
        raise Unprocessable([field_error("current_password", "the current password is wrong")])
    try:
        set_password(session, user, new)
    except AccountError as exc:
        raise Unprocessable([field_error("new_password", str(exc))]) from exc
    audit.record(
        session,
        actor,
        "user.password_changed",
        target_type="user",
        target_id=user.id,
        target_name=user.username,
    )
