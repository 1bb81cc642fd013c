from __future__ import annotations

from fastapi import APIRouter

from api.deps import Viewer
from api.errors import ServiceUnavailable
from api.workers.schemas import WorkerList, WorkerPublic
from api.workers.service import liveness

router = APIRouter(prefix="/workers", tags=["workers"])


@router.get("", response_model=WorkerList)
def list_workers(_: Viewer) -> WorkerList:
    """The workers alive now (a heartbeat in the last 30 seconds), with the queues each
    consumes. Cached for a few seconds."""
    workers = liveness.workers()
    if workers is None:
        raise ServiceUnavailable("Redis did not answer: the live workers are unknown")
    data = [WorkerPublic.model_validate(w, from_attributes=True) for w in workers]
    return WorkerList(data=data, count=len(data))
