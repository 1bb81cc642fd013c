from __future__ import annotations

import pytest

from shared import templates
from shared.templates import (
    PromptRenderError,
    TemplateSyntaxProblem,
    check_template,
    render_prompt,
)


def render(source: str, **input: object) -> str:
    return render_prompt(source, input=dict(input), step_outputs={"extract": "EXTRACTED"})


def test_renders_input_and_step_outputs_both_syntaxes() -> None:
    out = render_prompt(
        "City: {{ input.city }} / {{ input['city'] }}\n"
        "{{ steps.extract.output }}|{{ steps['extract'].output }}\n",
        input={"city": "Lyon"},
        step_outputs={"extract": "facts"},
    )
    assert out == "City: Lyon / Lyon\nfacts|facts\n"


def test_keeps_trailing_newline_and_does_not_escape_html() -> None:
    assert render("<b>{{ input.x }}</b>\n", x="a & b") == "<b>a & b</b>\n"


def test_json_keys_win_over_dict_methods() -> None:
    # A run input with a field called "items" must not render dict.items.
    assert render("{{ input.items | join(',') }}", items=[1, 2]) == "1,2"
    assert render("{{ input.order.keys }}", order={"keys": "k"}) == "k"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ input.city }}", "'input' has no attribute 'city'"),
        ("{{ steps.missing.output }}", "there is no output of a step 'missing' in 'steps'"),
        ("{{ steps.extract.text }}", "'steps.extract' has no attribute 'text' (use .output)"),
        ("{{ nothing }}", "'nothing' is undefined"),
    ],
)
def test_undefined_names_are_errors_with_readable_messages(source: str, message: str) -> None:
    with pytest.raises(PromptRenderError) as info:
        render(source)
    assert str(info.value) == message
    assert "Traceback" not in str(info.value)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ input.__class__.__mro__[1].__subclasses__() }}",
        "{{ steps.extract._step_id }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_sandbox_blocks_private_attribute_access(source: str) -> None:
    with pytest.raises(PromptRenderError, match="not allowed in a prompt template"):
        render(source)


def test_sandbox_blocks_mutation() -> None:
    with pytest.raises(PromptRenderError, match="unsafe"):
        render("{{ input.tags.append('x') }}", tags=[])


@pytest.mark.parametrize(
    "source", ["{{ 'a' * 10000000 }}", "{{ [0] * 10000000 }}", "{{ 9 ** 99999 }}"]
)
def test_resource_bombs_are_refused(source: str) -> None:
    with pytest.raises(PromptRenderError, match="not allowed"):
        render(source)


def test_small_arithmetic_still_works() -> None:
    assert render("{{ 'ab' * 3 }} {{ 2 ** 10 }} {{ 1 ** 10000000 }}") == "ababab 1024 1"


def test_evaluation_errors_become_render_errors() -> None:
    with pytest.raises(PromptRenderError, match="division by zero"):
        render("{{ 1 / 0 }}")


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(PromptRenderError, match="^line 3: "):
        render("a\nb\n{% if %}")


def test_compiled_templates_are_cached() -> None:
    source = "cache me {{ input.x }}"
    before = templates._compile.cache_info().hits
    render(source, x=1)
    render(source, x=2)
    assert templates._compile.cache_info().hits >= before + 1


def test_check_template_finds_steps_and_input_fields() -> None:
    info = check_template(
        "{{ steps.a.output }} {{ steps['b'].output }} {{ input.city }} {{ input['zip'] }}"
        "{{ input.address.street }} {% for s in other.steps %}{{ s.x }}{% endfor %}"
        "{% if steps.c %}{{ steps[name].output }}{% endif %}"
    )
    assert info.referenced_steps == {"a", "b", "c"}
    assert info.input_fields == {"city", "zip", "address"}


def test_check_template_reports_syntax_error_line() -> None:
    with pytest.raises(TemplateSyntaxProblem) as info:
        check_template("line one\nline two {{ input.x \n")
    assert info.value.lineno == 2
    assert str(info.value).startswith("line 2: ")


def test_check_template_reports_unknown_filter() -> None:
    with pytest.raises(TemplateSyntaxProblem, match="No filter named 'shout'"):
        check_template("{{ input.x | shout }}")
