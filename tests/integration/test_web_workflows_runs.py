"""The workflows and runs pages against the real API process and a real worker: the
YAML editor and its inline errors, the step graph, starting a run from a form, the run
page's numbers against the API's, cancelling, roles, CSRF, and (in chromium) the run
page updating itself while the run goes on."""

from __future__ import annotations

import html
import re
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.web.render import usd
from tests.processes import FakeLLM, Stack
from tests.web_session import csrf_token, make_user, sign_in

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)

SVG = "{http://www.w3.org/2000/svg}"
FINAL = ("succeeded", "failed", "cancelled")


def _agent(stack: Stack, fake_llm: FakeLLM) -> str:
    """A new agent on fake-llm, with a price for its model so costs are not zero."""
    tag = uuid.uuid4().hex[:8]
    model = f"web-{tag}"
    with stack.client() as api:
        api.put(
            f"/prices/openai/{model}",
            json={
                "input_per_mtok": "1.50",
                "output_per_mtok": "6.00",
                "cached_input_per_mtok": "0.5",
            },
        ).raise_for_status()
        key = api.post(
            "/keys",
            json={
                "provider": "openai",
                "name": f"web-{tag}",
                "api_key": "sk-web-test-0000",
                "base_url": f"{fake_llm.url}/v1",
            },
        )
        key.raise_for_status()
        agent = {"name": f"writer-{tag}", "key_id": key.json()["id"], "model": model}
        api.post("/agents", json=agent).raise_for_status()
    return agent["name"]


def _member(stack: Stack, role: str = "member") -> httpx.Client:
    return sign_in(stack, make_user(stack, role))


def _form_token(client: httpx.Client, page: str, action: str) -> str:
    """The CSRF token in the form on `page` that posts to `action`, as a browser sends it."""
    html_text = client.get(page).text
    match = re.search(
        rf'<form method="post" action="{re.escape(action)}"[^>]*>\s*'
        r'<input type="hidden" name="csrf_token" value="([^"]*)">',
        html_text,
    )
    assert match and match.group(1), f"no CSRF token in the form posting to {action}"
    return match.group(1)


def _create(client: httpx.Client, definition: str) -> str:
    """Save a workflow through the form; returns its id."""
    token = _form_token(client, "/workflows/new", "/workflows/new")
    saved = client.post("/workflows/new", data={"definition": definition, "csrf_token": token})
    assert saved.status_code == 303, saved.text[:2000]
    match = re.fullmatch(r"/workflows/([0-9a-f]+)\?saved=1", saved.headers["location"])
    assert match, saved.headers["location"]
    return match.group(1)


def _start(client: httpx.Client, workflow_id: str, **fields: str) -> httpx.Response:
    action = f"/workflows/{workflow_id}/runs"
    token = _form_token(client, f"/workflows/{workflow_id}", action)
    return client.post(action, data={"csrf_token": token, **fields})


def _cancel(client: httpx.Client, run_id: str, token: str | None = None) -> httpx.Response:
    action = f"/runs/{run_id}/cancel"
    return client.post(
        action, data={"csrf_token": token or _form_token(client, f"/runs/{run_id}", action)}
    )


def _run_id(started: httpx.Response) -> str:
    assert started.status_code == 303, started.text[:2000]
    match = re.fullmatch(r"/runs/([0-9a-f]+)", started.headers["location"])
    assert match, started.headers["location"]
    return match.group(1)


