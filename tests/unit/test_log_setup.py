"""The JSON log formatter: one parseable line per record, the step's context, no extras."""

from __future__ import annotations

import io
import json
import logging

from shared.log_setup import JsonFormatter, log_context, logging_config


def _emit(build: logging.LogRecord) -> dict[str, object]:
    line = JsonFormatter().format(build)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


def _record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("ownkey.test", logging.WARNING, __file__, 1, message, args, exc_info)


def test_a_record_becomes_one_json_object_with_the_standard_fields() -> None:
    line = _emit(_record("step %s done", "abc"))
    assert line["message"] == "step abc done"
    assert line["level"] == "WARNING" and line["logger"] == "ownkey.test"
    assert isinstance(line["time"], str) and line["time"].endswith("+00:00")
    assert line["host"]
    assert "run_id" not in line


def test_context_fields_are_added_inside_log_context_and_gone_after() -> None:
    with log_context(step_id="s1"), log_context(run_id="r1", provider="openai", model="m"):
        inside = _emit(_record("x"))
    after = _emit(_record("x"))
    assert (inside["step_id"], inside["run_id"], inside["provider"], inside["model"]) == (
        "s1",
        "r1",
        "openai",
        "m",
    )
    assert "step_id" not in after and "run_id" not in after


def test_an_exception_is_one_field_and_the_line_stays_one_line() -> None:
    line = _emit(_record("failed", exc=True))
    assert "ValueError: boom" in str(line["exception"])
    assert "Traceback" in str(line["exception"])


def test_extra_attributes_are_not_copied_into_the_line() -> None:
    record = _record("x")
    record.api_key = "sk-should-not-appear"
    assert "sk-should-not-appear" not in JsonFormatter().format(record)


def test_the_config_routes_uvicorn_and_celery_loggers_through_the_root_handler() -> None:
    config = logging_config("json", "info")
    assert config["root"] == {"level": "INFO", "handlers": ["stderr"]}
    assert config["loggers"]["uvicorn.error"] == {"handlers": [], "propagate": True}
    assert config["formatters"]["ownkey"] == {"()": "shared.log_setup.JsonFormatter"}
    assert "format" in logging_config("text", "debug")["formatters"]["ownkey"]


def test_configured_json_logging_writes_json_for_third_party_loggers(
    capsys: object,
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    celery_logger = logging.getLogger("celery.worker.strategy")
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    try:
        celery_logger.info("Task ownkey.step[%s] received", "t1")
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    line = json.loads(stream.getvalue())
    assert line["logger"] == "celery.worker.strategy" and "received" in line["message"]
