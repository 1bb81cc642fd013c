from __future__ import annotations

import json
from typing import Any

import pytest

from shared.workflow_spec import (
    SpecError,
    StepSpec,
    WorkflowInvalid,
    WorkflowSpec,
    parse_workflow_document,
    validate_workflow,
)

AGENTS = {"writer", "checker"}


def step(id: str, *deps: str, prompt: str = "Do it", agent: str = "writer") -> StepSpec:
    return StepSpec(id=id, agent=agent, prompt=prompt, depends_on=list(deps))


def workflow(*steps: StepSpec) -> WorkflowSpec:
    return WorkflowSpec(name="My flow v1.2", steps=list(steps))


def errors_of(spec: WorkflowSpec) -> list[SpecError]:
    with pytest.raises(WorkflowInvalid) as info:
        validate_workflow(spec, known_agents=AGENTS)
    return info.value.errors


# --- validate_workflow ---------------------------------------------------------------


def test_topological_order_is_stable() -> None:
    spec = workflow(
        step("summary", "draft", "facts"),
        step("facts"),
        step("draft", "facts"),
        step("title"),
        step("review", "summary", prompt="{{ steps.facts.output }}"),  # facts is an ancestor
    )
    assert validate_workflow(spec, known_agents=AGENTS) == [
        "facts",
        "draft",
        "summary",
        "title",
        "review",
    ]


def test_independent_steps_keep_document_order() -> None:
    spec = workflow(step("c"), step("a"), step("b"))
    assert validate_workflow(spec, known_agents=AGENTS) == ["c", "a", "b"]


def test_empty_workflow() -> None:
    assert errors_of(workflow()) == [SpecError(None, "steps", "a workflow needs at least one step")]


def test_collects_every_error_naming_step_and_field() -> None:
    spec = workflow(
        step("a", "ghost", prompt="{{ steps.b.output }}"),
        step("b", "b", agent="poet"),
        step("a"),
        step("c", prompt="{% if %}"),
        step("d", prompt="{{ steps.nope.output }}"),
    )
    found = {(e.step, e.field): e.message for e in errors_of(spec)}
    assert set(found) == {
        ("a", "id"),
        ("a", "depends_on"),
        ("a", "prompt"),
        ("b", "agent"),
        ("b", "depends_on"),
        ("c", "prompt"),
        ("d", "prompt"),
    }
    assert "duplicate" in found[("a", "id")]
    assert "'ghost'" in found[("a", "depends_on")]
    assert "add 'b' to depends_on" in found[("a", "prompt")]
    assert "'poet'" in found[("b", "agent")]
    assert "itself" in found[("b", "depends_on")]
    assert found[("c", "prompt")].startswith("line 1: ")
    assert "no step 'nope'" in found[("d", "prompt")]


def test_template_may_use_transitive_ancestors_only() -> None:
    spec = workflow(
        step("a"),
        step("b", "a"),
        step("c", "b", prompt="{{ steps.a.output }} {{ steps['b'].output }}"),
        step("d", prompt="{{ steps.a.output }}"),
    )
    assert errors_of(spec) == [
        SpecError(
            "d",
            "prompt",
            "the prompt uses steps.a but 'a' may not have run yet: add 'a' to depends_on",
        )
    ]


def test_cycle_is_named() -> None:
    spec = workflow(step("start"), step("a", "start", "c"), step("b", "a"), step("c", "b"))
    assert errors_of(spec) == [
        SpecError("a", "depends_on", "dependency cycle: a -> c -> b -> a"),
    ]


def test_two_step_cycle() -> None:
    errors = errors_of(workflow(step("a", "b"), step("b", "a")))
    assert [str(e) for e in errors] == ["step 'a', depends_on: dependency cycle: a -> b -> a"]


def test_invalid_str_joins_errors() -> None:
    invalid = WorkflowInvalid(
        [SpecError(None, "steps", "x"), SpecError("a", "agent", "unknown agent 'q'")]
    )
    assert str(invalid) == "steps: x; step 'a', agent: unknown agent 'q'"


# --- models --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "9lives", "has space", "x" * 65, "dot.ted"])
def test_step_id_pattern(bad: str) -> None:
    with pytest.raises(ValueError):
        StepSpec(id=bad, agent="a", prompt="p")