def _wait(api: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = api.get(f"/runs/{run_id}").json()
        if run["status"] in FINAL and run["finished_at"]:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish: {run}")


def _graph(page: str) -> ET.Element:
    match = re.search(r"<svg\b.*?</svg>", page, re.S)
    assert match, "no step graph on the page"
    return ET.fromstring(match.group(0))


def _textarea(page: str, name: str) -> str:
    match = re.search(rf'<textarea[^>]*name="{name}"[^>]*>\n(.*?)</textarea>', page, re.S)
    assert match, f"no textarea {name}"
    return html.unescape(match.group(1))


def _step_card(page: str, step_id: str) -> str:
    match = re.search(
        rf'<section class="card step"[^>]*data-step="{step_id}".*?</section>', page, re.S
    )
    assert match, f"no card for step {step_id}"
    return match.group(0)


def _field(fragment: str, attr: str, name: str) -> tuple[str, str]:
    """(data-value, shown text) of the element with `attr`="name" in an HTML fragment."""
    match = re.search(rf'{attr}="{name}" data-value="([^"]*)">([^<]*)<', fragment)
    assert match, f"no {attr}={name}"
    return match.group(1), html.unescape(match.group(2))


def _number(value: str) -> float | None:
    return float(value) if value else None


TWO_STEPS = """\
name: {name}
description: made by the web tests
steps:
  - id: outline
    agent: {agent}
    prompt: |
      Outline {{{{ input.topic }}}} in a {{{{ input.tone }}}} tone.
  - id: write
    agent: {agent}
    depends_on: [outline]
    prompt: "Expand: {{{{ steps.outline.output }}}} ({{{{ input.extra }}}})"
"""


def test_a_yaml_workflow_saved_through_the_form_is_listed_and_drawn(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    agent = _agent(stack, fake_llm)
    client = _member(stack)
    name = f"diamond-{uuid.uuid4().hex[:6]}"
    editor = client.get("/workflows/new")
    assert editor.status_code == 200 and 'data-testid="yaml-editor"' in editor.text
    definition = f"""\
name: {name}
steps:
  - id: fetch
    agent: {agent}
    prompt: Fetch {{{{ input.url }}}}
  - id: summarize
    agent: {agent}
    depends_on: [fetch]
    prompt: "Summarize {{{{ steps.fetch.output }}}}"
  - id: critique
    agent: {agent}
    depends_on: [fetch]
    prompt: "Critique {{{{ steps.fetch.output }}}}"
  - id: report
    agent: {agent}
    depends_on: [summarize, critique, fetch]
    prompt: "Report {{{{ steps.summarize.output }}}} {{{{ steps.critique.output }}}}"
"""
    workflow_id = _create(client, definition)

    page = client.get(f"/workflows/{workflow_id}?saved=1")
    assert page.status_code == 200 and "Saved as version 1" in page.text
    svg = _graph(page.text)
    assert svg.get("data-testid") == "workflow-graph"
    nodes = {g.get("data-step"): g for g in svg.iter(f"{SVG}g") if "node" in g.get("class", "")}
    assert sorted(nodes) == ["critique", "fetch", "report", "summarize"]
    labels = {"".join(t.itertext()) for g in nodes.values() for t in g.iter(f"{SVG}text")}
    assert {"fetch", "summarize", agent} <= labels
    edges = {
        (p.get("data-from"), p.get("data-to"))
        for p in svg.iter(f"{SVG}path")
        if p.get("class") == "edge"
    }
    assert edges == {
        ("fetch", "summarize"),
        ("fetch", "critique"),
        ("summarize", "report"),
        ("critique", "report"),
        ("fetch", "report"),
    }
    # Layers by longest path: fetch, then summarize and critique together, then report.
    x = {step: float(g.find(f"{SVG}rect").get("x")) for step, g in nodes.items()}
    assert x["fetch"] < x["summarize"] == x["critique"] < x["report"]
    # The editor shows the stored definition, which saves back unchanged.
    with stack.client() as api:
        stored = api.get(f"/workflows/{workflow_id}").json()
    assert stored["name"] == name and [s["id"] for s in stored["steps"]] == list(
        ["fetch", "summarize", "critique", "report"]
    )
    assert stored["steps"][3]["depends_on"] == ["summarize", "critique", "fetch"]
    # The run form asks for the one input the prompts use.
    assert re.findall(r'name="(input\.[^"]+)"', page.text) == ["input.url"]

    listing = client.get("/workflows").text
    row = re.search(rf'<tr data-workflow="{name}">.*?</tr>', listing, re.S)
    assert row and "v1" in row.group(0) and f'href="/workflows/{workflow_id}#run"' in row.group(0)
    assert re.search(r'<td class="num">4</td>', row.group(0))

    # Editing stores version 2; an invalid edit is refused, keeps its text, stores nothing.
    edit_token = _form_token(client, f"/workflows/{workflow_id}", f"/workflows/{workflow_id}")
    resaved = client.post(
        f"/workflows/{workflow_id}",
        data={"definition": _textarea(page.text, "definition"), "csrf_token": edit_token},
    )
    assert resaved.status_code == 303
    broken = definition.replace("depends_on: [fetch]", "depends_on: [nowhere]", 1)
    refused = client.post(
        f"/workflows/{workflow_id}", data={"definition": broken, "csrf_token": edit_token}
    )
    assert refused.status_code == 422
    assert (
        "step &#39;summarize&#39;, depends_on: there is no step &#39;nowhere&#39;" in refused.text
    )
    assert _textarea(refused.text, "definition") == broken
    with stack.client() as api:
        after = api.get(f"/workflows/{workflow_id}").json()
    assert after["version"] == 2 and after["steps"] == stored["steps"]


def test_an_unknown_agent_is_named_next_to_the_editor_and_nothing_is_stored(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    agent = _agent(stack, fake_llm)
    client = _member(stack)
    name = f"broken-{uuid.uuid4().hex[:6]}"
    definition = f"""\
name: {name}
steps:
  - id: fetch
    agent: {agent}
    prompt: Fetch it
  - id: summarize
    agent: nope-{name}
    depends_on: [fetch]
    prompt: Summarize {{{{ steps.fetch.output }}}}
"""
    token = _form_token(client, "/workflows/new", "/workflows/new")
    response = client.post("/workflows/new", data={"definition": definition, "csrf_token": token})
    assert response.status_code == 422
    page = response.text
    errors = re.search(
        r'<ul class="error errors" id="e-definition" role="alert"'
        r' data-testid="workflow-errors">(.*?)</ul>',
        page,
        re.S,
    )
    assert errors, page
    lines = [html.unescape(li).strip() for li in re.findall(r"<li>(.*?)</li>", errors.group(1))]
    assert lines == [f"step 'summarize', agent: unknown agent 'nope-{name}'"]
    # Right under the editor, which points at it and keeps the text as sent.
    editor_at = page.index('data-testid="yaml-editor"')
    assert editor_at < errors.start() < editor_at + len(definition) + 600
    assert 'aria-invalid="true" aria-describedby="e-definition"' in page
    assert _textarea(page, "definition") == definition
    with stack.client() as api:
        assert api.get(f"/workflows/{name}").status_code == 404
    assert name not in client.get("/workflows").text

    # YAML that does not parse says where.
    unparsable = client.post(
        "/workflows/new", data={"definition": "name: [oops\n", "csrf_token": token}
    )
    assert unparsable.status_code == 422 and "invalid YAML at line" in unparsable.text


def test_a_run_started_from_the_form_finishes_and_its_page_matches_the_api(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    agent = _agent(stack, fake_llm)
    client = _member(stack)
    name = f"essay-{uuid.uuid4().hex[:6]}"
    workflow_id = _create(client, TWO_STEPS.format(name=name, agent=agent))
    page = client.get(f"/workflows/{workflow_id}").text
    assert 'data-testid="start-run-form"' in page
    assert re.findall(r'name="(input\.[^"]+)"', page) == [
        "input.topic",
        "input.tone",
        "input.extra",
    ]

    started = _start(
        client,
        workflow_id,
        **{"input.topic": "tides", "input.tone": "dry", "input_json": '{"extra": "short", "n": 3}'},
    )
    run_id = _run_id(started)
    with stack.client() as api:
        run = _wait(api, run_id)
    assert run["status"] == "succeeded", run
    assert run["input"] == {"topic": "tides", "tone": "dry", "extra": "short", "n": 3}
    assert run["cost_usd"] > 0

    response = client.get(f"/runs/{run_id}")
    assert response.status_code == 200
    page = response.text
    assert re.search(
        r'data-testid="run-status"[^>]*><span class="badge succeeded" data-status="succeeded">',
        page,
    )
    assert 'data-live="no"' in page and 'data-testid="cancel-run"' not in page
    assert f'{name}</a> <span class="muted">v1</span>' in page
    assert 'data-testid="run-totals"' in page
    for field in ("input_tokens", "output_tokens", "cached_tokens"):
        value, shown = _field(page, "data-run-field", field)
        assert int(value) == run[field] and shown == f"{run[field]:,}"
    value, shown = _field(page, "data-run-field", "cost_usd")
    assert float(value) == run["cost_usd"] and shown == usd(run["cost_usd"])

    assert [s["id"] for s in run["steps"]] == ["outline", "write"]
    for step in run["steps"]:
        card = _step_card(page, step["id"])
        assert f'data-status="{step["status"]}"' in card
        assert agent in card and step["model"] in card and step["provider"] in card
        output = re.search(
            r'<pre class="output" data-step-field="output"\s*>(.*?)</pre>', card, re.S
        )
        assert output and html.unescape(output.group(1)) == step["output"]
        for field in ("input_tokens", "output_tokens", "cached_tokens", "latency_ms", "attempts"):
            value, _shown = _field(card, "data-step-field", field)
            assert _number(value) == step[field], (step["id"], field)
        value, shown = _field(card, "data-step-field", "cost_usd")
        assert float(value) == step["cost_usd"] and shown == usd(step["cost_usd"])
    write = next(s for s in run["steps"] if s["id"] == "write")
    assert write["output"].startswith(f"[{write['model']}] Expand: [")
    assert write["output"].endswith("(short)")

    # The runs list shows it under its workflow, and not under another status.
    listed = client.get("/runs", params={"workflow": name}).text
    row = re.search(rf'<tr data-run="{run_id}">.*?</tr>', listed, re.S)
    assert (
        row and 'data-status="succeeded"' in row.group(0) and usd(run["cost_usd"]) in row.group(0)
    )
    assert f'data-run="{run_id}"' not in client.get("/runs", params={"status": "failed"}).text


def test_bad_run_input_is_shown_next_to_its_field_and_starts_nothing(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    agent = _agent(stack, fake_llm)
    client = _member(stack)
    name = f"inputs-{uuid.uuid4().hex[:6]}"
    workflow_id = _create(client, TWO_STEPS.format(name=name, agent=agent))

    bad_json = _start(client, workflow_id, **{"input.topic": "tides", "input_json": '{"extra": '})
    assert bad_json.status_code == 422
    error = re.search(
        r'<span class="error" id="e-input_json" role="alert">(.*?)</span>', bad_json.text
    )
    assert error and "not valid JSON at line 1" in error.group(1)
    assert _textarea(bad_json.text, "input_json") == '{"extra": '
    assert 'name="input.topic" type="text" value="tides"' in bad_json.text  # kept

    missing = _start(client, workflow_id, **{"input.topic": "tides", "input_json": "[1]"})
    assert missing.status_code == 422 and "must be a JSON object" in missing.text

    unfilled = _start(client, workflow_id, **{"input.topic": "tides", "input_json": '{"extra": 1}'})
    assert unfilled.status_code == 422
    assert re.search(r'id="e-input\.tone" role="alert">the prompts use input\.tone', unfilled.text)
    assert 'id="e-input.topic"' not in unfilled.text

    with stack.client() as api:
        assert api.get("/runs", params={"workflow": name}).json()["count"] == 0


def test_the_runs_list_pages_and_filters(stack: Stack, fake_llm: FakeLLM) -> None:
    agent = _agent(stack, fake_llm)
    client = _member(stack)
    name = f"many-{uuid.uuid4().hex[:6]}"
    _create(client, f"name: {name}\nsteps:\n  - {{id: one, agent: {agent}, prompt: hi}}\n")
    with stack.client() as api:
        ids = [api.post("/runs", json={"workflow": name}).json()["id"] for _ in range(27)]
    first = client.get("/runs", params={"workflow": name}).text
    second = client.get("/runs", params={"workflow": name, "page": 2}).text
    on_first = re.findall(r'<tr data-run="([0-9a-f]+)">', first)
    on_second = re.findall(r'<tr data-run="([0-9a-f]+)">', second)
    assert len(on_first) == 25 and len(on_second) == 2
    assert sorted(on_first + on_second) == sorted(ids)
    assert "Runs 1–25 of 27" in first and "Runs 26–27 of 27" in second
    assert f'href="?workflow={name}&amp;page=2" rel="next"' in first
    assert f'href="?workflow={name}&amp;page=1" rel="prev"' in second
    assert f'<option value="{name}" selected>' in first
    assert client.get("/runs/no-such-run").status_code == 404
    assert client.get("/workflows/no-such-workflow").status_code == 404
    unknown = client.get("/runs", params={"status": "exploded"})
    assert unknown.status_code == 200 and "There is no status" in unknown.text


@pytest.fixture
def slow_llm(fake_llm: FakeLLM) -> Iterator[FakeLLM]:
    fake_llm.configure(latency_seconds=2.0)
    yield fake_llm
    fake_llm.configure(latency_seconds=0.0)


def test_a_viewer_sees_no_cancel_button_or_run_form_and_cannot_post(
    stack: Stack, slow_llm: FakeLLM
) -> None:
    agent = _agent(stack, slow_llm)
    member = _member(stack)
    viewer = _member(stack, "viewer")
    viewer_token = csrf_token(viewer)
    name = f"watched-{uuid.uuid4().hex[:6]}"
    workflow_id = _create(member, TWO_STEPS.format(name=name, agent=agent))
    run_id = _run_id(
        _start(
            member,
            workflow_id,
            **{"input.topic": "a", "input.tone": "b", "input.extra": "c"},
        )
    )

    assert 'data-testid="cancel-run"' in member.get(f"/runs/{run_id}").text
    seen = viewer.get(f"/runs/{run_id}")
    assert seen.status_code == 200 and 'data-testid="run-status"' in seen.text
    assert 'data-testid="cancel-run"' not in seen.text and 'data-live="yes"' in seen.text
    workflow_page = viewer.get(f"/workflows/{workflow_id}").text
    assert 'data-testid="start-run-form"' not in workflow_page
    assert (
        'data-testid="yaml-editor"' not in workflow_page and "workflow-definition" in workflow_page
    )

    refused = [
        viewer.post(f"/runs/{run_id}/cancel", data={"csrf_token": viewer_token}),
        viewer.post(
            f"/workflows/{workflow_id}/runs",
            data={
                "csrf_token": viewer_token,
                "input.topic": "x",
                "input.tone": "y",
                "input.extra": "z",
            },
        ),
        viewer.post("/workflows/new", data={"csrf_token": viewer_token, "definition": "name: x"}),
        viewer.get("/workflows/new"),
    ]
    assert [r.status_code for r in refused] == [403] * 4
    assert "needs the member role" in refused[0].text
    with stack.client() as api:
        assert api.get(f"/runs/{run_id}").json()["status"] in ("queued", "running")
        assert api.get("/runs", params={"workflow": name}).json()["count"] == 1
        _wait(api, run_id)


def test_cancelling_a_slow_run_shows_it_cancelled(stack: Stack, slow_llm: FakeLLM) -> None:
    agent = _agent(stack, slow_llm)
    client = _member(stack)
    name = f"slow-{uuid.uuid4().hex[:6]}"
    workflow_id = _create(client, TWO_STEPS.format(name=name, agent=agent))
    run_id = _run_id(
        _start(
            client,
            workflow_id,
            **{"input.topic": "a", "input.tone": "b", "input.extra": "c"},
        )
    )
    live = client.get(f"/runs/{run_id}").text
    assert 'data-live="yes"' in live and 'data-testid="cancel-run"' in live

    cancelled = _cancel(client, run_id)
    assert cancelled.status_code == 303 and cancelled.headers["location"] == f"/runs/{run_id}"
    with stack.client() as api:
        run = _wait(api, run_id)
    assert run["status"] == "cancelled"
    assert [s["status"] for s in run["steps"]][1] == "skipped"
    assert len(slow_llm.calls()) <= 1  # the second step never called the model

    page = client.get(f"/runs/{run_id}").text
    assert re.search(r'data-testid="run-status"[^>]*><span class="badge cancelled"', page)
    assert 'data-testid="cancel-run"' not in page and 'data-live="no"' in page
    assert 'data-status="skipped"' in _step_card(page, "write")
    assert "cancelled by request" in page

    again = _cancel(client, run_id, csrf_token(client))  # from a page loaded before
    assert again.status_code == 409
    message = re.search(r'data-testid="run-message">(.*?)</div>', again.text)
    assert message and "already ended (cancelled)" in message.group(1)


def test_a_form_post_without_the_csrf_token_is_refused_and_changes_nothing(
    stack: Stack, slow_llm: FakeLLM
) -> None:
    agent = _agent(stack, slow_llm)
    client = _member(stack)
    name = f"guarded-{uuid.uuid4().hex[:6]}"
    workflow_id = _create(client, TWO_STEPS.format(name=name, agent=agent))
    other = f"forged-{uuid.uuid4().hex[:6]}"
    inputs = {"input.topic": "a", "input.tone": "b", "input.extra": "c"}
    attempts = [
        client.post(
            "/workflows/new", data={"definition": TWO_STEPS.format(name=other, agent=agent)}
        ),
        client.post(
            f"/workflows/{workflow_id}",
            data={"definition": TWO_STEPS.format(name=other, agent=agent), "csrf_token": "forged"},
        ),
        client.post(f"/workflows/{workflow_id}/runs", data=inputs),
    ]
    assert [a.status_code for a in attempts] == [403] * 3
    assert all("CSRF check" in a.text for a in attempts)
    with stack.client() as api:
        assert api.get(f"/workflows/{other}").status_code == 404
        assert api.get(f"/workflows/{workflow_id}").json()["version"] == 1
        assert api.get("/runs", params={"workflow": name}).json()["count"] == 0
        run_id = api.post(
            "/runs", json={"workflow": name, "input": {"topic": "a", "tone": "b", "extra": "c"}}
        ).json()["id"]
    assert client.post(f"/runs/{run_id}/cancel").status_code == 403
    with stack.client() as api:
        assert _wait(api, run_id)["status"] == "succeeded"  # not cancelled


# --- in a browser ----------------------------------------------------------------------


def _page_for(browser: Any, stack: Stack, client: httpx.Client) -> Any:
    context = browser.new_context()
    context.add_cookies(
        [
            {
                "name": "ownkey_session",
                "value": client.cookies["ownkey_session"],
                "url": stack.api_url,
            }
        ]
    )
    return context.new_page()


def test_the_run_page_updates_itself_until_the_run_ends(
    stack: Stack, fake_llm: FakeLLM, browser: Any
) -> None:
    fake_llm.configure(latency_seconds=1.5)
    try:
        agent = _agent(stack, fake_llm)
        client = _member(stack)
        name = f"live-{uuid.uuid4().hex[:6]}"
        workflow_id = _create(client, TWO_STEPS.format(name=name, agent=agent))
        run_id = _run_id(
            _start(
                client,
                workflow_id,
                **{"input.topic": "a", "input.tone": "b", "input.extra": "c"},
            )
        )
        page = _page_for(browser, stack, client)
        page.goto(f"{stack.api_url}/runs/{run_id}")
        assert page.locator('[data-testid="run-status"] .badge').get_attribute("data-status") in (
            "queued",
            "running",
        )
        assert page.locator('[data-testid="cancel-run"]').is_visible()
        page.evaluate("window.notReloaded = true")
        page.wait_for_selector(
            '[data-testid="run-status"] .badge[data-status="succeeded"]', timeout=30_000
        )
        page.wait_for_function(
            "document.getElementById('run').dataset.live === 'no'", timeout=10_000
        )
        assert page.evaluate("window.notReloaded") is True
        with stack.client() as api:
            run = api.get(f"/runs/{run_id}").json()
        for step in run["steps"]:
            card = page.locator(f'section.step[data-step="{step["id"]}"]')
            assert card.locator('[data-step-field="output"]').inner_text() == step["output"]
            assert card.locator('[data-step-field="cost_usd"]').inner_text() == usd(
                step["cost_usd"]
            )
            assert card.locator(".badge").first.get_attribute("data-status") == "succeeded"
            node = page.locator(f'.graph g.node[data-step="{step["id"]}"]')
            assert node.get_attribute("class") == "node succeeded"
        totals = page.locator('[data-testid="run-totals"]')
        assert totals.locator('[data-run-field="cost_usd"]').inner_text() == usd(run["cost_usd"])
        assert (
            totals.locator('[data-run-field="output_tokens"]').inner_text()
            == f"{run['output_tokens']:,}"
        )
        assert totals.locator('[data-run-field="duration"]').inner_text() != "—"
        assert page.locator('[data-testid="cancel-run"]').count() == 0
    finally:
        fake_llm.configure(latency_seconds=0.0)


def test_tab_in_the_yaml_editor_indents_and_esc_tab_leaves_it(stack: Stack, browser: Any) -> None:
    client = _member(stack)
    page = _page_for(browser, stack, client)
    page.goto(f"{stack.api_url}/workflows/new")
    editor = page.locator('[data-testid="yaml-editor"]')
    editor.fill("steps:\n- id: a")
    editor.focus()
    page.keyboard.press("Control+End")
    page.keyboard.press("Home")
    page.keyboard.press("Tab")
    assert editor.input_value() == "steps:\n  - id: a"
    assert page.evaluate("document.activeElement.id") == "f-definition"
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") != "f-definition"
    assert editor.input_value() == "steps:\n  - id: a"
