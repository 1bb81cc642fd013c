"""The names Flower shows for step messages: readable, short, and carrying no data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

from shared.queues import QueuedStep
from shared.task_labels import PART_MAX_CHARS, step_label
from worker import dispatch
from worker.celery_app import STEP_TASK


def test_a_label_names_workflow_step_and_agent() -> None:
    assert step_label(workflow="triage", step="extract", agent="fast") == "triage/extract (fast)"


def test_control_characters_are_replaced_and_long_names_cut() -> None:
    label = step_label(workflow="evil\r\nname\x1b[31m", step="s" * 200, agent="\t")
    assert label.isprintable()
    workflow, rest = label.split("/", 1)
    assert workflow == "evil??name?[31m"
    step = rest.split(" (")[0]
    assert len(step) == PART_MAX_CHARS and step.endswith("…")
    assert rest.endswith("(?)")  # an agent name made only of blanks still shows something


@pytest.fixture
def memory_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[Celery]:
    """dispatch sending real messages (kombu's serialisation) to an in-memory broker."""
    app = Celery("labels-test", broker="memory://")
    monkeypatch.setattr(dispatch, "get_celery", lambda: app)
    yield app
    app.close()


def _sent(app: Celery, queue: str) -> list[dict[str, Any]]:
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        messages = []
        while (message := channel.basic_get(queue)) is not None:
            messages.append({"headers": message.headers, "body": message.decode()})
        return messages


def test_a_label_becomes_the_shadow_name_and_the_message_keeps_only_the_id(
    memory_broker: Celery,
) -> None:
    sent = dispatch.enqueue_steps(
        [QueuedStep("step-1", "q", "wf/a (writer)"), QueuedStep("step-2", "q")]
    )
    assert sent == 2
    first, second = _sent(memory_broker, "q")
    assert first["headers"]["task"] == STEP_TASK  # the task that runs is unchanged
    assert first["headers"]["shadow"] == "ownkey.step wf/a (writer)"
    assert first["body"][0] == ["step-1"] and first["body"][1] == {}
    # No label (the reconciler's re-enqueue): the plain task name.
    assert second["headers"]["shadow"] is None and second["body"][0] == ["step-2"]
