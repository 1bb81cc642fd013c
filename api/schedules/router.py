from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import Member, ReadSessionDep, SessionDep, Viewer
from api.schedules import service
from api.schedules.schemas import (
    FireList,
    ScheduleCreate,
    ScheduleDetail,
    ScheduleList,
    ScheduleUpdate,
)

router = APIRouter(prefix="/schedules", tags=["schedules"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ScheduleDetail)
def create_schedule(body: ScheduleCreate, session: SessionDep, who: Member) -> ScheduleDetail:
    """Run `workflow` with `input` (or a batch over `dataset`) at each fire time of
    `cron` in `timezone`. Beat picks it up at its next tick."""
    schedule = service.create_schedule(session=session, body=body, actor=who.actor)
    return service.detail(session, schedule)


@router.get("", response_model=ScheduleList)
def list_schedules(session: ReadSessionDep, _: Viewer) -> ScheduleList:
    data = [service.public(session, s) for s in service.list_schedules(session=session)]
    return ScheduleList(data=data, count=len(data))


@router.get("/{schedule_id}", response_model=ScheduleDetail)
def get_schedule(schedule_id: str, session: ReadSessionDep, _: Viewer) -> ScheduleDetail:
    """By id or name, with its next fire times and its last fires."""
    schedule = service.get_schedule(session=session, schedule_id=schedule_id)
    return service.detail(session, schedule)


@router.patch("/{schedule_id}", response_model=ScheduleDetail)
def update_schedule(
    schedule_id: str, body: ScheduleUpdate, session: SessionDep, who: Member
) -> ScheduleDetail:
    schedule = service.update_schedule(
        session=session, schedule_id=schedule_id, body=body, actor=who.actor
    )
    return service.detail(session, schedule)


@router.post("/{schedule_id}/pause", response_model=ScheduleDetail)
def pause_schedule(schedule_id: str, session: SessionDep, who: Member) -> ScheduleDetail:
    """No fire time comes while paused."""
    schedule = service.set_enabled(
        session=session, schedule_id=schedule_id, enabled=False, actor=who.actor
    )
    return service.detail(session, schedule)


@router.post("/{schedule_id}/resume", response_model=ScheduleDetail)
def resume_schedule(schedule_id: str, session: SessionDep, who: Member) -> ScheduleDetail:
    """Fires again from the next fire time; the ones during the pause are not run."""
    schedule = service.set_enabled(
        session=session, schedule_id=schedule_id, enabled=True, actor=who.actor
    )
    return service.detail(session, schedule)


@router.delete("/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_schedule(schedule_id: str, session: SessionDep, who: Member) -> None:
    """The schedule and its fire history; the runs and batches it started stay."""
    service.delete_schedule(session=session, schedule_id=schedule_id, actor=who.actor)


@router.get("/{schedule_id}/fires", response_model=FireList)
def list_fires(
    schedule_id: str,
    session: ReadSessionDep,
    _: Viewer,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> FireList:
    """Every fire time, newest first: the run or batch it started, or why it could not."""
    data, count = service.list_fires(
        session=session, schedule_id=schedule_id, limit=limit, offset=offset
    )
    return FireList(data=data, count=count)
