"""The batches pages against the real API process and a real worker: the cost estimate
shown before anything is stored, the confirmation that stores and starts the batch,
bad rows listed by line, the batch page's numbers against the API's, retry and cancel
from the page, roles, and (in chromium) a file uploaded through the form and a batch
page that follows the batch to the end without a reload."""

from __future__ import annotations

import base64
import html
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.web.render import usd
from tests.processes import FakeLLM, Stack
from tests.web_session import csrf_token, make_user, sign_in

pytestmark = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)

FINAL = ("succeeded", "finished", "cancelled")
NO_FILE = {"file": ("", b"", "application/octet-stream")}  # an empty file input, as sent


def _workflow(stack: Stack, fake_llm: FakeLLM) -> str:
    """A priced agent on fake-llm and a two-step workflow reading `input.text`."""
    tag = uuid.uuid4().hex[:8]
    model = f"web-batch-{tag}"
    with stack.client() as api:
        prices = {"input_per_mtok": "1.50", "output_per_mtok": "6.00"}
        api.put(f"/prices/openai/{model}", json=prices).raise_for_status()
        key = api.post(
            "/keys",
            json={
                "provider": "openai",
                "name": f"web-batch-{tag}",
                "api_key": "sk-web-batch-0000",
                "base_url": f"{fake_llm.url}/v1",
            },
        )
        key.raise_for_status()
        agent = {"name": f"batcher-{tag}", "key_id": key.json()["id"], "model": model}
        api.post("/agents", json=agent).raise_for_status()
        spec = {
            "name": f"web-batch-{tag}",
            "steps": [
                {"id": "summary", "agent": agent["name"], "prompt": "Summarize: {{ input.text }}"},
                {
                    "id": "tag",
                    "agent": agent["name"],
                    "prompt": "Tag: {{ steps.summary.output }}",
                    "depends_on": ["summary"],
                },
            ],
        }
        api.post("/workflows", json=spec).raise_for_status()
    return str(spec["name"])


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


def _estimate(
    client: httpx.Client, workflow: str, *, upload: tuple[str, bytes] | None = None, **fields: str
) -> httpx.Response:
    """Post the new-batch form as a browser does (multipart, the file input included)."""
    token = _form_token(client, "/batches/new", "/batches/new")
    files = {"file": (upload[0], upload[1], "application/octet-stream")} if upload else NO_FILE
    return client.post(
        "/batches/new", data={"csrf_token": token, "workflow": workflow, **fields}, files=files
    )


def _hidden_fields(page: str, action: str) -> dict[str, str]:
    """The fields of the form on `page` that posts to `action`, as it would send them."""
    form = re.search(rf'<form method="post" action="{re.escape(action)}".*?</form>', page, re.S)
    assert form, f"no form posting to {action}"
    found = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(0))
    return {name: html.unescape(value) for name, value in found}


def _confirm(client: httpx.Client, estimate_page: str) -> httpx.Response:
    """Press "Confirm and start": post the confirmation form's hidden fields."""
    return client.post("/batches/confirm", data=_hidden_fields(estimate_page, "/batches/confirm"))


