"""Which steps have a message waiting in a broker queue right now.

With Celery's Redis transport a message waits in its queue's list until a worker takes
it; from then until acknowledged it sits in the `unacked` hash. Only the lists count
here: a worker takes no more messages than it has threads (prefetch multiplier 1) and
claims each at once, so a step still queued in SQL long after its message left the
list was taken by a worker that died (its unacked copy comes back only after the
visibility timeout, an hour). A step queued in SQL whose id is in no list has lost its
message (also after a Redis restart without persistence, or an enqueue that failed
after the commit): the reconciler sends it again. A duplicate is harmless.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import redis

from worker.celery_app import STEP_TASK

_STEP_ID = re.compile(r"[0-9a-f]{32}")


def _step_ids_of(raw: bytes | str) -> set[str]:
    try:
        message = json.loads(raw)
    except ValueError:
        return set()
    headers = (message.get("headers") or {}) if isinstance(message, dict) else {}
    if headers.get("task") != STEP_TASK:
        return set()
    return set(_STEP_ID.findall(str(headers.get("argsrepr", ""))))


def step_ids_in_broker(client: redis.Redis, queues: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for queue in queues:
        for raw in client.lrange(queue, 0, -1):
            found |= _step_ids_of(raw)
    return found
