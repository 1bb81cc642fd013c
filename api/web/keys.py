"""Settings → API keys: the provider keys with this month's usage, and for admins adding,
testing and deleting them.

A secret goes in once and never comes back out: the page lists keys as `KeyPublic`
(which has no secret), and a form re-rendered after an error leaves the secret empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, get_args

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from api.errors import ApiError
from api.keys import service
from api.keys.schemas import KeyCreate, KeyPublic, KeyUpdate, ProviderName
from api.usage.router import UsageLine, build_report
from api.web.forms import FORM, api_errors, validation_errors
from api.web.render import render
from api.web.session import FormAdmin, PageViewer
from shared.db import read_session, session_scope
from shared.providers import DEFAULT_BASE_URLS, NEEDS_SECRET
from shared.queues import DEFAULT_QUEUE

router = APIRouter(prefix="/settings/keys", include_in_schema=False)

FIELDS = ("provider", "name", "base_url", "api_key", "queue")
LABELS = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "mistral": "Mistral",
    "groq": "Groq",
    "ollama": "Ollama (local)",
    "lmstudio": "LM Studio (local)",
    "openai_compatible": "OpenAI-compatible (vLLM, LiteLLM, …)",
}


@dataclass(frozen=True, slots=True)
class ProviderChoice:
    value: str
    label: str
    base_url: str | None  # None: the user must give one
    needs_secret: bool


PROVIDERS = [
    ProviderChoice(p, LABELS.get(p, p), DEFAULT_BASE_URLS[p], p in NEEDS_SECRET)
    for p in get_args(ProviderName)
]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What the last action on one key said, shown in that key's row."""

    ok: bool
    text: str


def _this_month() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    first = datetime(now.year, now.month, 1, tzinfo=UTC)
    return first, (first + timedelta(days=32)).replace(day=1)


def _keys_page(
    request: Request,
    who: PageViewer,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    results: dict[str, CheckResult] | None = None,
    status_code: int = 200,
) -> Response:
    first, after_last = _this_month()
    with read_session() as session:
        keys = [
            KeyPublic.model_validate(k, from_attributes=True)
            for k in service.list_keys(session=session)
        ]
        # Grouped by key name (the key's id once the key is deleted).
        usage = build_report(session, first, after_last, "key").data
    by_name: dict[str, UsageLine] = {line.group: line for line in usage}
    return render(
        request,
        "keys.html",
        who,
        keys=keys,
        usage=by_name,
        month=first.strftime("%B %Y"),
        providers=PROVIDERS,
        errors=errors or {},
        form=form or {"provider": "openai"},
        results=results or {},
        default_queue=DEFAULT_QUEUE,
        status_code=status_code,
    )


@router.get("")
def keys_page(request: Request, who: PageViewer) -> Response:
    return _keys_page(request, who)


@router.post("")
def add_key(
    request: Request,
    who: FormAdmin,
    provider: Annotated[str, Form(max_length=64)] = "",
    name: Annotated[str, Form(max_length=1000)] = "",
    base_url: Annotated[str, Form(max_length=5000)] = "",
    api_key: Annotated[str, Form(max_length=100_000)] = "",
    queue: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    # Kept for the re-rendered form: everything but the secret.
    form = {"provider": provider, "name": name, "base_url": base_url, "queue": queue}
    try:
        body = KeyCreate.model_validate(
            {
                "provider": provider,
                "name": name,
                "base_url": base_url.strip() or None,
                "api_key": api_key or None,
                "queue": queue.strip() or None,
            }
        )
        with session_scope() as session:
            service.create_key(session=session, body=body, actor=who.actor)
    except ValidationError as exc:
        errors = validation_errors(exc, FIELDS)
        return _keys_page(request, who, errors=errors, form=form, status_code=422)
    except ApiError as exc:
        errors = api_errors(exc, FIELDS, conflict_field="name")
        return _keys_page(request, who, errors=errors, form=form, status_code=exc.status_code)
    return RedirectResponse("/settings/keys", status_code=303)


@router.post("/{key_id}/queue")
def set_queue(
    request: Request,
    key_id: str,
    who: FormAdmin,
    queue: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Set the key's queue; empty clears it. A refusal shows in the key's row."""
    try:
        body = KeyUpdate.model_validate({"queue": queue.strip() or None})
        with session_scope() as session:
            service.update_key(session=session, key_id=key_id, body=body, actor=who.actor)
    except ValidationError as exc:
        message = validation_errors(exc, FIELDS).popitem()[1]
        return _keys_page(
            request, who, results={key_id: CheckResult(False, message)}, status_code=422
        )
    except ApiError as exc:
        return _keys_page(request, who, errors={FORM: exc.message}, status_code=exc.status_code)
    return RedirectResponse("/settings/keys", status_code=303)


@router.post("/{key_id}/test")
def check_key(request: Request, key_id: str, who: FormAdmin) -> Response:
    """Ask the provider for its models with this key; the answer shows in the key's row."""
    try:
        check = service.test_key(key_id, who.actor)
    except ApiError as exc:
        return _keys_page(request, who, errors={FORM: exc.message}, status_code=exc.status_code)
    text = f"ok ({len(check.models)} models)" if check.ok else str(check.error)
    return _keys_page(request, who, results={key_id: CheckResult(check.ok, text)})


@router.post("/{key_id}/delete")
def delete_key(request: Request, key_id: str, who: FormAdmin) -> Response:
    try:
        with session_scope() as session:
            service.delete_key(session=session, key_id=key_id, actor=who.actor)
    except ApiError as exc:
        if exc.status_code == 409:  # in use: said in its row, naming the agents
            results = {key_id: CheckResult(False, exc.message)}
            return _keys_page(request, who, results=results, status_code=409)
        return _keys_page(request, who, errors={FORM: exc.message}, status_code=exc.status_code)
    return RedirectResponse("/settings/keys", status_code=303)