def _batch_id(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text[:3000]
    match = re.fullmatch(r"/batches/([0-9a-f]+)(\?skipped=\d+)?", response.headers["location"])
    assert match, response.headers["location"]
    return match.group(1)


def _count(stack: Stack) -> int:
    with stack.client() as api:
        return int(api.get("/batches").json()["count"])


def _wait(stack: Stack, batch_id: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    batch: dict[str, Any] = {}
    with stack.client() as api:
        while time.monotonic() < deadline:
            batch = api.get(f"/batches/{batch_id}").json()
            in_flight = batch["progress"]["queued"] + batch["progress"]["running"]
            if batch["status"] in FINAL and in_flight == 0:
                return batch
            time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} did not finish: {batch}")


def _export(stack: Stack, batch_id: str) -> dict[int, dict[str, Any]]:
    with stack.client() as api:
        lines = api.get(f"/batches/{batch_id}/export").text.splitlines()
    return {row["line"]: row for row in map(json.loads, lines)}


def _field(page: str, name: str) -> tuple[str, str]:
    """(data-value, shown text) of the batch page's `data-batch-field` = name."""
    match = re.search(rf'data-batch-field="{name}" data-value="([^"]*)">([^<]*)<', page)
    assert match, f"no data-batch-field={name}"
    return match.group(1), html.unescape(match.group(2))


def _error(page: str, field: str) -> str:
    match = re.search(
        rf'<span class="error" id="e-{re.escape(field)}" role="alert">(.*?)</span>', page
    )
    assert match, f"no error next to {field}"
    return html.unescape(match.group(1))


def _bad_rows(page: str) -> list[str]:
    block = re.search(r'data-testid="bad-rows">(.*?)</div>', page, re.S)
    assert block, "no bad rows listed"
    return [html.unescape(li) for li in re.findall(r"<li>(.*?)</li>", block.group(1))]


JSONL = "\n".join(json.dumps({"text": f"item {i}", "n": i}) for i in range(1, 4)) + "\n"


def test_the_estimate_comes_first_and_only_confirming_stores_and_starts_the_batch(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    workflow = _workflow(stack, fake_llm)
    client = _member(stack)
    form = client.get("/batches/new")
    assert form.status_code == 200 and f">{workflow}</option>" in form.text
    assert 'name="file" type="file"' in form.text and 'for="f-file"' in form.text
    before = _count(stack)

    shown = _estimate(client, workflow, upload=("reviews.jsonl", JSONL.encode()), max_in_flight="2")
    assert shown.status_code == 200, shown.text[:3000]
    with stack.client() as api:
        expected = api.post(
            "/batches/estimate",
            data={"workflow": workflow},
            files={"file": ("reviews.jsonl", JSONL.encode())},
        ).json()
    assert expected["items"] == 3 and expected["basis"] == "prompt_length"
    page = shown.text
    assert re.search(r'data-testid="estimate-items">3</span> items', page)
    low, high = usd(expected["low_usd"]), usd(expected["high_usd"])
    assert f'data-testid="estimate-range">{low} – {high}</strong>' in page
    basis = re.search(r'data-testid="estimate-basis">(.*?)</p>', page, re.S)
    assert basis and html.unescape(basis.group(1)) == expected["basis_detail"] + "."
    assert "prompt length" in page and 'data-testid="confirm-batch"' in page
    assert "skipped-rows" not in page
    assert _count(stack) == before  # nothing stored by the estimate

    # The confirmation carries the same bytes, the options and the CSRF token.
    hidden = _hidden_fields(page, "/batches/confirm")
    assert hidden["csrf_token"] == _form_token(client, "/batches/new", "/batches/new")
    assert (hidden["workflow"], hidden["format"]) == (workflow, "jsonl")
    assert (hidden["max_in_flight"], hidden["skip_invalid"]) == ("2", "false")
    assert base64.b64decode(hidden["dataset_b64"]) == JSONL.encode()
    batch_id = _batch_id(_confirm(client, page))
    assert _count(stack) == before + 1
    batch = _wait(stack, batch_id)
    assert batch["status"] == "succeeded" and batch["total"] == 3
    assert batch["name"] == "reviews.jsonl" and batch["max_in_flight"] == 2
    rows = _export(stack, batch_id)
    assert {line: row["input"] for line, row in rows.items()} == {
        i: {"text": f"item {i}", "n": i} for i in range(1, 4)
    }

    # The batch page shows what the API says.
    response = client.get(f"/batches/{batch_id}")
    assert response.status_code == 200
    page = response.text
    assert re.search(
        r'data-testid="batch-status"[^>]*><span class="badge succeeded" data-status="succeeded">',
        page,
    )
    assert 'data-live="no"' in page and "cancel-batch" not in page
    for name in ("succeeded", "failed", "waiting", "running"):
        value, text = _field(page, name)
        assert int(value) == batch["progress"][name] and text == str(batch["progress"][name])
    for name in ("done", "input_tokens", "output_tokens"):
        value, text = _field(page, name)
        assert int(value) == batch[name] and text == f"{batch[name]:,}"
    value, text = _field(page, "cost_usd")
    assert batch["cost_usd"] > 0 and float(value) == batch["cost_usd"]
    assert text == usd(batch["cost_usd"])
    for line, row in rows.items():
        item = re.search(rf'<tr data-line="{line}">.*?</tr>', page, re.S)
        assert item and f'href="/runs/{row["run_id"]}"' in item.group(0)
        assert 'data-status="succeeded"' in item.group(0)
    # The export links work with the session cookie.
    for fmt, media in (("jsonl", "application/x-ndjson"), ("csv", "text/csv")):
        link = f"/api/v1/batches/{batch_id}/export?format={fmt}"
        assert f'href="{link}"' in page
        exported = client.get(link)
        assert exported.status_code == 200 and exported.headers["content-type"].startswith(media)
    listed = client.get("/batches").text
    row_html = re.search(rf'<tr data-batch="{batch_id}">.*?</tr>', listed, re.S)
    assert row_html and "reviews.jsonl" in row_html.group(0)
    assert 'data-col="succeeded">3<' in row_html.group(0)
    assert usd(batch["cost_usd"]) in row_html.group(0)
    assert 'href="/batches" aria-current="page">Batches</a>' in listed


def test_bad_rows_are_listed_by_line_and_block_confirming_unless_skipped(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    workflow = _workflow(stack, fake_llm)
    client = _member(stack)
    before = _count(stack)
    pasted = '{"text": "fine"}\n{"text": \n{"other": 1}\n["a list"]\n{"text": "also fine"}\n'

    refused = _estimate(client, workflow, dataset=pasted)
    assert refused.status_code == 422
    page = refused.text
    assert _bad_rows(page) == [
        "line 2: not valid JSON (Expecting value)",
        "line 3: missing input field 'text', which the workflow's prompts use",
        "line 4: a row must be a JSON object, not a list",
    ]
    assert "3 of 5 rows cannot run" in _error(page, "skip_invalid")
    assert "tick “Skip invalid rows”" in _error(page, "skip_invalid")
    assert 'data-testid="confirm-batch"' not in page and 'data-testid="estimate"' not in page
    # The pasted text is kept, so ticking the box is enough.
    kept = re.search(r'<textarea id="f-dataset"[^>]*>\n(.*?)</textarea>', page, re.S)
    assert kept and html.unescape(kept.group(1)) == pasted
    # A browser holding the old page cannot confirm past the check either.
    forged = client.post(
        "/batches/confirm",
        data={
            "csrf_token": csrf_token(client),
            "workflow": workflow,
            "dataset_b64": base64.b64encode(pasted.encode()).decode(),
            "format": "jsonl",
        },
    )
    assert forged.status_code == 422 and "line 2: not valid JSON" in forged.text
    assert _count(stack) == before

    skipping = _estimate(client, workflow, dataset=pasted, skip_invalid="true")
    assert skipping.status_code == 200, skipping.text[:3000]
    assert re.search(r'data-testid="estimate-items">2</span> items', skipping.text)
    skipped = re.findall(r'<li data-line="(\d+)">', skipping.text)
    assert skipped == ["2", "3", "4"] and "3 rows will be skipped" in skipping.text
    assert _count(stack) == before

    confirmed = _confirm(client, skipping.text)
    assert confirmed.headers["location"].endswith("?skipped=3")
    batch_id = _batch_id(confirmed)
    assert "3 invalid rows skipped" in client.get(confirmed.headers["location"]).text
    assert _wait(stack, batch_id)["total"] == 2
    assert sorted(_export(stack, batch_id)) == [1, 5]  # lines as in the dataset

    # An uploaded file with bad rows is carried to the next post: the file input
    # cannot be filled in again, yet ticking the box is enough there too.
    csv_data = b"text,extra\none,x\ntwo\nthree,z\n"
    upload = _estimate(client, workflow, upload=("rows.csv", csv_data))
    assert upload.status_code == 422
    assert _bad_rows(upload.text) == ["line 3: 1 values, but the header names 2 columns"]
    carried = _hidden_fields(upload.text, "/batches/new")
    assert carried["filename"] == "rows.csv" and "Using <strong>rows.csv</strong>" in upload.text
    again = client.post(
        "/batches/new",
        data={**carried, "workflow": workflow, "skip_invalid": "true"},
        files=NO_FILE,
    )
    assert again.status_code == 200, again.text[:3000]
    assert re.search(r'data-testid="estimate-items">2</span> items', again.text)
    batch_id = _batch_id(_confirm(client, again.text))
    assert _wait(stack, batch_id)["name"] == "rows.csv"
    assert {line: row["input"] for line, row in _export(stack, batch_id).items()} == {
        2: {"text": "one", "extra": "x"},
        4: {"text": "three", "extra": "z"},
    }


def test_form_errors_are_shown_next_to_their_fields_and_store_nothing(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    workflow = _workflow(stack, fake_llm)
    client = _member(stack)
    before = _count(stack)

    nothing = _estimate(client, workflow)
    assert nothing.status_code == 422
    assert _error(nothing.text, "dataset") == "choose a file, or paste the dataset here"

    not_utf8 = _estimate(client, workflow, upload=("data.csv", b"text\n\xff\n"))
    assert not_utf8.status_code == 422 and "not UTF-8" in _error(not_utf8.text, "file")

    unknown = _estimate(client, workflow, upload=("data.txt", b'{"text": "a"}\n'))
    assert "cannot tell the file's format" in _error(unknown.text, "file")
    told = _estimate(client, workflow, upload=("data.txt", b'{"text": "a"}\n'), format="jsonl")
    assert told.status_code == 200

    too_many = _estimate(client, workflow, dataset='[{"text": "a"}]', max_in_flight="0")
    assert too_many.status_code == 422
    assert "greater than or equal to 1" in _error(too_many.text, "max_in_flight")
    assert 'aria-describedby="e-max_in_flight"' in too_many.text

    gone = _estimate(client, f"no-such-{workflow}", dataset='{"text": "a"}')
    assert "no workflow with id or name" in _error(gone.text, "workflow")

    # Through both posts (the second carries it as base64) it must fit the body limit.
    big = _estimate(client, workflow, dataset='{"text": "%s"}\n' % ("x" * 800_000))
    assert big.status_code == 422
    assert "this form takes up to 756 KiB" in _error(big.text, "dataset")

    as_list = _estimate(client, workflow, dataset='[{"text": "a"}, {"text": "b"}]')
    assert as_list.status_code == 200
    assert _hidden_fields(as_list.text, "/batches/confirm")["format"] == "json"
    as_csv = _estimate(client, workflow, dataset="text\na\nb\nc\n")
    assert re.search(r'data-testid="estimate-items">3</span> items', as_csv.text)
    assert _count(stack) == before


def test_retry_and_cancel_from_the_batch_page(stack: Stack, fake_llm: FakeLLM) -> None:
    workflow = _workflow(stack, fake_llm)
    client = _member(stack)
    # The first two provider calls are refused (400 does not retry): two items fail.
    httpx.post(f"{fake_llm.url}/_fake/faults", json={"status": 400, "count": 2})
    dataset = "".join(json.dumps({"text": f"r{i}"}) + "\n" for i in range(4))
    shown = _estimate(client, workflow, dataset=dataset, max_in_flight="1", name="retry me")
    batch_id = _batch_id(_confirm(client, shown.text))
    batch = _wait(stack, batch_id)
    assert batch["status"] == "finished" and batch["progress"]["failed"] == 2

    page = client.get(f"/batches/{batch_id}").text
    assert re.search(r'<form method="post" action="/batches/[0-9a-f]+/retry" data-retry\s', page)
    assert "cancel-batch" not in page and "<h1>retry me" in page
    items = re.search(r'data-testid="batch-items">.*?</table>', page, re.S)
    assert items and items.group(0).count('<span class="badge failed"') == 2
    action = f"/batches/{batch_id}/retry"
    retried = client.post(
        action, data={"csrf_token": _form_token(client, f"/batches/{batch_id}", action)}
    )
    assert retried.status_code == 303
    assert retried.headers["location"] == f"/batches/{batch_id}?retried=2"
    assert "2 items given a new run" in client.get(retried.headers["location"]).text
    batch = _wait(stack, batch_id)
    assert batch["status"] == "succeeded" and batch["progress"]["succeeded"] == 4
    page = client.get(f"/batches/{batch_id}").text
    assert re.search(r"data-retry hidden", page)
    assert page.count("(1 earlier)") == 2

    fake_llm.configure(latency_seconds=1.5)
    try:
        shown = _estimate(client, workflow, dataset=dataset * 3, max_in_flight="1")
        slow_id = _batch_id(_confirm(client, shown.text))
        live = client.get(f"/batches/{slow_id}").text
        assert 'data-live="yes"' in live and 'data-testid="cancel-batch"' in live
        action = f"/batches/{slow_id}/cancel"
        token = _form_token(client, f"/batches/{slow_id}", action)
        cancelled = client.post(action, data={"csrf_token": token})
        assert cancelled.status_code == 303
        batch = _wait(stack, slow_id)
        assert batch["status"] == "cancelled" and batch["progress"]["waiting"] >= 10
        page = client.get(f"/batches/{slow_id}").text
        assert 'data-status="cancelled"' in page and "cancel-batch" not in page
        assert "data-retry hidden" in page
        again = client.post(action, data={"csrf_token": token})
        assert again.status_code == 409 and "already ended (cancelled)" in again.text
        refused = client.post(f"/batches/{slow_id}/retry", data={"csrf_token": token})
        assert refused.status_code == 409 and "cannot run again" in refused.text
    finally:
        fake_llm.configure(latency_seconds=0.0)


def test_a_viewer_sees_batches_but_no_controls_and_cannot_post(
    stack: Stack, fake_llm: FakeLLM
) -> None:
    workflow = _workflow(stack, fake_llm)
    member = _member(stack)
    viewer = _member(stack, "viewer")
    token = csrf_token(viewer)
    with stack.client() as api:
        dataset = [{"text": f"v{i}"} for i in range(55)]
        body = {"workflow": workflow, "dataset": dataset, "max_in_flight": 50}
        batch_id = api.post("/batches", json=body).json()["id"]
    batch = _wait(stack, batch_id)
    assert batch["status"] == "succeeded"
    before = _count(stack)

    listed = viewer.get("/batches")
    assert listed.status_code == 200 and f'data-batch="{batch_id}"' in listed.text
    assert 'data-testid="new-batch"' not in listed.text
    assert 'data-testid="new-batch"' in member.get("/batches").text
    seen = viewer.get(f"/batches/{batch_id}")
    assert seen.status_code == 200 and 'data-testid="batch-status"' in seen.text
    for control in ("retry-batch", "cancel-batch", f"/batches/{batch_id}/retry"):
        assert control not in seen.text
    assert 'data-testid="export-csv"' in seen.text
    # The items, 50 a page.
    first = re.findall(r'<tr data-line="(\d+)">', seen.text)
    second = re.findall(r'<tr data-line="(\d+)">', viewer.get(f"/batches/{batch_id}?page=2").text)
    assert first == [str(i) for i in range(1, 51)] and second == [str(i) for i in range(51, 56)]
    assert "Items 51–55 of 55" in viewer.get(f"/batches/{batch_id}?page=2").text

    dataset_text = '{"text": "x"}\n'
    refused = [
        viewer.get("/batches/new"),
        viewer.post(
            "/batches/new",
            data={"csrf_token": token, "workflow": workflow, "dataset": dataset_text},
            files=NO_FILE,
        ),
        viewer.post(
            "/batches/confirm",
            data={"csrf_token": token, "workflow": workflow, "dataset": dataset_text},
        ),
        viewer.post(f"/batches/{batch_id}/retry", data={"csrf_token": token}),
        viewer.post(f"/batches/{batch_id}/cancel", data={"csrf_token": token}),
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert "needs the member role" in refused[1].text
    # A member's post without the form's token is refused too.
    forged = member.post(
        "/batches/confirm", data={"workflow": workflow, "dataset": dataset_text}, files=NO_FILE
    )
    assert forged.status_code == 403 and "CSRF check" in forged.text
    assert _count(stack) == before
    with stack.client() as api:
        assert api.get(f"/batches/{batch_id}").json()["status"] == "succeeded"
    assert viewer.get("/batches/no-such-batch").status_code == 404


# --- in a browser ----------------------------------------------------------------------


def test_a_file_uploaded_in_the_browser_runs_and_its_page_follows_it_to_the_end(
    stack: Stack, fake_llm: FakeLLM, browser: Any, tmp_path: Path
) -> None:
    workflow = _workflow(stack, fake_llm)
    client = _member(stack)
    dataset = tmp_path / "inputs.jsonl"
    dataset.write_text("".join(json.dumps({"text": f"b{i}"}) + "\n" for i in range(6)))
    before = _count(stack)
    fake_llm.configure(latency_seconds=0.5)
    context = browser.new_context()
    try:
        context.add_cookies(
            [
                {
                    "name": "ownkey_session",
                    "value": client.cookies["ownkey_session"],
                    "url": stack.api_url,
                }
            ]
        )
        page = context.new_page()
        page.goto(f"{stack.api_url}/batches")
        page.get_by_role("link", name="New batch").click()
        page.get_by_label("Workflow").select_option(label=workflow)
        # A file too large for the form is refused before it is sent.
        too_large = tmp_path / "large.jsonl"
        too_large.write_text('{"text": "%s"}\n' % ("x" * 800_000))
        file_input = page.get_by_label("Dataset file")
        file_input.set_input_files(str(too_large))
        assert "up to 756 KiB" in file_input.evaluate("input => input.validationMessage")
        file_input.set_input_files(str(dataset))
        assert file_input.evaluate("input => input.validationMessage") == ""
        page.get_by_label("Max runs in flight").fill("2")
        page.get_by_role("button", name="Estimate cost").click()
        page.wait_for_selector('[data-testid="estimate"]')
        assert page.locator('[data-testid="estimate-items"]').inner_text() == "6"
        assert " – " in page.locator('[data-testid="estimate-range"]').inner_text()
        assert _count(stack) == before

        page.get_by_role("button", name="Confirm and start").click()
        page.wait_for_url(re.compile(r".*/batches/[0-9a-f]+$"))
        batch_id = page.url.rsplit("/", 1)[1]
        assert page.locator("#batch").get_attribute("data-live") == "yes"
        page.evaluate("window.notReloaded = true")
        page.wait_for_selector(
            '[data-testid="batch-status"] .badge[data-status="succeeded"]', timeout=60_000
        )
        page.wait_for_function(
            "document.getElementById('batch').dataset.live === 'no'", timeout=10_000
        )
        assert page.evaluate("window.notReloaded") is True
        batch = _wait(stack, batch_id)

        def field(name: str) -> str:
            return str(page.locator(f'[data-batch-field="{name}"]').inner_text())

        assert field("succeeded") == "6" and field("done") == "6" and field("waiting") == "0"
        assert field("cost_usd") == usd(batch["cost_usd"])
        assert field("output_tokens") == f"{batch['output_tokens']:,}"
        assert page.locator('[data-testid="cancel-batch"]').count() == 0
        # The items table was reloaded in place: every item links to its run.
        links = page.locator('[data-testid="batch-items"] a[href^="/runs/"]')
        assert links.count() == 6
        assert page.locator("#batch-progress").get_attribute("value") == "6"
    finally:
        context.close()
        fake_llm.configure(latency_seconds=0.0)
