"""Logging for every ownkey process: one root handler, text or JSON lines.

`configure_logging()` is called once by the CLI before any command runs; `ownkey api`
hands the same configuration to uvicorn (`log_config`) so its loggers, and its worker
processes, write through the same formatter; Celery is told to leave logging alone
(`worker_hijack_root_logger=False` and a `setup_logging` receiver in
worker.celery_app), so its loggers reach the root handler too.

JSON mode writes one object per line: time, level, logger, message, host, and the
step's context (run_id, step_id, provider, model) while a worker runs a step
(`log_context`). A traceback is one string field, so a line never breaks in two.
"""

from __future__ import annotations

import json
import logging
import logging.config
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "JsonFormatter",
    "configure_logging",
    "log_context",
    "logging_config",
]

LogFormat = Literal["json", "text"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# httpx and httpcore log every request line at INFO/DEBUG: noise at best (and a URL may
# carry a provider's query-string key). Alembic announces each of its plugins at INFO.
QUIET_LOGGERS = ("httpx", "httpcore", "hpack", "alembic.runtime.plugins")

# Celery's chatter below WARNING (see logging_config).
PER_TASK_LOGGERS = ("celery.beat", "celery.app.trace", "celery.worker.strategy")

_context: ContextVar[dict[str, str] | None] = ContextVar("ownkey_log_context", default=None)


@contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Add fields to every log line written in this context (thread or task), then
    remove them: a worker thread's next step starts clean."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record. Only the record's own fields and the context are
    written: a call's `extra=` is not copied, so nothing reaches the log by accident."""

    def __init__(self) -> None:
        super().__init__()
        self.host = socket.gethostname()

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "host": self.host,
        }
        context = _context.get()
        if context:
            line.update(context)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def logging_config(log_format: LogFormat, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` dictionary. Kept as data so that uvicorn can apply
    it in each of its worker processes."""
    formatter: dict[str, Any] = (
        {"()": "shared.log_setup.JsonFormatter"}
        if log_format == "json"
        else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"ownkey": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "ownkey",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's own handlers would bypass the formatter: route them to the root.
            **{
                name: {"handlers": [], "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
            **{name: {"level": "WARNING"} for name in QUIET_LOGGERS},
            # Unless debugging: beat's line per periodic send (a schedule tick every
            # 5 s), and Celery's two lines per task ("received", "succeeded"), which
            # name only a task id and cost a busy worker about 5% of its CPU. A step
            # logs one line of its own, with its ids, and Celery still logs failures.
            **(
                {}
                if level.upper() == "DEBUG"
                else {name: {"level": "WARNING"} for name in PER_TASK_LOGGERS}
            ),
        },
    }


def configure_logging(log_format: LogFormat, level: str) -> None:
    logging.config.dictConfig(logging_config(log_format, level))
    # Python's warnings (Celery's "running as root", deprecations) would otherwise be
    # multi-line text on stderr, beside the formatter.
    logging.captureWarnings(True)
