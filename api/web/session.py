"""Who is looking at a page: the signed-in user, their role, and CSRF on every form.

A page that needs a sign-in redirects to /login (and back afterwards); a role that is
too low gets a 403 page that says which role is needed. Every form that changes
something carries the session's CSRF token in a hidden `csrf_token` field.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from api.deps import SESSION_COOKIE, Principal, csrf_matches, session_principal
from shared.models import Role


class SignInRequired(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__("sign in required")
        self.next_path = next_path


class PageForbidden(Exception):
    def __init__(self, message: str, who: Principal) -> None:
        super().__init__(message)
        self.message = message
        self.who = who


async def page_principal(request: Request) -> Principal:
    cookie = request.cookies.get(SESSION_COOKIE)
    principal = await run_in_threadpool(session_principal, cookie) if cookie else None
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target if request.method == "GET" else "/")
    return principal


def page_role(role: Role, *, form: bool = False) -> Any:
    """The signed-in user if their role is at least `role`; for a form post (`form`),
    also only if it carries the session's CSRF token."""

    async def dependency(
        request: Request, who: Annotated[Principal, Depends(page_principal)]
    ) -> Principal:
        if not who.may(role):
            raise PageForbidden(
                f"This needs the {role} role or above; you are signed in as "
                f"{who.username} ({who.role}). Ask an admin.",
                who,
            )
        if form:
            sent = (await request.form()).get("csrf_token")
            if not csrf_matches(who, sent if isinstance(sent, str) else None):
                raise PageForbidden(
                    "This form had expired or did not come from ownkey (CSRF check). "
                    "Go back, reload the page and send it again.",
                    who,
                )
        return who

    return Depends(dependency)


PageViewer = Annotated[Principal, page_role(Role.viewer)]
PageMember = Annotated[Principal, page_role(Role.member)]
PageAdmin = Annotated[Principal, page_role(Role.admin)]
# Form posts: role and CSRF.
FormViewer = Annotated[Principal, page_role(Role.viewer, form=True)]
FormMember = Annotated[Principal, page_role(Role.member, form=True)]
FormAdmin = Annotated[Principal, page_role(Role.admin, form=True)]
