"""A workflow definition (a DAG of agent steps) and its validation.

Validation runs at the API boundary and collects every problem at once, each
naming the step and the field, so a user fixes a workflow in one round trip:

    parse_workflow_document(body, content_type)   -> WorkflowSpec  (shape)
    validate_workflow(spec, known_agents=...)      -> topological order (meaning)

Both raise WorkflowInvalid, whose ``errors`` map one-to-one onto a 422 body.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from shared.templates import TemplateSyntaxProblem, check_template

__all__ = [
    "JSON_CONTENT_TYPES",
    "YAML_CONTENT_TYPES",
    "SpecError",
    "StepSpec",
    "WorkflowInvalid",
    "WorkflowSpec",
    "parse_workflow_document",
    "validate_workflow",
]

STEP_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
WORKFLOW_NAME_PATTERN = r"^[A-Za-z0-9_.\- ]+$"

JSON_CONTENT_TYPES = frozenset({"application/json"})
YAML_CONTENT_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml"})

# Friendlier words for pattern mismatches than pydantic's "should match pattern '^...$'".
_PATTERN_MESSAGES = {
    "id": "a step id starts with a letter or _ and has at most 64 letters, digits, _ or -",
    "name": "a workflow name may contain only letters, digits, _, -, . and spaces",
}


def _refuse_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and no prompt or name needs one.
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


Text = Annotated[str, AfterValidator(_refuse_nul)]


class StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=STEP_ID_PATTERN)
    agent: Text = Field(min_length=1)
    prompt: Text = Field(min_length=1)
    depends_on: list[Text] = Field(default_factory=list)


class WorkflowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=WORKFLOW_NAME_PATTERN)
    description: Text | None = None
    steps: list[StepSpec]


@dataclass(frozen=True)
class SpecError:
    """One problem in a workflow. ``step`` is None for workflow-level fields."""

    step: str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.field if self.step is None else f"step {self.step!r}, {self.field}"
        return f"{where}: {self.message}"


class WorkflowInvalid(ValueError):
    def __init__(self, errors: Sequence[SpecError]) -> None:
        super().__init__(errors)
        self.errors = list(errors)

    def __str__(self) -> str:
        return "; ".join(str(error) for error in self.errors)


# --- meaning -----------------------------------------------------------------------------


def validate_workflow(spec: WorkflowSpec, *, known_agents: Collection[str]) -> list[str]:
    """Check a parsed workflow and return its step ids in a topological order.

    The order is stable: among steps whose dependencies are done, the one that
    comes first in the document comes first. Raises WorkflowInvalid with every
    problem found.
    """
    if not spec.steps:
        raise WorkflowInvalid([SpecError(None, "steps", "a workflow needs at least one step")])

    errors: list[SpecError] = []
    steps: dict[str, StepSpec] = {}
    for step in spec.steps:
        if step.id in steps:
            errors.append(SpecError(step.id, "id", f"duplicate step id {step.id!r}"))
        else:
            steps[step.id] = step

    # Edges kept for the graph checks: only deps that name another, existing step.
    deps: dict[str, list[str]] = {}
    for step in steps.values():
        if step.agent not in known_agents:
            errors.append(SpecError(step.id, "agent", f"unknown agent {step.agent!r}"))
        kept: list[str] = []
        for dep in step.depends_on:
            if dep == step.id:
                errors.append(SpecError(step.id, "depends_on", "a step cannot depend on itself"))
            elif dep not in steps:
                errors.append(SpecError(step.id, "depends_on", f"there is no step {dep!r}"))
            elif dep not in kept:
                kept.append(dep)
        deps[step.id] = kept

    for step in steps.values():
        errors.extend(_prompt_errors(step, steps, _ancestors(step.id, deps)))

    errors.extend(_cycle_errors(list(steps), deps))
    if errors:
        raise WorkflowInvalid(errors)
    return _topological_order(list(steps), deps)


def _prompt_errors(
    step: StepSpec, steps: Mapping[str, StepSpec], ancestors: set[str]
) -> list[SpecError]:
    try:
        info = check_template(step.prompt)
    except TemplateSyntaxProblem as exc:
        return [SpecError(step.id, "prompt", str(exc))]
    errors: list[SpecError] = []
    for ref in sorted(info.referenced_steps):
        if ref not in steps:
            message = f"the prompt uses steps.{ref} but there is no step {ref!r}"
            errors.append(SpecError(step.id, "prompt", message))
        elif ref == step.id:
            message = f"the prompt uses steps.{ref}, this step's own output"
            errors.append(SpecError(step.id, "prompt", message))
        elif ref not in ancestors:
            message = (
                f"the prompt uses steps.{ref} but {ref!r} may not have run yet: "
                f"add {ref!r} to depends_on"
            )
            errors.append(SpecError(step.id, "prompt", message))
    return errors


def _ancestors(step_id: str, deps: Mapping[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(deps[step_id])
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(deps[current])
    seen.discard(step_id)  # on a cycle; reported separately
    return seen


def _cycle_errors(order: list[str], deps: Mapping[str, list[str]]) -> list[SpecError]:
    """One error per cycle found by depth-first search, in document order."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(order, white)
    errors: list[SpecError] = []
    for root in order:
        if color[root] != white:
            continue
        path: list[str] = [root]
        iterators = [iter(deps[root])]
        color[root] = grey
        while iterators:
            nxt = next(iterators[-1], None)
            if nxt is None:
                color[path.pop()] = black
                iterators.pop()
            elif color[nxt] == white:
                color[nxt] = grey
                path.append(nxt)
                iterators.append(iter(deps[nxt]))
            elif color[nxt] == grey:
                cycle = [*path[path.index(nxt) :], nxt]
                message = "dependency cycle: " + " -> ".join(cycle)
                errors.append(SpecError(cycle[0], "depends_on", message))
    return errors


