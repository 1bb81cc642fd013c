"""The whole web UI journey in a real browser (headless Debian chromium, Playwright),
against a running ownkey with fake-llm and a worker:

sign in → add two provider keys → test one → two agents on different providers, models
picked from the dropdown → a workflow (a bad one first: its error shows next to the
editor) → start a run → watch it finish live → read outputs and cost → see them in
Usage & cost. Every HTML page and every API answer the browser received is checked for
the key secrets. Then a viewer: no delete buttons, and the API refuses their change.

Screenshots of each page go to test-output/screenshots/ (`make screenshots` copies the
chosen ones to docs/).
"""

from __future__ import annotations

import contextlib
import uuid
from decimal import Decimal
from typing import Any

import pytest

from tests.browser import SCREENSHOTS
from tests.integration.test_end_to_end import wait_for_run
from tests.processes import FakeLLM, Stack
from tests.web_session import PASSWORD, make_user

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)


class Recorder:
    """Everything the browser received: page HTML and API answers, for the secret check."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.urls: list[str] = []

    def attach(self, page: Any) -> None:
        page.on("request", lambda request: self.urls.append(request.url))

        def keep(response: Any) -> None:
            kind = response.request.resource_type
            if kind in ("document", "xhr", "fetch"):
                with contextlib.suppress(Exception):  # a redirect has no body
                    self.bodies.append(response.text())

        page.on("response", keep)


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, base: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/runs")
    assert page.get_by_test_id("current-user").inner_text() == username


def add_key(page: Any, base: str, *, provider: str, name: str, url: str, secret: str) -> str:
    """Add a key through the form; returns its id."""
    page.goto(f"{base}/settings/keys")
    page.get_by_test_id("provider-select").select_option(provider)
    page.get_by_label("Name").fill(name)
    page.get_by_test_id("base-url").fill(url)
    page.get_by_test_id("api-key").fill(secret)
    page.get_by_test_id("add-key").click()
    row = page.locator(f'[data-testid="key-row"][data-key-name="{name}"]')
    row.wait_for()
    return str(row.get_attribute("data-key-id"))


def add_agent(page: Any, base: str, *, name: str, key_id: str, model: str) -> None:
    page.goto(f"{base}/agents/new")
    page.get_by_test_id("agent-name").fill(name)
    page.get_by_test_id("key-select").select_option(key_id)
    select = page.get_by_test_id("model-select")
    # The dropdown is filled from the key's model list, fetched by the browser.
    page.wait_for_function(
        "m => [...document.getElementById('f-model_choice').options].some(o => o.value === m)",
        arg=model,
    )
    select.select_option(model)
    page.get_by_test_id("model-price").filter(has_text="$").wait_for()
    shot(page, "agent-form")
    page.get_by_test_id("save-agent").click()
    page.wait_for_url(f"{base}/agents")


def test_the_whole_journey_in_a_browser(stack: Stack, fake_llm: FakeLLM, browser: Any) -> None:
    tag = uuid.uuid4().hex[:6]
    secrets = {"openai": f"sk-openai-canary-{tag}-7731", "anthropic": f"sk-ant-canary-{tag}-4402"}
    fake_llm.configure(valid_keys=list(secrets.values()), latency_seconds=1.0)
    base = stack.api_url
    admin = make_user(stack, "admin")
    recorder = Recorder()
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    recorder.attach(page)
    try:
        page.goto(f"{base}/login")
        shot(page, "login")
        sign_in(page, base, admin)

        # Settings → API keys: two providers; test one.
        openai_key = add_key(
            page,
            base,
            provider="openai",
            name=f"openai-{tag}",
            url=f"{fake_llm.url}/v1",
            secret=secrets["openai"],
        )
        claude_key = add_key(
            page,
            base,
            provider="anthropic",
            name=f"claude-{tag}",
            url=fake_llm.url,
            secret=secrets["anthropic"],
        )
        row = page.locator(f'[data-testid="key-row"][data-key-name="openai-{tag}"]')
        assert row.get_by_test_id("key-hint").inner_text().endswith("7731")
        row.get_by_test_id("key-test").click()
        result = page.locator(
            f'[data-testid="key-row"][data-key-name="openai-{tag}"] [data-testid="key-test-result"]'
        )
        result.wait_for()
        assert result.inner_text().startswith("ok"), result.inner_text()
        shot(page, "keys")

        # Two agents on different providers, models picked from each key's list.
        add_agent(page, base, name=f"researcher-{tag}", key_id=openai_key, model="gpt-4o")
        add_agent(
            page,
            base,
            name=f"writer-{tag}",
            key_id=claude_key,
            model="claude-3-5-haiku-latest",
        )
        shot(page, "agents")

        # A workflow: first with a mistake, which is shown next to the editor.
        page.goto(f"{base}/workflows/new")
        editor = page.get_by_test_id("yaml-editor")
        bad = (
            f"name: brief-{tag}\nsteps:\n"
            "  - id: research\n    agent: nobody\n    prompt: Facts about {{ input.topic }}\n"
        )
        editor.fill(bad)
        page.get_by_role("button", name="Create workflow").click()
        errors = page.get_by_test_id("workflow-errors")
        errors.wait_for()
        assert "research" in errors.inner_text() and "nobody" in errors.inner_text()
        assert editor.input_value() == bad  # the text is kept
        shot(page, "workflow-error")
        good = (
            f"name: brief-{tag}\nsteps:\n"
            f"  - id: research\n    agent: researcher-{tag}\n"
            "    prompt: Facts about {{ input.topic }}\n"
            f"  - id: outline\n    agent: researcher-{tag}\n"
            "    prompt: An outline about {{ input.topic }}\n"
            f"  - id: write\n    agent: writer-{tag}\n    depends_on: [research, outline]\n"
            "    prompt: 'Write from {{ steps.research.output }} and {{ steps.outline.output }}'\n"
        )
        editor.fill(good)
        page.get_by_role("button", name="Create workflow").click()
        page.wait_for_url(f"{base}/workflows/*")
        graph = page.get_by_test_id("workflow-graph")
        assert graph.get_attribute("aria-label") == "Step graph: 3 steps"
        assert all(step in graph.text_content() for step in ("research", "outline", "write"))

        # Start a run from the input form and watch it finish without a reload.
        page.get_by_label("input.topic").fill("tidal power")
        shot(page, "workflow")
        page.get_by_role("button", name="Start run").click()
        page.wait_for_url(f"{base}/runs/*")
        run_id = page.url.rsplit("/", 1)[1]
        page.evaluate("window.__same_page = true")
        status = page.get_by_test_id("run-status")
        assert status.inner_text().strip() in ("queued", "running")
        page.locator('[data-testid="run-status"] [data-status="succeeded"]').wait_for(
            timeout=60_000
        )
        assert page.evaluate("window.__same_page") is True, "the page was reloaded"
        shot(page, "run")

        with stack.client() as api:
            run = wait_for_run(api, run_id, timeout=30)
            usage = api.get("/usage", params={"group_by": "day"}).json()
        assert run["status"] == "succeeded"
        for step in run["steps"]:
            card = page.locator(f'[data-step="{step["id"]}"]')
            assert card.locator('[data-step-field="output"]').inner_text() == step["output"]
            shown_cost = card.locator('[data-step-field="cost_usd"]').get_attribute("data-value")
            assert Decimal(shown_cost) == Decimal(str(step["cost_usd"]))
            assert card.locator('[data-step-field="input_tokens"]').get_attribute(
                "data-value"
            ) == str(step["input_tokens"])
        outputs = {s["id"]: s["output"] for s in run["steps"]}
        assert outputs["research"].startswith("[gpt-4o] Facts about tidal power")
        assert outputs["write"].startswith("[claude-3-5-haiku-latest] Write from")

        # Usage & cost shows the same total as the API.
        page.goto(f"{base}/usage")
        total = page.get_by_test_id("total-cost")
        assert usage["total"]["cost_usd"] > 0
        assert Decimal(total.get_attribute("data-value")) == Decimal(
            str(usage["total"]["cost_usd"])
        )
        assert total.inner_text().startswith("$")
        assert page.get_by_test_id("cost-chart").locator("svg rect").count() >= 1
        shot(page, "usage")
        page.goto(f"{base}/runs")
        shot(page, "runs")
        page.goto(f"{base}/audit")
        assert f"openai-{tag}" in page.get_by_test_id("audit-table").inner_text()
        shot(page, "audit")
    except BaseException:
        shot(page, "failure")  # what the browser showed when the test failed
        (SCREENSHOTS / "failure.html").write_text(page.content())
        raise
    finally:
        fake_llm.configure(valid_keys=[], latency_seconds=0.0)
        context.close()

    # Nothing came from anywhere but ownkey itself: no CDN, no font service.
    assert recorder.urls and all(url.startswith(base) for url in recorder.urls), {
        url for url in recorder.urls if not url.startswith(base)
    }
    assert any(url.endswith("/static/app.css") for url in recorder.urls)
    # The secrets reached no page and no API answer the browser received.
    assert len(recorder.bodies) > 10
    for secret in secrets.values():
        assert not [b for b in recorder.bodies if secret in b]

    # A viewer: no controls that change keys, and the API refuses the change.
    viewer = make_user(stack, "viewer")
    context = browser.new_context()
    page = context.new_page()
    try:
        sign_in(page, base, viewer)
        page.goto(f"{base}/settings/keys")
        assert page.get_by_test_id("key-row").count() >= 2
        assert page.get_by_test_id("key-delete").count() == 0
        assert page.get_by_test_id("key-test").count() == 0
        assert page.get_by_test_id("add-key-form").count() == 0
        shot(page, "keys-viewer")
        key_id = page.locator('[data-testid="key-row"]').first.get_attribute("data-key-id")
        csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
        refused = page.request.delete(
            f"{base}/api/v1/keys/{key_id}", headers={"X-CSRF-Token": csrf}
        )
        assert refused.status == 403
    finally:
        context.close()
    with stack.client() as api:
        assert api.get(f"/keys/{key_id}").status_code == 200  # nothing was deleted
