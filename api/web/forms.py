"""Turning a schema's or a service's refusal into messages shown next to form fields.

A page builds the API's own pydantic schema from the form and calls the same service
as the API, so a form and the API accept and refuse exactly the same things; only the
way the refusal is shown differs: {field name: message}, "_form" for the page as a whole.
"""

from __future__ import annotations

from collections.abc import Collection

from pydantic import ValidationError

from api.errors import ApiError, Unprocessable

FORM = "_form"


def validation_errors(exc: ValidationError, fields: Collection[str]) -> dict[str, str]:
    """One message per field. A whole-model check ("api_key is required for …") has no
    location: it goes to the first field its message names, else to the form."""
    errors: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        loc = error["loc"]
        field = str(loc[0]) if loc else _named_in(message, fields)
        errors.setdefault(field if field in fields else FORM, message)
    return errors


def api_errors(
    exc: ApiError, fields: Collection[str], *, conflict_field: str = FORM
) -> dict[str, str]:
    """A service's 422 names its fields; a 409 (a name taken) belongs to `conflict_field`."""
    if isinstance(exc, Unprocessable) and isinstance(exc.detail, list):
        errors: dict[str, str] = {}
        for error in exc.detail:
            field = str(error["loc"][-1])
            errors.setdefault(field if field in fields else FORM, str(error["msg"]))
        return errors
    if exc.status_code == 409:
        return {conflict_field: exc.message}
    return {FORM: exc.message}


def _named_in(message: str, fields: Collection[str]) -> str:
    named = [(message.find(f), f) for f in fields if f in message]
    return min(named)[1] if named else FORM
