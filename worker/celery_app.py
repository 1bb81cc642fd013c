"""The one Celery app. The API imports it only to send messages; tasks live in
`worker.tasks` and are named for what they do; a step message also carries a display
name (shared.task_labels), so Flower shows `ownkey.step triage/extract (extractor)`.

Messages carry a step id and nothing else (DESIGN.md, principle 1).
"""

from __future__ import annotations

from celery import Celery

from scheduler.beat_schedule import CONTROL_TASKS, RECONCILE_TASK, beat_schedule
from shared.config import Settings, get_settings
from shared.queues import CONTROL_QUEUE, DEFAULT_QUEUE, parse_queue_list
from worker.broker_transport import transport_for

__all__ = [
    "CONTROL_QUEUE",
    "DEFAULT_QUEUE",
    "RECONCILE_TASK",
    "STEP_TASK",
    "get_celery",
    "make_celery",
    "worker_queues",
]

# DEFAULT_QUEUE and CONTROL_QUEUE live in shared.queues (agents and keys name queues).
STEP_TASK = "ownkey.step"

# Redis redelivers an unacked message after this long. A step's time limit plus any
# countdown must stay well below it (see worker.retry_policy).
VISIBILITY_TIMEOUT_SECONDS = 3600


class BrokerNotConfigured(RuntimeError):
    pass


def make_celery(settings: Settings) -> Celery:
    if not settings.redis_url:
        raise BrokerNotConfigured(
            "OWNKEY_REDIS_URL is not set. Set it to your Redis (redis://host:6379/0), "
            "or run `ownkey up`, which starts a private Redis for you."
        )
    app = Celery(
        "ownkey",
        broker=settings.redis_url,
        include=[
            "worker.tasks",
            "worker.batch_tasks",
            "worker.webhook_tasks",
            "scheduler.tasks",
            # Not tasks: the signals that keep this worker's liveness entry in Redis.
            "worker.heartbeat",
        ],
    )
    transport = {
        "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
        "max_connections": max(64, settings.worker_concurrency * 2),
        "health_check_interval": 30,
    }
    app.conf.update(
        task_default_queue=DEFAULT_QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        # Task events cost a worker about 9% of its CPU. They are off until someone
        # watches: Flower switches them on (its enable_events broadcast) while it runs.
        worker_send_task_events=False,
        task_send_sent_event=False,
        broker_connection_retry_on_startup=True,
        broker_transport=transport_for(settings.redis_url),
        broker_transport_options=transport,
        broker_pool_limit=max(10, settings.worker_concurrency),
        beat_schedule=beat_schedule(settings),
        task_routes={task: {"queue": CONTROL_QUEUE} for task in CONTROL_TASKS},
        timezone="UTC",
    )
    return app


def worker_queues(requested: str) -> str:
    """The queues a worker consumes: the ones asked for, plus the control queue."""
    names = parse_queue_list(requested)
    return ",".join([*names, *([] if CONTROL_QUEUE in names else [CONTROL_QUEUE])])


_app: Celery | None = None


def get_celery() -> Celery:
    """The process's Celery app, built from the current settings on first use."""
    global _app
    if _app is None:
        _app = make_celery(get_settings())
    return _app


def reset_celery() -> None:
    global _app
    _app = None