def test_step_id_pattern_accepts() -> None:
    assert StepSpec(id="_a-B_9" + "x" * 58, agent="a", prompt="p").depends_on == []


@pytest.mark.parametrize("bad", ["", "x" * 101, "semi;colon", "new\nline"])
def test_workflow_name_pattern(bad: str) -> None:
    with pytest.raises(ValueError):
        WorkflowSpec(name=bad, steps=[])


# --- parse_workflow_document ---------------------------------------------------------


def doc(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "flow",
        "steps": [{"id": "a", "agent": "writer", "prompt": "Hi {{ input.x }}"}],
    }
    base.update(overrides)
    return base


def parse_errors(body: bytes, content_type: str = "application/json") -> list[SpecError]:
    with pytest.raises(WorkflowInvalid) as info:
        parse_workflow_document(body, content_type)
    return info.value.errors


def test_parses_json_with_charset() -> None:
    spec = parse_workflow_document(json.dumps(doc()).encode(), "application/json; charset=utf-8")
    assert spec.steps[0].id == "a"


@pytest.mark.parametrize("ctype", ["application/yaml", "application/x-yaml", "Text/YAML"])
def test_parses_yaml(ctype: str) -> None:
    body = b"""
name: flow
steps:
  - id: a
    agent: writer
    prompt: |
      Hello {{ input.x }}
  - id: b
    agent: writer
    prompt: again
    depends_on: [a]
"""
    spec = parse_workflow_document(body, ctype)
    assert [s.id for s in spec.steps] == ["a", "b"]
    assert spec.steps[0].prompt == "Hello {{ input.x }}\n"
    assert spec.steps[1].depends_on == ["a"]


def test_invalid_json_names_line() -> None:
    [error] = parse_errors(b'{\n  "name": "x",\n  "steps": [,]\n}')
    assert error.field == "body"
    assert "line 3" in error.message


def test_invalid_yaml_names_line() -> None:
    [error] = parse_errors(b"name: x\nsteps:\n  - id: a\n   bad: [\n", "application/yaml")
    assert error.field == "body"
    assert "invalid YAML at line" in error.message


def test_yaml_refuses_python_tags() -> None:
    body = b"name: !!python/object/apply:os.system ['true']\nsteps: []\n"
    [error] = parse_errors(body, "application/yaml")
    assert error.field == "body"


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"null"])
def test_top_level_must_be_an_object(body: bytes) -> None:
    [error] = parse_errors(body)
    assert (error.step, error.field) == (None, "body")
    assert "object" in error.message


def test_unsupported_content_type() -> None:
    [error] = parse_errors(b"{}", "text/plain")
    assert "unsupported content type 'text/plain'" in error.message


def test_non_utf8_body() -> None:
    [error] = parse_errors(b"\xff\xfe{}")
    assert "UTF-8" in error.message


def test_schema_errors_name_step_id_or_index() -> None:
    body = doc(
        steps=[
            {"id": "a", "agent": "writer", "prompt": "p"},
            {"id": "b", "agent": "writer", "prompt": "p", "depends_on": ["a", 3]},
            {"id": "c", "agent": "", "prompt": "p", "colour": "red"},
            {"agent": "writer", "prompt": "p"},
            "not a step",
            {"id": "9x", "agent": "writer", "prompt": "p"},
        ],
        extra=True,
    )
    errors = parse_errors(json.dumps(body).encode())
    found = {(e.step, e.field): e.message for e in errors}
    assert set(found) == {
        ("b", "depends_on"),
        ("c", "agent"),
        ("c", "colour"),
        ("steps[3]", "id"),
        ("steps[4]", "steps"),
        ("9x", "id"),
        (None, "extra"),
    }
    assert found[("b", "depends_on")].startswith("item 1: ")
    assert found[("steps[3]", "id")] == "Field required"
    assert "starts with a letter" in found[("9x", "id")]


def test_missing_top_level_fields() -> None:
    errors = parse_errors(b'{"steps": 5}')
    assert {(e.step, e.field) for e in errors} == {(None, "name"), (None, "steps")}
