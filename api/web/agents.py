"""Agents: the list with each model's price, and the form that creates and edits one.

The form's model dropdown is filled in the browser from the chosen key's model list
(static/agents.js); "Other…" (or a provider that lists nothing) takes a typed name.
The form posts `model_choice` and `model_other`, and the page picks the one meant, so
the form also works with no JavaScript at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, ValidationError

from api.agents import service
from api.agents.schemas import AgentCreate, AgentPublic, AgentUpdate
from api.errors import ApiError
from api.keys.service import list_keys
from api.web.forms import api_errors, validation_errors
from api.web.render import render
from api.web.session import FormMember, PageMember, PageViewer
from shared.db import read_session, session_scope
from shared.models import Role
from shared.prices_store import price_lookup

router = APIRouter(prefix="/agents", include_in_schema=False)

OTHER_MODEL = "__other__"
FIELDS = (
    "name",
    "key_id",
    "model",
    "system_prompt",
    "temperature",
    "max_tokens",
    "timeout_seconds",
    "max_attempts",
    "queue",
)
NEW_AGENT = {"max_attempts": "3"}


class AgentForm(BaseModel):
    """The form as sent: text, checked by AgentCreate/AgentUpdate, not here."""

    name: str = Field(default="", max_length=1000)
    key_id: str = Field(default="", max_length=100)
    model_choice: str = Field(default="", max_length=1000)
    model_other: str = Field(default="", max_length=1000)
    system_prompt: str = Field(default="", max_length=200_000)
    temperature: str = Field(default="", max_length=50)
    max_tokens: str = Field(default="", max_length=50)
    timeout_seconds: str = Field(default="", max_length=50)
    max_attempts: str = Field(default="", max_length=50)
    queue: str = Field(default="", max_length=200)

    @property
    def model(self) -> str:
        chosen = self.model_choice
        return (self.model_other if chosen in ("", OTHER_MODEL) else chosen).strip()

    def shown(self) -> dict[str, str]:
        """The values to put back into the form after an error."""
        return {**self.model_dump(), "model": self.model}

    def values(self) -> dict[str, Any]:
        """For the schemas: blank numbers are unset (None), max attempts defaults to 3."""

        def number(text: str) -> str | None:
            return text.strip() or None

        prompt = self.system_prompt.replace("\r\n", "\n")
        return {
            "key_id": self.key_id,
            "model": self.model,
            "system_prompt": prompt if prompt.strip() else None,
            "temperature": number(self.temperature),
            "max_tokens": number(self.max_tokens),
            "timeout_seconds": number(self.timeout_seconds),
            "max_attempts": number(self.max_attempts) or 3,
            # Blank: the key's queue (on an edit, this clears the agent's own).
            "queue": self.queue.strip() or None,
        }


@dataclass(frozen=True, slots=True)
class PriceText:
    """A model's price, USD per million tokens, as the pages show it."""

    input: str
    output: str
    cached: str

    @property
    def summary(self) -> str:
        return (
            f"{self.input} input · {self.output} output · {self.cached} cached input "
            "per million tokens"
        )


def per_million(value: Decimal) -> str:
    """$2.50, $0.075, $10.00: at least cents, and every digit the price has."""
    whole, _, fraction = format(value, "f").partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


def price_text(provider: str, model: str) -> PriceText | None:
    price = price_lookup(provider, model) if model else None
    if price is None:
        return None
    return PriceText(
        per_million(price.input),
        per_million(price.output),
        per_million(price.effective_cached_input),
    )


def _form_from(agent: AgentPublic) -> dict[str, str]:
    def text(value: object) -> str:
        return "" if value is None else str(value)

    return {
        "name": agent.name,
        "key_id": agent.key_id,
        "model": agent.model,
        "system_prompt": text(agent.system_prompt),
        "temperature": text(agent.temperature),
        "max_tokens": text(agent.max_tokens),
        "timeout_seconds": text(agent.timeout_seconds),
        "max_attempts": text(agent.max_attempts),
        "queue": text(agent.queue),
    }


# --- list ----------------------------------------------------------------------------


