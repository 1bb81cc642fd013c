"""Which broker queue a step's message goes to.

An agent or a provider key may name a queue; a worker consumes the queues it is
started with (`ownkey worker --queues local-gpu`), so a step reaches only the servers
that can run it (a GPU box with its local Ollama, a worker inside a network that can
reach a private endpoint). The agent's queue wins over its key's; with neither, the
step goes to the default queue, which every worker consumes unless told otherwise.

The queue is resolved once, when the run is planned, and stored on the step: a later
change to the agent or key moves the runs submitted after it, not steps already
planned (the same rule as every other agent setting). Every enqueue path then reads
the queue from the step it already has in hand, without a join.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import AfterValidator, Field

__all__ = [
    "CONTROL_QUEUE",
    "DEFAULT_QUEUE",
    "MAX_QUEUE_NAME",
    "QueueName",
    "QueuedStep",
    "check_queue_name",
    "parse_queue_list",
    "resolve_queue",
]

DEFAULT_QUEUE = "ownkey"
# Beat's periodic tasks (reconcile, schedules, webhook retries, batch releases) go to
# their own queue, which every worker also consumes: a backlog of thousands of steps on
# the default queue must not delay a schedule's fire until its tick has expired.
CONTROL_QUEUE = "ownkey.control"
MAX_QUEUE_NAME = 64
_QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True, slots=True, order=True)
class QueuedStep:
    """A step id with the queue its message goes to, and what Flower calls the message
    (shared.task_labels; empty: the plain task name). The label is presentation only:
    two QueuedSteps with the same id and queue are equal."""

    step_id: str
    queue: str
    label: str = field(default="", compare=False)


def parse_queue_list(text: str) -> list[str]:
    """The names in a comma-separated list (`--queues`, OWNKEY_WORKER_QUEUES)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def check_queue_name(value: str) -> str:
    """The name, trimmed, if a worker can be told to consume it; else ValueError."""
    name = value.strip()
    if name == CONTROL_QUEUE:
        raise ValueError(
            f"'{CONTROL_QUEUE}' is reserved for ownkey's periodic tasks; "
            "choose another queue name, e.g. 'local-gpu'"
        )
    if not _QUEUE_NAME.fullmatch(name):
        raise ValueError(
            f"queue must be 1 to {MAX_QUEUE_NAME} characters: lower-case letters, digits, "
            "'.', '_' and '-', starting with a letter or digit (e.g. 'local-gpu')"
        )
    return name


def resolve_queue(agent_queue: str | None, key_queue: str | None) -> str:
    """The agent's queue, else its key's, else the default queue."""
    return agent_queue or key_queue or DEFAULT_QUEUE


QUEUE_DESCRIPTION = (
    "broker queue for this one's steps (only workers started with --queues naming it run "
    "them); null: the key's queue (for an agent), else the default queue 'ownkey'"
)
# For request schemas: a queue name as sent, checked and trimmed.
QueueName = Annotated[
    str, Field(max_length=200, description=QUEUE_DESCRIPTION), AfterValidator(check_queue_name)
]
