from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import Admin, ReadSessionDep, SessionDep, Viewer, forget_cached_tokens
from api.users import service
from api.users.schemas import Me, UserCreate, UserCreated, UserList, UserPublic, UserUpdate

router = APIRouter(tags=["users"])


@router.get("/me", response_model=Me)
def me(who: Viewer) -> Me:
    """Who this token or session acts as."""
    return Me(id=who.user_id, username=who.username, role=who.role, via=who.via)


@router.get("/users", response_model=UserList)
def list_users(session: ReadSessionDep, _: Admin) -> UserList:
    data = [service.to_public(u) for u in service.list_users(session)]
    return UserList(data=data, count=len(data))


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=UserCreated)
def create_user(body: UserCreate, session: SessionDep, who: Admin) -> UserCreated:
    """Create a user; without a password one is generated and returned this once."""
    return service.add_user(session, body, who.actor)


@router.patch("/users/{user_id}", response_model=UserPublic)
def update_user(user_id: str, body: UserUpdate, session: SessionDep, who: Admin) -> UserPublic:
    """Change a user's role, disable or enable them, or set their password (which signs
    them out everywhere). The last admin who can sign in cannot be demoted or disabled."""
    user = service.update_user(session, user_id, body, who.actor)
    forget_cached_tokens()
    return service.to_public(user)