def _list_page(
    request: Request, who: PageViewer, *, error: str | None = None, status_code: int = 200
) -> Response:
    with read_session() as session:
        rows = [(service.to_public(a, k), k.name) for a, k in service.list_agents(session=session)]
    prices = {agent.id: price_text(agent.provider, agent.model) for agent, _ in rows}
    return render(
        request,
        "agents.html",
        who,
        agents=rows,
        prices=prices,
        error=error,
        status_code=status_code,
    )


@router.get("")
def agents_page(request: Request, who: PageViewer) -> Response:
    return _list_page(request, who)


# --- the form ------------------------------------------------------------------------


def _form_page(
    request: Request,
    who: PageViewer,
    *,
    agent_id: str | None,
    form: dict[str, str],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    with read_session() as session:
        keys = [(k.id, k.name, k.provider) for k in list_keys(session=session)]
    provider = next((p for key_id, _, p in keys if key_id == form.get("key_id")), None)
    if provider is None and keys and not form.get("key_id"):
        provider = keys[0][2]  # the form preselects the first key
    return render(
        request,
        "agent_form.html",
        who,
        agent_id=agent_id,
        form=form,
        keys=keys,
        price=price_text(provider, form.get("model", "")) if provider else None,
        may_edit=who.may(Role.member),
        errors=errors or {},
        other_model=OTHER_MODEL,
        status_code=status_code,
    )


@router.get("/new")
def new_agent(request: Request, who: PageMember) -> Response:
    return _form_page(request, who, agent_id=None, form=NEW_AGENT)


@router.post("/new")
def create_agent(request: Request, who: FormMember, form: Annotated[AgentForm, Form()]) -> Response:
    try:
        body = AgentCreate.model_validate({"name": form.name.strip(), **form.values()})
        with session_scope() as session:
            service.create_agent(session=session, body=body, actor=who.actor)
    except (ValidationError, ApiError) as exc:
        return _form_error(request, who, None, form, exc)
    return RedirectResponse("/agents", status_code=303)


@router.get("/price")
def model_price(
    who: PageViewer,
    provider: Annotated[str, Query(max_length=64)] = "",
    model: Annotated[str, Query(max_length=200)] = "",
) -> JSONResponse:
    """The price line of the form, for the model just picked in the browser."""
    price = price_text(provider, model.strip())
    return JSONResponse({"text": price.summary if price else "no price known"})


@router.get("/{agent_id}")
def edit_agent(request: Request, agent_id: str, who: PageViewer) -> Response:
    """The form, filled in; read-only for a viewer."""
    try:
        with read_session() as session:
            agent = service.public(session, service.get_agent(session=session, agent_id=agent_id))
    except ApiError as exc:
        return _list_page(request, who, error=exc.message, status_code=exc.status_code)
    return _form_page(request, who, agent_id=agent.id, form=_form_from(agent))


@router.post("/{agent_id}")
def update_agent(
    request: Request, agent_id: str, who: FormMember, form: Annotated[AgentForm, Form()]
) -> Response:
    try:
        body = AgentUpdate.model_validate(form.values())  # a name cannot change
        with session_scope() as session:
            service.update_agent(session=session, agent_id=agent_id, body=body, actor=who.actor)
    except (ValidationError, ApiError) as exc:
        return _form_error(request, who, agent_id, form, exc)
    return RedirectResponse("/agents", status_code=303)


def _form_error(
    request: Request,
    who: PageViewer,
    agent_id: str | None,
    form: AgentForm,
    exc: ValidationError | ApiError,
) -> Response:
    """The form again, as sent, with each message next to its field."""
    if isinstance(exc, ValidationError):
        errors, status_code = validation_errors(exc, FIELDS), 422
    else:
        errors, status_code = api_errors(exc, FIELDS, conflict_field="name"), exc.status_code
    return _form_page(
        request, who, agent_id=agent_id, form=form.shown(), errors=errors, status_code=status_code
    )


@router.post("/{agent_id}/delete")
def delete_agent(request: Request, agent_id: str, who: FormMember) -> Response:
    try:
        with session_scope() as session:
            service.delete_agent(session=session, agent_id=agent_id, actor=who.actor)
    except ApiError as exc:  # used by a workflow, or already gone
        return _list_page(request, who, error=exc.message, status_code=exc.status_code)
    return RedirectResponse("/agents", status_code=303)
