"""Provider keys through the real API: defaults, validation, deletion, checks against
fake-llm, and the bearer token on every endpoint."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from tests.processes import FakeLLM, Stack

DEFAULT_BASE_URLS = {
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com/v1",
    "mistral": "https://api.mistral.ai/v1",
    "groq": "https://api.groq.com/openai/v1",
    "ollama": "http://localhost:11434",
    "lmstudio": "http://localhost:1234/v1",
}
KEY_FIELDS = {
    "id",
    "provider",
    "name",
    "base_url",
    "key_hint",
    "rpm",
    "tpm",
    "queue",
    "created_at",
}
GOOD_KEY = "good-key-1"
WRONG_KEY = "sk-wrong-secret-key-5150"


def tag() -> str:
    return uuid.uuid4().hex[:8]


def key_count(api: httpx.Client) -> int:
    body = api.get("/keys").json()
    assert body["count"] == len(body["data"])
    return int(body["count"])


def detail_text(response: httpx.Response) -> str:
    return str(response.json()["detail"])


@pytest.fixture
def strict_fake(fake_llm: FakeLLM) -> Iterator[str]:
    """fake-llm accepts only GOOD_KEY and lists one extra model, named per test."""
    extra = f"extra-model-{tag()}"
    fake_llm.configure(valid_keys=[GOOD_KEY], models=[extra])
    try:
        yield extra
    finally:
        fake_llm.configure(valid_keys=[], models=[])


# --- create -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", sorted(DEFAULT_BASE_URLS))
def test_create_key_gets_the_provider_default_base_url(stack: Stack, provider: str) -> None:
    local = provider in ("ollama", "lmstudio")
    body: dict[str, Any] = {"provider": provider, "name": f"{provider}-{tag()}"}
    if not local:
        body["api_key"] = f"sk-{provider}-secret-{tag()}-wxyz"
    with stack.client() as api:
        r = api.post("/keys", json=body)
        assert r.status_code == 201, r.text
        created = r.json()
        assert set(created) == KEY_FIELDS
        assert created["provider"] == provider
        assert created["name"] == body["name"]
        assert created["base_url"] == DEFAULT_BASE_URLS[provider]
        assert created["key_hint"] == ("" if local else "wxyz")
        assert re.fullmatch(r"[0-9a-f]{32}", created["id"])
        fetched = api.get(f"/keys/{created['id']}")
        assert fetched.status_code == 200
        # Same answer on every database: SQLite used to drop the time zone on read.
        assert fetched.json() == created
        created_at = datetime.fromisoformat(created["created_at"].replace("Z", "+00:00"))
        assert created_at.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - created_at) < timedelta(minutes=5)


def test_create_key_keeps_an_explicit_base_url_without_trailing_slash(stack: Stack) -> None:
    body = {
        "provider": "openai_compatible",
        "name": f"vllm-{tag()}",
        "base_url": "http://vllm.internal:8000/v1/",
    }
    with stack.client() as api:
        r = api.post("/keys", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["base_url"] == "http://vllm.internal:8000/v1"
    assert r.json()["key_hint"] == ""


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"provider": "openai_compatible"}, "base_url"),
        ({"provider": "openai"}, "api_key"),
        ({"provider": "anthropic", "api_key": "   "}, "api_key"),
        ({"provider": "openrouter-ish", "api_key": "sk-1"}, "provider"),
        ({"provider": "openai", "api_key": "sk-1", "secret": "x"}, "secret"),
        ({"provider": "openai", "api_key": "sk-1", "base_url": "ftp://host/v1"}, "base_url"),
        ({"provider": "openai", "api_key": "sk-1", "base_url": "api.openai.com"}, "base_url"),
        ({"provider": "ollama", "name": "   "}, "name"),
    ],
    ids=[
        "compatible-no-base-url",
        "hosted-no-api-key",
        "hosted-blank-api-key",
        "unknown-provider",
        "unknown-field",
        "ftp-base-url",
        "no-scheme-base-url",
        "blank-name",
    ],
)
def test_invalid_key_is_422_and_creates_nothing(
    stack: Stack, body: dict[str, Any], names: str
) -> None:
    body = {"name": f"bad-{tag()}", **body}
    with stack.client() as api:
        before = key_count(api)
        r = api.post("/keys", json=body)
        assert r.status_code == 422, r.text
        assert names in detail_text(r)
        assert key_count(api) == before


def test_duplicate_key_name_is_409_and_creates_nothing(stack: Stack) -> None:
    body = {"provider": "openai", "name": f"dup-{tag()}", "api_key": "sk-first-1111"}
    with stack.client() as api:
        assert api.post("/keys", json=body).status_code == 201
        before = key_count(api)
        r = api.post("/keys", json={**body, "api_key": "sk-second-2222"})
        assert r.status_code == 409, r.text
        assert body["name"] in detail_text(r)
        assert "sk-second" not in r.text
        assert key_count(api) == before
        same = [k for k in api.get("/keys").json()["data"] if k["name"] == body["name"]]
        assert [k["key_hint"] for k in same] == ["1111"]


def test_a_secret_of_the_wrong_type_is_not_echoed(stack: Stack) -> None:
    with stack.client() as api:
        r = api.post("/keys", json={"provider": "openai", "name": f"t-{tag()}", "api_key": 424242})
    assert r.status_code == 422
    assert "424242" not in r.text


# --- read and delete ----------------------------------------------------------------------


def test_list_get_and_delete_a_key(stack: Stack) -> None:
    name = f"del-{tag()}"
    with stack.client() as api:
        before = key_count(api)
        created = api.post("/keys", json={"provider": "ollama", "name": name}).json()
        listed = api.get("/keys").json()
        assert listed["count"] == before + 1
        assert [k for k in listed["data"] if k["id"] == created["id"]] == [created]
        assert all(set(k) == KEY_FIELDS for k in listed["data"])
        names = [k["name"] for k in listed["data"]]
        assert names == sorted(names)

        r = api.delete(f"/keys/{created['id']}")
        assert r.status_code == 204 and r.content == b""
        assert api.get(f"/keys/{created['id']}").status_code == 404
        assert api.delete(f"/keys/{created['id']}").status_code == 404
        assert key_count(api) == before


# --- limits and PATCH ---------------------------------------------------------------------


def test_limits_are_set_at_creation_changed_and_cleared_by_patch(stack: Stack) -> None:
    with stack.client() as api:
        created = api.post(
            "/keys", json={"provider": "ollama", "name": f"lim-{tag()}", "rpm": 60, "tpm": 9000}
        )
        assert created.status_code == 201, created.text
        key = created.json()
        assert (key["rpm"], key["tpm"]) == (60, 9000)
        plain = api.post("/keys", json={"provider": "ollama", "name": f"nolim-{tag()}"}).json()
        assert (plain["rpm"], plain["tpm"]) == (None, None)

        new_name = f"renamed-{tag()}"
        r = api.patch(f"/keys/{key['id']}", json={"rpm": 30, "name": new_name})
        assert r.status_code == 200, r.text
        assert (r.json()["rpm"], r.json()["tpm"], r.json()["name"]) == (30, 9000, new_name)
        r = api.patch(
            f"/keys/{key['id']}", json={"tpm": None, "base_url": "http://models.internal:8000/"}
        )
        assert r.status_code == 200, r.text
        updated = api.get(f"/keys/{key['id']}").json()
        assert (updated["rpm"], updated["tpm"]) == (30, None)
        assert updated["base_url"] == "http://models.internal:8000"
        assert updated["key_hint"] == key["key_hint"] and updated["created_at"] == key["created_at"]
        assert api.patch(f"/keys/{key['id']}", json={}).json() == updated


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rpm": 0}, "rpm"),
        ({"tpm": -5}, "tpm"),
        ({"rpm": "many"}, "rpm"),
        ({"name": None}, "name"),
        ({"name": "  "}, "name"),
        ({"base_url": "ftp://x"}, "base_url"),
        ({"provider": "openai"}, "provider"),
        ({"api_key": "sk-new-secret-123456"}, "api_key"),
    ],
)
def test_a_bad_patch_is_422_naming_the_field_and_changes_nothing(
    stack: Stack, body: dict[str, Any], field: str
) -> None:
    with stack.client() as api:
        key = api.post(
            "/keys", json={"provider": "ollama", "name": f"bad-{tag()}", "rpm": 10}
        ).json()
        r = api.patch(f"/keys/{key['id']}", json=body)
        assert r.status_code == 422, r.text
        assert field in r.text
        assert "sk-new-secret-123456" not in r.text
        assert api.get(f"/keys/{key['id']}").json() == key


def test_patch_refuses_a_taken_name_and_an_unknown_key(stack: Stack) -> None:
    with stack.client() as api:
        first = api.post("/keys", json={"provider": "ollama", "name": f"a-{tag()}"}).json()
        second = api.post("/keys", json={"provider": "ollama", "name": f"b-{tag()}"}).json()
        r = api.patch(f"/keys/{second['id']}", json={"name": first["name"]})
        assert r.status_code == 409 and first["name"] in r.text
        assert api.patch(f"/keys/{second['id']}", json={"name": second["name"]}).status_code == 200
        assert api.patch(f"/keys/{uuid.uuid4().hex}", json={"rpm": 5}).status_code == 404


def test_limits_at_creation_are_validated(stack: Stack) -> None:
    with stack.client() as api:
        before = key_count(api)
        r = api.post("/keys", json={"provider": "ollama", "name": f"z-{tag()}", "rpm": 0})
        assert r.status_code == 422 and "rpm" in r.text
        assert key_count(api) == before


def test_a_write_is_committed_before_it_is_answered(stack: Stack) -> None:
    """The session commits before the response goes out, so a client reads its own
    writes at once (FastAPI runs yield dependencies' exit code after sending, unless
    scoped to the function)."""
    t = tag()
    with stack.client() as api:
        for i in range(50):
            created = api.post("/keys", json={"provider": "ollama", "name": f"raw-{t}-{i}"})
            assert created.status_code == 201
            key_id = created.json()["id"]
            assert api.get(f"/keys/{key_id}").status_code == 200, f"create {i} not visible"
            assert api.delete(f"/keys/{key_id}").status_code == 204
            assert api.get(f"/keys/{key_id}").status_code == 404, f"delete {i} not visible"


@pytest.fixture
def commit_time_trigger(stack: Stack) -> Iterator[Engine]:
    """On PostgreSQL, a deferred trigger that runs at COMMIT for keys with special
    names: `slow-commit-*` commits half a second late, `commit-fails-*` fails to commit."""
    if not stack.env["OWNKEY_DATABASE_URL"].startswith("postgresql"):
        pytest.skip("deferred triggers need PostgreSQL")
    engine = create_engine(stack.env["OWNKEY_DATABASE_URL"])
    with engine.begin() as db:
        db.execute(
            text("""
            CREATE OR REPLACE FUNCTION ownkey_test_at_commit() RETURNS trigger AS $$
            BEGIN
                IF NEW.name LIKE 'commit-fails-%' THEN
                    RAISE EXCEPTION 'commit refused by the test trigger';
                END IF;
                PERFORM pg_sleep(0.5);
                RETURN NULL;
            END $$ LANGUAGE plpgsql""")
        )
        db.execute(text("DROP TRIGGER IF EXISTS ownkey_test_at_commit ON provider_keys"))
        db.execute(
            text("""
            CREATE CONSTRAINT TRIGGER ownkey_test_at_commit AFTER INSERT ON provider_keys
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            WHEN (NEW.name LIKE 'slow-commit-%' OR NEW.name LIKE 'commit-fails-%')
            EXECUTE FUNCTION ownkey_test_at_commit()""")
        )
    try:
        yield engine
    finally:
        with engine.begin() as db:
            db.execute(text("DROP TRIGGER IF EXISTS ownkey_test_at_commit ON provider_keys"))
            db.execute(text("DROP FUNCTION IF EXISTS ownkey_test_at_commit()"))
        engine.dispose()


def test_a_slow_commit_finishes_before_the_answer(
    stack: Stack, commit_time_trigger: Engine
) -> None:
    name = f"slow-commit-{tag()}"
    with stack.client() as api, stack.client() as other:
        created = api.post("/keys", json={"provider": "ollama", "name": name})
        assert created.status_code == 201, created.text
        # Another connection, right away: the key must already be there.
        assert other.get(f"/keys/{created.json()['id']}").status_code == 200


def test_a_failed_commit_is_not_answered_as_success(
    stack: Stack, commit_time_trigger: Engine
) -> None:
    name = f"commit-fails-{tag()}"
    with stack.client() as api:
        try:
            r = api.post("/keys", json={"provider": "ollama", "name": name})
        except httpx.TransportError:
            pass  # uvicorn may drop the connection after the error: still not a success
        else:
            assert r.status_code == 500, r.text
            assert "commit refused" not in r.text  # no internals leak
    with stack.client() as api:
        assert name not in [k["name"] for k in api.get("/keys").json()["data"]]


def test_unknown_key_is_404_everywhere(stack: Stack) -> None:
    missing = uuid.uuid4().hex
    with stack.client() as api:
        for r in (
            api.get(f"/keys/{missing}"),
            api.delete(f"/keys/{missing}"),
            api.post(f"/keys/{missing}/test"),
            api.get(f"/keys/{missing}/models"),
        ):
            assert r.status_code == 404, (r.request.method, r.request.url, r.text)
            assert missing in detail_text(r)


def test_deleting_a_key_in_use_is_409_naming_the_agent(stack: Stack) -> None:
    t = tag()
    with stack.client() as api:
        key = api.post("/keys", json={"provider": "ollama", "name": f"used-{t}"}).json()
        agent = {"name": f"user-of-key-{t}", "key_id": key["id"], "model": "llama3.2"}
        r = api.post("/agents", json=agent)
        assert r.status_code == 201, r.text
        r = api.delete(f"/keys/{key['id']}")
        assert r.status_code == 409, r.text
        assert agent["name"] in detail_text(r)
        assert api.get(f"/keys/{key['id']}").status_code == 200

        assert api.delete(f"/agents/{agent['name']}").status_code == 204
        assert api.delete(f"/keys/{key['id']}").status_code == 204


# --- checks against the provider ----------------------------------------------------------


def fake_key(api: httpx.Client, fake_llm: FakeLLM, provider: str, secret: str | None) -> str:
    base_url = f"{fake_llm.url}/v1" if provider == "openai" else fake_llm.url
    body: dict[str, Any] = {"provider": provider, "name": f"{provider}-{tag()}"}
    body["base_url"] = base_url
    if secret is not None:
        body["api_key"] = secret
    r = api.post("/keys", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ("openai", ["gpt-4o", "gpt-4o-mini"]),
        ("anthropic", ["claude-3-5-haiku-latest", "claude-sonnet-4-5"]),
        ("ollama", ["llama3.2"]),
    ],
)
def test_a_good_key_checks_ok_and_lists_the_providers_models(
    stack: Stack, fake_llm: FakeLLM, strict_fake: str, provider: str, expected: list[str]
) -> None:
    models = sorted([*expected, strict_fake])
    with stack.client() as api:
        key_id = fake_key(api, fake_llm, provider, None if provider == "ollama" else GOOD_KEY)
        r = api.post(f"/keys/{key_id}/test")
        assert r.status_code == 200, r.text
        assert r.json() == {
            "ok": True,
            "provider": provider,
            "error": None,
            "models_count": len(models),
        }
        r = api.get(f"/keys/{key_id}/models")
        assert r.status_code == 200, r.text
        assert r.json() == {"data": models, "count": len(models)}
    paths = [c["path"] for c in fake_llm.calls()]
    assert paths == (["/api/tags"] * 2 if provider == "ollama" else ["/v1/models"] * 2)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_wrong_key_fails_the_check_with_the_providers_words(
    stack: Stack, fake_llm: FakeLLM, strict_fake: str, provider: str
) -> None:
    with stack.client() as api:
        key_id = fake_key(api, fake_llm, provider, WRONG_KEY)
        r = api.post(f"/keys/{key_id}/test")
        assert r.status_code == 200, r.text
        result = r.json()
        assert result["ok"] is False and result["provider"] == provider
        assert result["models_count"] is None
        assert "Incorrect API key provided" in result["error"]
        assert WRONG_KEY not in r.text and WRONG_KEY[-8:] not in r.text

        r = api.get(f"/keys/{key_id}/models")
        assert r.status_code == 502, r.text
        message = detail_text(r)
        assert provider in message and "Incorrect API key provided" in message
        assert WRONG_KEY not in r.text and WRONG_KEY[-8:] not in r.text
    assert WRONG_KEY not in stack.logs()


def test_an_unreachable_provider_fails_the_check_clearly(stack: Stack) -> None:
    with stack.client() as api:
        r = api.post(
            "/keys",
            json={
                "provider": "openai_compatible",
                "name": f"dead-{tag()}",
                "base_url": "http://127.0.0.1:9/v1",
                "api_key": WRONG_KEY,
            },
        )
        key_id = r.json()["id"]
        result = api.post(f"/keys/{key_id}/test").json()
        assert result["ok"] is False and result["error"]
        r = api.get(f"/keys/{key_id}/models")
        assert r.status_code == 502
        assert WRONG_KEY not in r.text and WRONG_KEY not in result["error"]


# --- authentication -----------------------------------------------------------------------


def all_operations(stack: Stack) -> list[tuple[str, str]]:
    spec = httpx.get(f"{stack.api_url}/openapi.json", timeout=10).json()
    operations = []
    for path, methods in spec["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        concrete = re.sub(r"\{[^}]+\}", "openai", path) if "/prices/" in path else path
        concrete = re.sub(r"\{[^}]+\}", uuid.uuid4().hex, concrete)
        for method in methods:
            if method in ("get", "post", "put", "patch", "delete"):
                operations.append((method.upper(), concrete))
    return operations


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Bearer", "Basic dXNlcjpwYXNz"],
    ids=["none", "wrong", "empty", "basic"],
)
def test_every_api_endpoint_needs_a_valid_token(stack: Stack, authorization: str | None) -> None:
    operations = all_operations(stack)
    # Every router's endpoints are there: a router that fell out of the app would
    # otherwise leave this test passing on nothing.
    prefixes = {path.split("/")[3] for _, path in operations}
    assert {"keys", "agents", "workflows", "runs", "prices"} <= prefixes
    assert len(operations) >= 20
    headers = {} if authorization is None else {"Authorization": authorization}
    with httpx.Client(base_url=stack.api_url, timeout=10) as client:
        for method, path in operations:
            r = client.request(method, path, headers=headers, json={})
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert r.headers.get("www-authenticate") == "Bearer"
            assert "token" in detail_text(r)


def test_a_non_bearer_scheme_is_401(stack: Stack) -> None:
    r = httpx.get(f"{stack.api_url}/api/v1/keys", headers={"Authorization": f"Basic {stack.token}"})
    assert r.status_code == 401


def test_health_needs_no_token_and_a_valid_token_works(stack: Stack) -> None:
    r = httpx.get(f"{stack.api_url}/health", timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    with stack.client() as api:
        assert api.get("/keys").status_code == 200
