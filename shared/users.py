"""Accounts: creating users, signing in, web sessions.

A web session is a random value in an HttpOnly cookie; the database keeps only its
SHA-256 (like API tokens), the user, a CSRF token and an absolute expiry. Signing out
deletes the row; disabling a user or changing their password deletes all of theirs.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete
from sqlmodel import Session, col, func, select

from shared.crypto import hash_token
from shared.models import Role, User, WebSession, utcnow
from shared.passwords import (
    MIN_PASSWORD_LENGTH,
    hash_password,
    needs_rehash,
    verify_dummy,
    verify_password,
)

__all__ = [
    "SESSION_LIFETIME",
    "USERNAME_PATTERN",
    "AccountError",
    "SignedIn",
    "authenticate",
    "check_password_rules",
    "create_user",
    "default_admin",
    "end_all_sessions",
    "end_session",
    "ensure_first_admin",
    "find_session",
    "find_user",
    "generate_password",
    "set_password",
    "start_session",
]

SESSION_LIFETIME = timedelta(hours=12)
USERNAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,63}$")


class AccountError(ValueError):
    """A user cannot be created or changed as asked; `field` names what to fix."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class SignedIn:
    user: User
    cookie_value: str  # goes to the browser once, never stored
    csrf_token: str


def generate_password() -> str:
    return secrets.token_urlsafe(15)


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(
            f"the password must be at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )
    if len(password) > 1024:
        raise AccountError("the password must be at most 1024 characters", field="password")


def find_user(session: Session, username: str) -> User | None:
    return session.exec(select(User).where(User.username == username)).first()


def create_user(session: Session, *, username: str, role: Role, password: str | None) -> User:
    """A new user; `password` None makes one that cannot sign in until it gets one."""
    if not USERNAME_PATTERN.match(username):
        raise AccountError(
            "a username is 1-64 letters, digits and . _ @ -, starting with a letter or digit",
            field="username",
        )
    if find_user(session, username) is not None:
        raise AccountError(f"a user named '{username}' already exists", field="username")
    if password is not None:
        check_password_rules(password)
    user = User(
        username=username,
        role=role,
        password_hash=None if password is None else hash_password(password),
    )
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, user: User, password: str) -> None:
    """A new password signs the user out everywhere."""
    check_password_rules(password)
    user.password_hash = hash_password(password)
    session.add(user)
    end_all_sessions(session, user.id)


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with this password, or None (same work either way)."""
    user = find_user(session, username)
    if user is None or user.password_hash is None or user.disabled_at is not None:
        verify_dummy(password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    session.add(user)
    return user


def start_session(session: Session, user: User) -> SignedIn:
    cookie_value = secrets.token_urlsafe(32)
    csrf_token = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            id=hash_token(cookie_value),
            user_id=user.id,
            csrf_token=csrf_token,
            expires_at=utcnow() + SESSION_LIFETIME,
        )
    )
    session.flush()
    return SignedIn(user=user, cookie_value=cookie_value, csrf_token=csrf_token)


def find_session(session: Session, cookie_value: str) -> tuple[WebSession, User] | None:
    """The live session for this cookie and its active user, if any."""
    row = session.exec(
        select(WebSession, User).where(
            WebSession.id == hash_token(cookie_value),
            WebSession.user_id == User.id,
            WebSession.expires_at > utcnow(),
            col(User.disabled_at).is_(None),
        )
    ).first()
    return None if row is None else (row[0], row[1])


def end_session(session: Session, cookie_value: str) -> None:
    session.execute(delete(WebSession).where(col(WebSession.id) == hash_token(cookie_value)))


def end_all_sessions(session: Session, user_id: str) -> None:
    session.execute(delete(WebSession).where(col(WebSession.user_id) == user_id))


def ensure_first_admin(session: Session) -> tuple[User, str] | None:
    """On first start, an admin who can sign in: (user, password to print once), or None
    if one already exists. A password-less `admin` (left by the migration that gave old
    API tokens an owner) gets its first password here."""
    admins_with_password = session.exec(
        select(func.count())
        .select_from(User)
        .where(
            User.role == Role.admin,
            col(User.password_hash).is_not(None),
            col(User.disabled_at).is_(None),
        )
    ).one()
    if admins_with_password:
        return None
    password = generate_password()
    user = session.exec(
        select(User).where(User.role == Role.admin).order_by(col(User.created_at))
    ).first()
    if user is None:
        user = create_user(session, username="admin", role=Role.admin, password=password)
    else:
        set_password(session, user, password)
        user.disabled_at = None
    return user, password


def default_admin(session: Session) -> User:
    """The first admin, who owns tokens made without naming a user (`ownkey token create`,
    `ownkey up`); created without a password when there is none yet."""
    user = session.exec(
        select(User)
        .where(User.role == Role.admin, col(User.disabled_at).is_(None))
        .order_by(col(User.created_at))
    ).first()
    if user is None:
        name = "admin" if find_user(session, "admin") is None else f"admin-{secrets.token_hex(3)}"
        user = create_user(session, username=name, role=Role.admin, password=None)
    return user
