"""Accounts against the real API process: signing in, roles on every change, CSRF on
cookie-authenticated changes, sign-in throttling, per-user tokens and the audit log."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.routing import APIRoute

from api.web.router import PAGE_ROUTERS
from tests.processes import Stack, run_ownkey
from tests.web_session import PASSWORD, csrf_token, make_user, sign_in

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)


def _token_for(stack: Stack, username: str) -> str:
    done = run_ownkey(["token", "create", "--name", "t", "--user", username], env=stack.env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_sign_in_sets_a_hardened_cookie_and_pages_need_it(stack: Stack) -> None:
    with httpx.Client(base_url=stack.api_url, follow_redirects=False) as anonymous:
        page = anonymous.get("/settings/account")
        assert (
            page.status_code == 303 and page.headers["location"] == "/login?next=/settings/account"
        )
    user = make_user(stack, "member")
    client = sign_in(stack, user)
    cookie = next(c for c in client.cookies.jar if c.name == "ownkey_session")
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite", "").lower() == "lax"
    assert not cookie.secure  # plain http on loopback; https gets Secure
    me = client.get("/api/v1/me")
    assert me.json() == {
        "id": me.json()["id"],
        "username": user,
        "role": "member",
        "via": "session",
    }


def test_wrong_password_is_refused_and_then_throttled(stack: Stack) -> None:
    user = make_user(stack, "viewer")
    client = httpx.Client(base_url=stack.api_url, follow_redirects=False)
    statuses = []
    for _ in range(6):
        form = client.get("/login").text
        token = form.split('name="csrf_token" value="')[1].split('"')[0]
        response = client.post(
            "/login", data={"username": user, "password": "wrong-password", "csrf_token": token}
        )
        statuses.append(response.status_code)
    assert statuses == [401] * 5 + [429]
    assert "Too many failed sign-ins" in response.text
    # The right password is refused too while the lock lasts: no guessing through it.
    form = client.get("/login").text
    token = form.split('name="csrf_token" value="')[1].split('"')[0]
    locked = client.post(
        "/login", data={"username": user, "password": PASSWORD, "csrf_token": token}
    )
    assert locked.status_code == 429


def test_a_cookie_authenticated_change_needs_the_csrf_token(stack: Stack) -> None:
    client = sign_in(stack, make_user(stack, "admin"))
    body = {"provider": "openai", "name": "csrf-key", "api_key": "sk-csrf-test-0000"}
    refused = client.post("/api/v1/keys", json=body)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert client.get("/api/v1/keys").json()["count"] >= 0  # reads need no token
    assert all(k["name"] != "csrf-key" for k in client.get("/api/v1/keys").json()["data"])
    token = csrf_token(client)
    accepted = client.post("/api/v1/keys", json=body, headers={"X-CSRF-Token": token})
    assert accepted.status_code == 201, accepted.text
    # Signing out without the form's token is refused; with it, the session ends.
    assert client.post("/logout").status_code == 403
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/api/v1/me").status_code == 401


def test_a_viewers_token_reads_but_cannot_create_or_delete(stack: Stack) -> None:
    admin = stack.client()
    key = admin.post(
        "/keys", json={"provider": "openai", "name": "viewer-test", "api_key": "sk-v-000000"}
    ).json()
    viewer = stack.client(_token_for(stack, make_user(stack, "viewer")))
    assert viewer.get("/keys").status_code == 200
    assert viewer.get("/runs").status_code == 200
    attempts = [
        viewer.post("/keys", json={"provider": "openai", "name": "x", "api_key": "sk-x-0000000"}),
        viewer.delete(f"/keys/{key['id']}"),
        viewer.post("/agents", json={"name": "x", "key_id": key["id"], "model": "m"}),
        viewer.post("/runs", json={"workflow": "nope", "input": {}}),
        viewer.post("/tokens", json={"name": "more"}),
        viewer.get("/users"),
        viewer.get("/audit"),
    ]
    assert [a.status_code for a in attempts] == [403] * len(attempts)
    assert "needs" in attempts[0].json()["detail"]
    assert admin.get(f"/keys/{key['id']}").status_code == 200  # nothing was deleted


def test_a_members_token_runs_things_but_cannot_touch_keys_or_users(stack: Stack) -> None:
    member = stack.client(_token_for(stack, make_user(stack, "member")))
    assert (
        member.post(
            "/keys", json={"provider": "openai", "name": "m", "api_key": "sk-m-0000000"}
        ).status_code
        == 403
    )
    assert member.post("/users", json={"username": "x"}).status_code == 403
    created = member.post("/tokens", json={"name": "mine"})
    assert created.status_code == 201 and created.json()["token"].startswith("ok_")
    listed = member.get("/tokens").json()
    assert created.json()["id"] in [t["id"] for t in listed["data"]]
    assert all("token" not in t for t in listed["data"])  # shown once, never listed


def test_revoking_a_token_stops_it_and_the_audit_log_says_who_did_what(stack: Stack) -> None:
    admin_name = make_user(stack, "admin")
    admin = stack.client(_token_for(stack, admin_name))
    member_name = make_user(stack, "member")
    member_token = _token_for(stack, member_name)
    member = stack.client(member_token)
    assert member.get("/me").json()["username"] == member_name
    token_id = next(
        t["id"]
        for t in admin.get("/tokens", params={"all": True}).json()["data"]
        if t["username"] == member_name
    )
    assert admin.delete(f"/tokens/{token_id}").status_code == 204
    assert member.get("/me").status_code == 401
    key = admin.post(
        "/keys", json={"provider": "openai", "name": "audited", "api_key": "sk-audit-secret-9"}
    ).json()
    admin.delete(f"/keys/{key['id']}")
    events = admin.get("/audit", params={"user": admin_name}).json()["data"]
    actions = [(e["action"], e["target_name"]) for e in events]
    assert ("key.deleted", "audited") in actions and ("key.created", "audited") in actions
    assert ("token.revoked", "t") in actions
    assert "sk-audit-secret-9" not in str(events)


def test_the_last_admin_cannot_be_demoted(stack: Stack) -> None:
    admin = stack.client()
    users = admin.get("/users").json()["data"]
    admins = [u for u in users if u["role"] == "admin" and u["can_sign_in"]]
    new = admin.post("/users", json={"username": "solo-admin-check", "role": "member"})
    assert new.status_code == 201 and len(new.json()["password"]) >= 10
    for extra in admins[1:]:
        assert admin.patch(f"/users/{extra['id']}", json={"role": "member"}).status_code == 200
    last = admins[0]
    refused = admin.patch(f"/users/{last['id']}", json={"disabled": True})
    assert refused.status_code == 409 and "last admin" in refused.json()["detail"]


def test_behind_a_tls_proxy_the_session_cookie_is_secure(stack: Stack) -> None:
    user = make_user(stack, "viewer")
    # A proxy on this host terminates TLS and says so; uvicorn trusts 127.0.0.1.
    client = httpx.Client(
        base_url=stack.api_url, headers={"X-Forwarded-Proto": "https"}, follow_redirects=False
    )
    form = client.get("/login")
    token = form.text.split('name="csrf_token" value="')[1].split('"')[0]
    assert "Secure" in form.headers["set-cookie"]  # the sign-in form's own CSRF cookie too
    # httpx keeps Secure cookies off plain http: hand the form's cookie back as a browser
    # behind the proxy would.
    response = client.post(
        "/login",
        data={"username": user, "password": PASSWORD, "csrf_token": token},
        headers={"Cookie": f"ownkey_login_csrf={form.cookies['ownkey_login_csrf']}"},
    )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("ownkey_session=") and "Secure" in cookie and "HttpOnly" in cookie


def test_every_web_form_refuses_a_post_without_the_csrf_token(stack: Stack) -> None:
    """Walks every POST route of the web UI (so a new form cannot forget the check)."""
    posts = sorted(
        route.path
        for router in PAGE_ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and "POST" in route.methods and route.path != "/login"
    )
    assert len(posts) >= 12, posts
    client = sign_in(stack, make_user(stack, "admin"))
    for path in posts:
        url = re.sub(r"\{[^}]+\}", "does-not-matter", path)
        refused = client.post(url, data={"name": "x", "username": "x", "csrf_token": "wrong"})
        assert refused.status_code == 403, (path, refused.status_code, refused.text[:300])
        assert "CSRF" in refused.text
    assert client.get("/api/v1/me").status_code == 200  # still signed in: nothing happened
