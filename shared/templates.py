"""Prompt templates: sandboxed Jinja2, rendered by the worker for every step.

A template sees two names:

* ``input``: the run input (a JSON object), e.g. ``{{ input.city }}``;
* ``steps``: the outputs of earlier steps, ``{{ steps.extract.output }}`` or
  ``{{ steps["extract"].output }}``.

Templates are written by users, so they run in Jinja2's immutable sandbox: no
attribute access to dunder/private names (``''.__class__`` raises), no mutating
methods on lists and dicts, bounded ``range``, and (added here) bounded ``*`` and
``**`` so a prompt cannot ask the worker for a gigabyte string. Undefined names
fail loudly (``StrictUndefined``): a typo in a prompt is an error, not an empty
string sent to a paid model.

Compiled templates are cached by source text because the same workflow prompt is
rendered once per step per run.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = [
    "PromptRenderError",
    "TemplateInfo",
    "TemplateSyntaxProblem",
    "check_template",
    "render_prompt",
]

# Largest string/list a template may build with ``*`` (characters or items).
MAX_REPEAT_LENGTH = 1_000_000
# Largest integer (in bits) a template may build with ``**``.
MAX_POWER_BITS = 100_000
_TEMPLATE_CACHE_SIZE = 1024


class PromptRenderError(ValueError):
    """A prompt could not be rendered; the message is meant for the user."""


class TemplateSyntaxProblem(ValueError):
    """A prompt template does not parse; ``lineno`` is 1-based."""

    def __init__(self, message: str, lineno: int | None) -> None:
        super().__init__(message if lineno is None else f"line {lineno}: {message}")
        self.message = message
        self.lineno = lineno


@dataclass(frozen=True)
class TemplateInfo:
    """What a template reads, found statically from its syntax tree.

    Only literal accesses are found (``steps.x``, ``steps['x']``); a dynamic
    ``steps[name]`` cannot be known before the run.
    """

    referenced_steps: set[str] = field(default_factory=set)
    input_fields: set[str] = field(default_factory=set)


class _RunInput(dict[str, Any]):
    """The run input; its own type lets error messages call it ``input``."""


class _Steps(dict[str, "_StepResult"]):
    """The ``steps`` namespace; its own type lets error messages call it ``steps``."""


class _StepResult:
    __slots__ = ("_step_id", "output")

    def __init__(self, step_id: str, output: str) -> None:
        self._step_id = step_id  # leading underscore: unreachable from the sandbox
        self.output = output


class _PromptUndefined(StrictUndefined):
    """StrictUndefined whose messages name ``input`` / ``steps`` instead of ``dict object``."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        obj = self._undefined_obj
        name = self._undefined_name
        if self._undefined_hint is None and name is not None:
            if isinstance(obj, _RunInput):
                return f"'input' has no attribute {name!r}"
            if isinstance(obj, _Steps):
                return f"there is no output of a step {name!r} in 'steps'"
            if isinstance(obj, _StepResult):
                return f"'steps.{obj._step_id}' has no attribute {name!r} (use .output)"
        message: str = super()._undefined_message
        return message


class _PromptEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with keys before methods and limits on ``*`` and ``**``."""

    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Prompt data is JSON: `input.items` must be the "items" field, not dict.items.
        # (Jinja2 tries the attribute first; a dict value is plain data, safe to return.)
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        problem = _oversized_binop(operator, left, right)
        if problem is not None:
            raise SecurityError(problem)
        return super().call_binop(context, operator, left, right)


def _oversized_binop(operator: str, left: Any, right: Any) -> str | None:
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            if (
                isinstance(seq, str | list | tuple)
                and isinstance(count, int)
                and len(seq) * count > MAX_REPEAT_LENGTH
            ):
                return f"repetition would build more than {MAX_REPEAT_LENGTH} items"
    if (
        operator == "**"
        and isinstance(left, int)
        and isinstance(right, int)
        and abs(left) > 1
        and left.bit_length() * abs(right) > MAX_POWER_BITS
    ):
        return f"power larger than {MAX_POWER_BITS} bits"
    return None


_env = _PromptEnvironment(
    undefined=_PromptUndefined,
    autoescape=False,
    keep_trailing_newline=True,
)


@functools.lru_cache(maxsize=_TEMPLATE_CACHE_SIZE)
def _compile(source: str) -> Template:
    # lru_cache does not cache exceptions, so a bad template is re-parsed (and
    # re-reported) each time, which is what we want.
    return _env.from_string(source)


def _syntax_problem(exc: TemplateSyntaxError) -> TemplateSyntaxProblem:
    return TemplateSyntaxProblem(exc.message or "invalid template", exc.lineno)


def render_prompt(template: str, *, input: dict[str, Any], step_outputs: dict[str, str]) -> str:
    """Render a step's prompt from the run input and the outputs of earlier steps.

    Raises PromptRenderError with a one-line, user-readable message for any
    template problem (undefined name, sandbox violation, syntax error, error
    while evaluating an expression).
    """
    try:
        compiled = _compile(template)
    except TemplateSyntaxError as exc:
        raise PromptRenderError(str(_syntax_problem(exc))) from None
    steps = _Steps({step_id: _StepResult(step_id, out) for step_id, out in step_outputs.items()})
    try:
        return compiled.render(input=_RunInput(input), steps=steps)
    except SecurityError as exc:
        raise PromptRenderError(f"not allowed in a prompt template: {exc}") from None
    except TemplateError as exc:
        raise PromptRenderError(exc.message or type(exc).__name__) from None
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
        # Evaluation errors inside an expression, e.g. {{ 1 / 0 }} or {{ input.n + "x" }}.
        raise PromptRenderError(f"error in template expression: {exc}") from None


def _literal_key(node: nodes.Getattr | nodes.Getitem) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    arg = node.arg
    if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
        return arg.value
    return None


def _accesses_of(tree: nodes.Template, name: str) -> Iterator[str]:
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        target = node.node
        if isinstance(target, nodes.Name) and target.name == name and target.ctx == "load":
            key = _literal_key(node)
            if key is not None:
                yield key


def check_template(template: str) -> TemplateInfo:
    """Check that a template compiles and list the steps and input fields it reads.

    Raises TemplateSyntaxProblem (with the line number) when it does not compile;
    this includes unknown filters and tests, which Jinja2 reports at compile time.
    """
    try:
        _compile(template)
        tree = _env.parse(template)
    except TemplateSyntaxError as exc:
        raise _syntax_problem(exc) from None
    return TemplateInfo(
        referenced_steps=set(_accesses_of(tree, "steps")),
        input_fields=set(_accesses_of(tree, "input")),
    )
