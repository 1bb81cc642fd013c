"""Signing in to the web UI from tests, as a browser would: users are made with the
`ownkey user` command, sign-in goes through the login form (and its CSRF cookie)."""

from __future__ import annotations

import re
import uuid

import httpx

from tests.processes import Stack, run_ownkey

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
LOGIN_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery staple"


def make_user(stack: Stack, role: str, *, password: str = PASSWORD) -> str:
    """A new user with `role` (viewer, member, admin); returns the username."""
    username = f"{role}-{uuid.uuid4().hex[:8]}"
    done = run_ownkey(
        ["user", "create", username, "--role", role, "--password-stdin"],
        env=stack.env,
        input=password + "\n",
    )
    assert done.returncode == 0, done.stderr
    return username


def sign_in(stack: Stack, username: str, password: str = PASSWORD) -> httpx.Client:
    """A client holding a signed-in session cookie (redirects are not followed)."""
    client = httpx.Client(base_url=stack.api_url, timeout=30, follow_redirects=False)
    form = client.get("/login")
    match = LOGIN_CSRF_FIELD.search(form.text)
    assert match, form.text
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": match.group(1)},
    )
    assert response.status_code == 303, (response.status_code, response.text[:500])
    return client


def csrf_token(client: httpx.Client, page: str = "/settings/account") -> str:
    """The session's CSRF token, as a page carries it for its forms and scripts."""
    html = client.get(page).text
    match = CSRF_META.search(html)
    assert match, html[:500]
    return match.group(1)
