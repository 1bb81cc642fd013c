"""Web UI pages: workflows. A list, a YAML editor whose errors name the step, the step
graph, and a form that starts a run with one field per input the prompts use."""

from __future__ import annotations

import json
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from api.agents import service as agents
from api.errors import ApiError, NotFound, Unprocessable
from api.runs.schemas import RunCreate
from api.runs.service import submit_run
from api.web import graph
from api.web.render import render
from api.web.session import FormMember, PageMember, PageViewer
from api.workflows import service
from api.workflows.schemas import WorkflowPublic
from shared.db import read_session, session_scope
from shared.models import Role
from shared.templates import TemplateSyntaxProblem, check_template

router = APIRouter(prefix="/workflows", include_in_schema=False)

MAX_DEFINITION_CHARS = 256_000
MAX_INPUT_CHARS = 256_000
INPUT_PREFIX = "input."
EXAMPLE = """\
name: my-workflow
description: What this workflow is for
steps:
  - id: draft
    agent: AGENT
    prompt: |
      Write a short note about {{ input.topic }}.
  - id: review
    agent: AGENT
    depends_on: [draft]
    prompt: |
      Improve this note: {{ steps.draft.output }}
"""


class _EditorDumper(yaml.SafeDumper):
    """YAML the way people write a workflow: indented steps, prompts of several lines
    as `|` blocks, `depends_on: [a, b]` on one line."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    flow = all(isinstance(item, str) for item in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_EditorDumper.add_representer(str, _str)
_EditorDumper.add_representer(list, _list)


def as_yaml(workflow: WorkflowPublic) -> str:
    """The stored definition as YAML for the editor (the original text is not kept)."""
    document: dict[str, Any] = {"name": workflow.name}
    if workflow.description:
        document["description"] = workflow.description
    document["steps"] = [{k: v for k, v in s.items() if v != []} for s in workflow.steps]
    text: str = yaml.dump(document, Dumper=_EditorDumper, sort_keys=False, allow_unicode=True)
    return text


def _position(text: str, word: str) -> int:
    found = text.find(word)
    return len(text) if found < 0 else found


def input_fields(steps: list[dict[str, Any]]) -> list[str]:
    """The `input.<name>` fields the prompts read, in the order the steps use them."""
    found: dict[str, None] = {}
    for step in steps:
        prompt = str(step["prompt"])
        try:
            names = check_template(prompt).input_fields
        except TemplateSyntaxProblem:
            continue  # a stored workflow was validated; nothing to offer for this step
        # Within a prompt, roughly in the order it mentions them (this only orders a form).
        found.update(dict.fromkeys(sorted(names, key=lambda n: (_position(prompt, n), n))))
    return list(found)


def error_lines(exc: ApiError) -> list[str]:
    """Each problem as one line naming the step and the field, e.g.
    "step 'summarize', agent: unknown agent 'nope'"."""
    if not (isinstance(exc, Unprocessable) and isinstance(exc.detail, list)):
        return [exc.message]
    lines = []
    for error in exc.detail:
        field = error.get("field")
        where = f"{field}: " if field and field != "body" else ""
        if error.get("step"):
            where = f"step '{error['step']}', {where}"
        lines.append(f"{where}{error['msg']}")
    return lines


async def _form_fields(request: Request) -> dict[str, str]:
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


FormFields = Annotated[dict[str, str], Depends(_form_fields)]


def _agent_names() -> list[str]:
    with read_session() as session:
        return [agent.name for agent, _key in agents.list_agents(session=session)]


def _not_found(request: Request, who: PageViewer, exc: NotFound) -> Response:
    return render(
        request, "error.html", who, status_code=404, title="Not found", message=exc.message
    )


# --- list and create -----------------------------------------------------------------


@router.get("")
def list_page(request: Request, who: PageViewer) -> Response:
    with read_session() as session:
        workflows = service.list_workflows(session=session)
    return render(request, "workflows_list.html", who, workflows=workflows)


def _editor_page(
    request: Request, who: PageMember, *, text: str, errors: list[str], status_code: int = 200
) -> Response:
    return render(
        request,
        "workflow_new.html",
        who,
        text=text,
        errors=errors,
        agent_names=_agent_names(),
        status_code=status_code,
    )


@router.get("/new")
def new_page(request: Request, who: PageMember) -> Response:
    return _editor_page(request, who, text=EXAMPLE, errors=[])


@router.post("/new")
def create(
    request: Request,
    who: FormMember,
    definition: Annotated[str, Form(max_length=MAX_DEFINITION_CHARS)] = "",
) -> Response:
    try:
        with session_scope() as session:
            spec = service.parse_and_validate(
                session=session, body=definition.encode(), content_type="application/yaml"
            )
            workflow, _version = service.create_workflow(
                session=session, spec=spec, actor=who.actor
            )
    except ApiError as exc:
        return _editor_page(request, who, text=definition, errors=error_lines(exc), status_code=422)
    return RedirectResponse(f"/workflows/{workflow.id}?saved=1", status_code=303)


# --- one workflow: graph, start a run, edit ------------------------------------------


def _workflow_page(
    request: Request,
    who: PageViewer,
    workflow_id: str,
    *,
    text: str | None = None,
    errors: list[str] | None = None,
    run_form: dict[str, str] | None = None,
    run_errors: dict[str, str] | None = None,
    saved: bool = False,
) -> Response:
    try:
        with read_session() as session:
            found = service.get_workflow(session=session, workflow_id=workflow_id)
            workflow = service.to_public(found, service.current_version(session, found))
    except NotFound as exc:
        return _not_found(request, who, exc)
    failed = bool(errors) or bool(run_errors)
    return render(
        request,
        "workflow.html",
        who,
        workflow=workflow,
        graph_svg=graph.render_svg(graph.nodes_of(workflow.steps)),
        text=as_yaml(workflow) if text is None else text,
        errors=errors or [],
        fields=input_fields(workflow.steps),
        run_form=run_form or {},
        run_errors=run_errors or {},
        agent_names=_agent_names() if who.may(Role.member) else [],
        saved=saved,
        status_code=422 if failed else 200,
    )


@router.get("/{workflow_id}")
def workflow_page(
    request: Request, workflow_id: str, who: PageViewer, saved: bool = False
) -> Response:
    return _workflow_page(request, who, workflow_id, saved=saved)


@router.post("/{workflow_id}")
def update(
    request: Request,
    workflow_id: str,
    who: FormMember,
    definition: Annotated[str, Form(max_length=MAX_DEFINITION_CHARS)] = "",
) -> Response:
    try:
        with session_scope() as session:
            workflow = service.get_workflow(session=session, workflow_id=workflow_id)
            spec = service.parse_and_validate(
                session=session, body=definition.encode(), content_type="application/yaml"
            )
            service.update_workflow(session=session, workflow=workflow, spec=spec, actor=who.actor)
            saved_id = workflow.id
    except NotFound as exc:
        return _not_found(request, who, exc)
    except ApiError as exc:
        return _workflow_page(request, who, workflow_id, text=definition, errors=error_lines(exc))
    return RedirectResponse(f"/workflows/{saved_id}?saved=1", status_code=303)


def run_input(form: dict[str, str], fields: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The run input from the raw JSON (`input_json`) and one field per prompt input
    (a filled-in field wins over the same key in the JSON), and {field: error}."""
    errors: dict[str, str] = {}
    data: dict[str, Any] = {}
    raw = form.get("input_json", "").strip()
    if len(raw) > MAX_INPUT_CHARS:
        errors["input_json"] = f"at most {MAX_INPUT_CHARS:,} characters"
    elif raw:
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            where = (
                f" at line {exc.lineno}, column {exc.colno}"
                if isinstance(exc, json.JSONDecodeError)
                else ""
            )
            errors["input_json"] = f"not valid JSON{where}"
        else:
            if isinstance(parsed, dict):
                data = parsed
            else:
                errors["input_json"] = 'must be a JSON object, e.g. {"language": "French"}'
    for name in fields:
        value = form.get(INPUT_PREFIX + name, "")
        if value:
            data[name] = value
        elif name not in data and "input_json" not in errors:
            errors[INPUT_PREFIX + name] = (
                f"the prompts use input.{name}: fill it in (or set it in the JSON below)"
            )
    return data, errors


@router.post("/{workflow_id}/runs")
def start_run(request: Request, workflow_id: str, who: FormMember, form: FormFields) -> Response:
    try:
        with read_session() as session:
            found = service.get_workflow(session=session, workflow_id=workflow_id)
            steps = service.current_version(session, found).definition["steps"]
    except NotFound as exc:
        return _not_found(request, who, exc)
    data, errors = run_input(form, input_fields(steps))
    if not errors:
        try:
            # By name, as the API's callers do: the audit log records what was asked for.
            created = submit_run(RunCreate(workflow=found.name, input=data), actor=who.actor)
        except ValidationError as exc:
            errors["input_json"] = "; ".join(e["msg"] for e in exc.errors())
        except ApiError as exc:
            errors["_form"] = exc.message
        else:
            return RedirectResponse(f"/runs/{created.run_id}", status_code=303)
    return _workflow_page(request, who, workflow_id, run_form=form, run_errors=errors)
