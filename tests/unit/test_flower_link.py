"""The web UI's "Flower" link: this machine's Flower port by default, OWNKEY_FLOWER_URL
when Flower sits behind a proxy under a path prefix."""

from __future__ import annotations

import re

import pytest
from starlette.requests import Request

from api.deps import Principal
from api.web.render import render
from shared.config import get_settings
from shared.models import Role


def _flower_link() -> str:
    request = Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/runs",
            "query_string": b"",
            "headers": [],
            "root_path": "",
            "scheme": "http",
            "server": ("testserver", 80),
        }
    )
    who = Principal(user_id="u", username="ada", role=Role.viewer, via="session")
    page = bytes(render(request, "base.html", who).body).decode()
    found = re.search(r'<a href="([^"]*)"[^>]*>Flower', page)
    assert found, page
    return found.group(1)


def test_the_link_points_at_this_machines_flower_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWNKEY_FLOWER_PORT", "6123")
    get_settings.cache_clear()
    assert _flower_link() == "http://127.0.0.1:6123/"


def test_the_link_follows_a_prefixed_flower_behind_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OWNKEY_FLOWER_URL", "https://ops.example.com/flower/")
    get_settings.cache_clear()
    assert _flower_link() == "https://ops.example.com/flower/"
