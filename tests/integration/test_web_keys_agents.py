"""The keys and agents pages against the real API process: forms with CSRF, secrets that
never come back, checks against fake-llm, what a viewer may see, form errors next to
their fields, model prices, and (in a real browser) the model dropdown."""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

import httpx
import pytest

from tests.processes import FakeLLM, Stack
from tests.web_session import csrf_token, make_user, sign_in

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)

GOOD_KEY = "sk-web-good-key-7311"
WRONG_KEY = "sk-web-wrong-key-9042"


def tag() -> str:
    return uuid.uuid4().hex[:8]


def signed_in(stack: Stack, role: str) -> tuple[httpx.Client, str]:
    client = sign_in(stack, make_user(stack, role))
    return client, csrf_token(client)


def add_key(api: httpx.Client, **body: Any) -> dict[str, Any]:
    r = api.post("/keys", json={"name": f"key-{tag()}", **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def key_names(stack: Stack) -> set[str]:
    with stack.client() as api:
        return {k["name"] for k in api.get("/keys").json()["data"]}


def row(page: str, testid: str, name_attr: str, name: str) -> str:
    """The table row of one key or agent."""
    found = re.search(
        rf'<tr data-testid="{testid}"[^>]*{name_attr}="{re.escape(html.escape(name))}".*?</tr>',
        page,
        re.S,
    )
    assert found, f"no {testid} for {name} in:\n{page[:3000]}"
    return found.group(0)


def check_result(key_row: str) -> tuple[str, str] | None:
    found = re.search(r'data-testid="key-test-result"\s+data-ok="(\w+)">(.*?)</p>', key_row, re.S)
    return None if found is None else (found.group(1), html.unescape(found.group(2)).strip())


def field_error(page: str, name: str) -> str | None:
    found = re.search(rf'<span class="error" id="e-{name}" role="alert">(.*?)</span>', page, re.S)
    return None if found is None else html.unescape(found.group(1))


def input_value(page: str, name: str) -> str:
    found = re.search(rf'<input id="f-{name}" name="{name}" type="\w+" value="([^"]*)"', page)
    assert found, f"no input {name}"
    return html.unescape(found.group(1))


def form_token(page: str, action: str) -> str:
    """The CSRF token in the page's form that posts to `action`: what a browser sends."""
    found = re.search(
        rf'<form[^>]*action="{re.escape(action)}".*?name="csrf_token" value="([^"]*)"', page, re.S
    )
    assert found and found.group(1), f"no form posting to {action} with a token"
    return found.group(1)


def form_actions(page: str) -> list[str]:
    return re.findall(r'<form[^>]*action="([^"]+)"', page)


# --- keys ------------------------------------------------------------------------------


def test_adding_a_key_through_the_form_stores_it_and_never_shows_the_secret(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    client, token = signed_in(stack, "admin")
    assert form_token(client.get("/settings/keys").text, "/settings/keys") == token
    name, secret = f"web-{tag()}", f"sk-web-{tag()}{tag()}-wxyz"
    base_url = f"{fake_llm.url}/v1"
    form = {"csrf_token": token, "provider": "openai", "name": name, "base_url": base_url}
    added = client.post("/settings/keys", data={**form, "api_key": secret})
    assert added.status_code == 303, added.text
    assert added.headers["location"] == "/settings/keys"

    page = client.get("/settings/keys").text
    key_row = row(page, "key-row", "data-key-name", name)
    assert "<code>…wxyz</code>" in key_row and base_url in key_row and "openai" in key_row
    assert secret not in page and secret[:-4] not in page
    with stack.client() as api:
        stored = [k for k in api.get("/keys").json()["data"] if k["name"] == name]
    assert [(k["provider"], k["key_hint"], k["base_url"]) for k in stored] == [
        ("openai", "wxyz", base_url)
    ]

    # Refused forms come back with what was typed, except the secret.
    other_secret = f"sk-other-{tag()}{tag()}-qrst"  # not hex: no id on the page can contain it
    taken = client.post("/settings/keys", data={**form, "api_key": other_secret})
    assert taken.status_code == 409
    assert field_error(taken.text, "name") == f"a key named '{name}' already exists"
    assert input_value(taken.text, "name") == name
    assert input_value(taken.text, "base_url") == base_url
    assert input_value(taken.text, "api_key") == ""
    assert other_secret not in taken.text and "qrst" not in taken.text

    bad_url = client.post(
        "/settings/keys",
        data={**form, "name": f"web-{tag()}", "base_url": "ftp://x", "api_key": other_secret},
    )
    assert bad_url.status_code == 422
    assert "http:// or https://" in str(field_error(bad_url.text, "base_url"))
    assert input_value(bad_url.text, "api_key") == ""
    assert other_secret not in bad_url.text

    no_secret = client.post("/settings/keys", data={**form, "name": f"web-{tag()}"})
    assert no_secret.status_code == 422
    assert field_error(no_secret.text, "api_key") == "api_key is required for provider openai"
    with stack.client() as api:
        stored = [k for k in api.get("/keys").json()["data"] if k["name"].startswith("web-")]
    assert [k["key_hint"] for k in stored if k["name"] == name] == ["wxyz"]
    assert not [k for k in stored if k["key_hint"] == "qrst"]


def test_a_form_without_the_csrf_token_is_refused_and_changes_nothing(stack: Stack) -> None:
    with stack.client() as api:
        kept = add_key(api, provider="ollama")
    client, token = signed_in(stack, "admin")
    name = f"csrf-{tag()}"
    for sent in ({}, {"csrf_token": "not-the-token"}):
        refused = client.post("/settings/keys", data={**sent, "provider": "ollama", "name": name})
        assert refused.status_code == 403 and "CSRF" in refused.text
        refused = client.post(f"/settings/keys/{kept['id']}/delete", data=sent)
        assert refused.status_code == 403
    assert name not in key_names(stack) and kept["name"] in key_names(stack)
    # The same form with the token goes through: the refusal was the token's doing.
    accepted = client.post(
        "/settings/keys", data={"csrf_token": token, "provider": "ollama", "name": name}
    )
    assert accepted.status_code == 303 and name in key_names(stack)


def test_testing_a_key_shows_ok_or_the_providers_error_in_its_row(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    fake_llm.configure(valid_keys=[GOOD_KEY], models=[f"web-extra-{tag()}"])
    try:
        with stack.client() as api:
            base = {"provider": "openai", "base_url": f"{fake_llm.url}/v1"}
            good = add_key(api, **base, api_key=GOOD_KEY)
            wrong = add_key(api, **base, api_key=WRONG_KEY)
        client, _ = signed_in(stack, "admin")
        action = f"/settings/keys/{good['id']}/test"
        token = form_token(client.get("/settings/keys").text, action)
        checked = client.post(action, data={"csrf_token": token})
        assert checked.status_code == 200, checked.text
        assert check_result(row(checked.text, "key-row", "data-key-name", good["name"])) == (
            "true",
            "ok (3 models)",  # fake-llm's two openai models and the extra one
        )
        assert check_result(row(checked.text, "key-row", "data-key-name", wrong["name"])) is None

        failed = client.post(f"/settings/keys/{wrong['id']}/test", data={"csrf_token": token})
        assert failed.status_code == 200, failed.text
        result = check_result(row(failed.text, "key-row", "data-key-name", wrong["name"]))
        assert result is not None and result[0] == "false"
        assert "Incorrect API key provided" in result[1]
        assert WRONG_KEY not in failed.text and WRONG_KEY[-8:] not in failed.text
    finally:
        fake_llm.configure(valid_keys=[], models=[])


@pytest.mark.parametrize("role", ["viewer", "member"])
def test_only_admins_get_the_key_controls_and_their_posts_are_refused(
    stack: Stack, role: str
) -> None:
    with stack.client() as api:
        key = add_key(api, provider="ollama")
    admin, _ = signed_in(stack, "admin")
    admin_page = admin.get("/settings/keys").text
    admin_row = row(admin_page, "key-row", "data-key-name", key["name"])
    assert 'data-testid="key-test"' in admin_row and 'data-testid="key-delete"' in admin_row
    assert "/settings/keys" in form_actions(admin_page)

    client, token = signed_in(stack, role)
    page = client.get("/settings/keys")
    assert page.status_code == 200
    row(page.text, "key-row", "data-key-name", key["name"])  # they see the key
    assert form_actions(page.text) == ["/logout"]  # and no form but signing out
    for control in ('data-testid="key-test"', 'data-testid="key-delete"', 'name="api_key"'):
        assert control not in page.text
    assert "/static/keys.js" not in page.text

    name = f"{role}-{tag()}"
    new_key = {"csrf_token": token, "provider": "ollama", "name": name}
    posts = [
        client.post("/settings/keys", data=new_key),
        client.post(f"/settings/keys/{key['id']}/test", data={"csrf_token": token}),
        client.post(f"/settings/keys/{key['id']}/delete", data={"csrf_token": token}),
    ]
    assert [p.status_code for p in posts] == [403, 403, 403]
    assert "admin role" in posts[0].text
    assert name not in key_names(stack) and key["name"] in key_names(stack)


def test_deleting_a_key_and_refusing_to_delete_one_in_use(stack: Stack) -> None:
    with stack.client() as api:
        unused, used = add_key(api, provider="ollama"), add_key(api, provider="ollama")
        agent = f"uses-{tag()}"
        r = api.post("/agents", json={"name": agent, "key_id": used["id"], "model": "llama3.2"})
        assert r.status_code == 201, r.text
    client, token = signed_in(stack, "admin")
    deleted = client.post(f"/settings/keys/{unused['id']}/delete", data={"csrf_token": token})
    assert deleted.status_code == 303
    refused = client.post(f"/settings/keys/{used['id']}/delete", data={"csrf_token": token})
    assert refused.status_code == 409
    result = check_result(row(refused.text, "key-row", "data-key-name", used["name"]))
    assert result is not None and result[0] == "false" and agent in result[1]
    assert unused["name"] not in key_names(stack) and used["name"] in key_names(stack)


# --- agents ----------------------------------------------------------------------------


def agent_form(token: str, key_id: str, **fields: str) -> dict[str, str]:
    return {
        "csrf_token": token,
        "key_id": key_id,
        "model_choice": "__other__",
        "model_other": "",
        "system_prompt": "",
        "temperature": "",
        "max_tokens": "",
        "timeout_seconds": "",
        "max_attempts": "3",
        **fields,
    }


def test_a_duplicate_agent_name_is_shown_next_to_the_name_with_the_values_kept(
    stack: Stack,
) -> None:
    name = f"dup-{tag()}"
    with stack.client() as api:
        key = add_key(api, provider="ollama")
        r = api.post("/agents", json={"name": name, "key_id": key["id"], "model": "llama3.2"})
        assert r.status_code == 201, r.text
    client, token = signed_in(stack, "member")
    form = agent_form(
        token,
        key["id"],
        name=name,
        model_other="web-typed-model",
        system_prompt="Be brief.\r\nAnswer in <French>.",
        temperature="0.4",
        max_tokens="256",
        timeout_seconds="30",
        max_attempts="5",
    )
    refused = client.post("/agents/new", data=form)
    assert refused.status_code == 409, refused.text
    page = refused.text
    assert field_error(page, "name") == f"an agent named '{name}' already exists"
    assert re.search(r'id="f-name"[^>]*aria-invalid="true" aria-describedby="e-name"', page)
    assert [field_error(page, f) for f in ("model", "temperature", "key_id")] == [None] * 3
    assert input_value(page, "name") == name
    for field, value in [("temperature", "0.4"), ("max_tokens", "256"), ("timeout_seconds", "30")]:
        assert input_value(page, field) == value
    assert input_value(page, "max_attempts") == "5"
    assert ">Be brief.\r\nAnswer in &lt;French&gt;.</textarea>" in page
    assert '<option value="web-typed-model" selected>' in page
    assert re.search(rf'<option value="{key["id"]}"[^>]*selected>', page)
    with stack.client() as api:
        assert api.get(f"/agents/{name}").json()["model"] == "llama3.2"  # unchanged


def test_creating_editing_and_deleting_an_agent_through_the_form(stack: Stack) -> None:
    name = f"form-{tag()}"
    with stack.client() as api:
        key = add_key(api, provider="ollama")
    client, _ = signed_in(stack, "member")
    token = form_token(client.get("/agents/new").text, "/agents/new")
    form = agent_form(
        token,
        key["id"],
        name=name,
        model_choice="llama3.2",
        model_other="ignored-when-a-listed-model-is-chosen",
        system_prompt="Line one.\r\nLine two.",
        temperature="0.7",
        max_attempts="2",
    )
    created = client.post("/agents/new", data=form)
    assert created.status_code == 303, created.text
    with stack.client() as api:
        agent = api.get(f"/agents/{name}").json()
    assert (agent["model"], agent["temperature"], agent["max_attempts"]) == ("llama3.2", 0.7, 2)
    assert agent["system_prompt"] == "Line one.\nLine two."
    assert agent["max_tokens"] is None and agent["timeout_seconds"] is None
    assert row(client.get("/agents").text, "agent-row", "data-agent-name", name)

    edit = client.get(f"/agents/{agent['id']}").text
    assert input_value(edit, "temperature") == "0.7" and input_value(edit, "name") == name

    changed = {**form, "model_choice": "__other__", "model_other": "web-custom", "temperature": ""}
    too_many = client.post(f"/agents/{agent['id']}", data={**changed, "max_attempts": "11"})
    assert too_many.status_code == 422
    assert "less than or equal to 10" in str(field_error(too_many.text, "max_attempts"))
    assert input_value(too_many.text, "max_attempts") == "11"
    assert '<option value="web-custom" selected>' in too_many.text

    saved = client.post(f"/agents/{agent['id']}", data=changed)
    assert saved.status_code == 303, saved.text
    with stack.client() as api:
        agent = api.get(f"/agents/{name}").json()
        assert (agent["model"], agent["temperature"]) == ("web-custom", None)

    action = f"/agents/{agent['id']}/delete"
    deleted = client.post(
        action, data={"csrf_token": form_token(client.get("/agents").text, action)}
    )
    assert deleted.status_code == 303
    with stack.client() as api:
        assert api.get(f"/agents/{name}").status_code == 404


def test_a_viewer_reads_agents_but_gets_no_controls(stack: Stack) -> None:
    name = f"ro-{tag()}"
    with stack.client() as api:
        key = add_key(api, provider="ollama")
        agent = api.post(
            "/agents", json={"name": name, "key_id": key["id"], "model": "llama3.2"}
        ).json()
    client, token = signed_in(stack, "viewer")
    listing = client.get("/agents").text
    agent_row = row(listing, "agent-row", "data-agent-name", name)
    assert "agent-delete" not in agent_row and 'data-testid="new-agent"' not in listing
    edit = client.get(f"/agents/{agent['id']}").text
    assert '<fieldset class="plain" disabled>' in edit and "save-agent" not in edit
    assert client.get("/agents/new").status_code == 403
    posts = [
        client.post("/agents/new", data=agent_form(token, key["id"], name=f"v-{tag()}")),
        client.post(f"/agents/{agent['id']}/delete", data={"csrf_token": token}),
    ]
    assert [p.status_code for p in posts] == [403, 403]
    with stack.client() as api:
        assert api.get(f"/agents/{name}").status_code == 200


def test_the_agents_pages_show_the_models_price(stack: Stack) -> None:
    priced, unknown = f"web-priced-{tag()}", f"web-unknown-{tag()}"
    with stack.client() as api:
        r = api.put(
            f"/prices/openai/{priced}",
            json={
                "input_per_mtok": "1.25",
                "output_per_mtok": "10",
                "cached_input_per_mtok": "0.125",
            },
        )
        assert r.status_code == 200, r.text
        key = add_key(api, provider="openai", api_key="sk-web-price-0000")
        agents = {}
        for model in (priced, unknown):
            body = {"name": f"a-{model}", "key_id": key["id"], "model": model}
            agents[model] = api.post("/agents", json=body).json()
    client, _ = signed_in(stack, "viewer")
    listing = client.get("/agents").text
    priced_row = row(listing, "agent-row", "data-agent-name", f"a-{priced}")
    assert '<td class="num" data-testid="price-input">$1.25</td>' in priced_row
    assert '<td class="num" data-testid="price-output">$10.00</td>' in priced_row
    unknown_row = row(listing, "agent-row", "data-agent-name", f"a-{unknown}")
    assert "no price known" in unknown_row and "price-input" not in unknown_row

    summary = "$1.25 input · $10.00 output · $0.125 cached input per million tokens"
    edit = client.get(f"/agents/{agents[priced]['id']}").text
    assert re.search(rf'data-testid="model-price"[^>]*>{re.escape(summary)}</span>', edit)
    asked = client.get("/agents/price", params={"provider": "openai", "model": priced})
    assert asked.json() == {"text": summary}
    asked = client.get("/agents/price", params={"provider": "openai", "model": unknown})
    assert asked.json() == {"text": "no price known"}


# --- in a browser ----------------------------------------------------------------------


def test_the_model_dropdown_lists_the_keys_models_in_a_browser(
    stack: Stack, fake_llm: FakeLLM, browser: Any
) -> None:
    extra = f"web-listed-{tag()}"
    fake_llm.configure(valid_keys=[GOOD_KEY], models=[extra])
    try:
        with stack.client() as api:
            listed = add_key(
                api, provider="openai", api_key=GOOD_KEY, base_url=f"{fake_llm.url}/v1"
            )
            # Nothing listens on port 9: listing fails, the form falls back to a text box.
            broken = add_key(api, provider="ollama", base_url="http://127.0.0.1:9")
        client, _ = signed_in(stack, "member")
        context = browser.new_context()
        context.add_cookies(
            [{"name": c.name, "value": c.value, "url": stack.api_url} for c in client.cookies.jar]
        )
        page = context.new_page()
        page.goto(f"{stack.api_url}/agents/new")
        select = page.get_by_test_id("model-select")
        page.get_by_test_id("key-select").select_option(listed["id"])
        page.wait_for_function(
            "n => [...document.getElementById('f-model_choice').options].some(o => o.value === n)",
            arg=extra,
        )
        options = select.locator("option").evaluate_all("os => os.map(o => o.value)")
        assert options == ["", "gpt-4o", "gpt-4o-mini", extra, "__other__"]
        assert page.get_by_test_id("model-other").is_hidden()

        select.select_option("gpt-4o")
        price = page.get_by_test_id("model-price")
        price.filter(has_text="$2.50 input").wait_for()  # the shipped list price
        assert price.inner_text().startswith("$2.50 input · $10.00 output · $1.25 cached")

        page.get_by_test_id("key-select").select_option(broken["id"])
        page.get_by_test_id("model-status").filter(has_text="Could not list").wait_for()
        assert select.input_value() == "__other__"
        assert page.get_by_test_id("model-other").is_visible()
        assert page.get_by_test_id("model-other").input_value() == "gpt-4o"  # carried over

        name = f"browser-{tag()}"
        page.get_by_test_id("agent-name").fill(name)
        page.get_by_test_id("model-other").fill("my-local-model")
        with page.expect_navigation():
            page.get_by_test_id("save-agent").click()
        assert page.url.endswith("/agents"), page.content()[-6000:]
        context.close()
    finally:
        fake_llm.configure(valid_keys=[], models=[])
    with stack.client() as api:
        agent = api.get(f"/agents/{name}").json()
    assert (agent["key_id"], agent["model"]) == (broken["id"], "my-local-model")