def _topological_order(order: list[str], deps: Mapping[str, list[str]]) -> list[str]:
    position = {step_id: i for i, step_id in enumerate(order)}
    waiting = {step_id: len(deps[step_id]) for step_id in order}
    dependents: dict[str, list[str]] = {step_id: [] for step_id in order}
    for step_id in order:
        for dep in deps[step_id]:
            dependents[dep].append(step_id)
    ready = [position[s] for s in order if waiting[s] == 0]
    heapq.heapify(ready)
    result: list[str] = []
    while ready:
        step_id = order[heapq.heappop(ready)]
        result.append(step_id)
        for successor in dependents[step_id]:
            waiting[successor] -= 1
            if waiting[successor] == 0:
                heapq.heappush(ready, position[successor])
    return result


# --- shape -------------------------------------------------------------------------------


def parse_workflow_document(body: bytes, content_type: str) -> WorkflowSpec:
    """Parse a JSON or YAML workflow document into a WorkflowSpec.

    Raises WorkflowInvalid for an unsupported content type, text that does not
    parse (with the line), a top level that is not an object, and every schema
    error (naming the step by its id when it has one).
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    is_yaml = media_type in YAML_CONTENT_TYPES
    if not is_yaml and media_type not in JSON_CONTENT_TYPES and not media_type.endswith("+json"):
        supported = ", ".join(sorted(JSON_CONTENT_TYPES | YAML_CONTENT_TYPES))
        message = f"unsupported content type {media_type!r}; use one of {supported}"
        raise WorkflowInvalid([SpecError(None, "body", message)])
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WorkflowInvalid([SpecError(None, "body", "the body is not UTF-8 text")]) from None

    data = _load_yaml(text) if is_yaml else _load_json(text)
    if not isinstance(data, dict):
        kind = "YAML" if is_yaml else "JSON"
        message = f"a workflow must be a {kind} object (a mapping with name and steps)"
        raise WorkflowInvalid([SpecError(None, "body", message)])
    try:
        return WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        raise WorkflowInvalid(_spec_errors(exc, data)) from None


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise WorkflowInvalid([SpecError(None, "body", message)]) from None
    except (ValueError, RecursionError) as exc:
        raise _unparsable("JSON", exc) from None


def _load_yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "cannot parse"
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        message = f"invalid YAML{where}: {problem}"
        raise WorkflowInvalid([SpecError(None, "body", message)]) from None
    except (ValueError, RecursionError) as exc:
        raise _unparsable("YAML", exc) from None


def _unparsable(kind: str, exc: Exception) -> WorkflowInvalid:
    """Text that is well-formed but that Python refuses to load: an integer of more than
    4,300 digits (ValueError), or nesting deeper than the interpreter's recursion limit."""
    if isinstance(exc, RecursionError):
        message = f"invalid {kind}: nested too deeply"
    else:
        message = f"invalid {kind}: an integer has too many digits"
    return WorkflowInvalid([SpecError(None, "body", message)])


def _spec_errors(exc: ValidationError, data: Mapping[str, Any]) -> list[SpecError]:
    errors: list[SpecError] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        message = str(error["msg"])
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            step: str | None = _step_label(data, loc[1])
            rest = loc[2:]
        else:
            step, rest = None, loc
        field = str(rest[0]) if rest else "steps"
        if len(rest) > 1:  # e.g. ("depends_on", 0): keep the position in the message
            message = f"item {'.'.join(str(part) for part in rest[1:])}: {message}"
        if error["type"] == "string_pattern_mismatch" and field in _PATTERN_MESSAGES:
            message = _PATTERN_MESSAGES[field]
        errors.append(SpecError(step, field, message))
    return errors


def _step_label(data: Mapping[str, Any], index: int) -> str:
    steps = data.get("steps")
    if isinstance(steps, list) and index < len(steps):
        raw = steps[index]
        if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"]:
            return str(raw["id"])
    return f"steps[{index}]"
