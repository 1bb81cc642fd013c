from __future__ import annotations

from fastapi import APIRouter, status

from api.agents import service
from api.agents.schemas import AgentCreate, AgentList, AgentPublic, AgentUpdate
from api.deps import Member, ReadSessionDep, SessionDep, Viewer

router = APIRouter(prefix="/agents", tags=["agents"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AgentPublic)
def create_agent(body: AgentCreate, session: SessionDep, who: Member) -> AgentPublic:
    agent = service.create_agent(session=session, body=body, actor=who.actor)
    return service.public(session, agent)


@router.get("", response_model=AgentList)
def list_agents(session: ReadSessionDep, _: Viewer) -> AgentList:
    data = [service.to_public(a, k) for a, k in service.list_agents(session=session)]
    return AgentList(data=data, count=len(data))


@router.get("/{agent_id}", response_model=AgentPublic)
def get_agent(agent_id: str, session: ReadSessionDep, _: Viewer) -> AgentPublic:
    return service.public(session, service.get_agent(session=session, agent_id=agent_id))


@router.patch("/{agent_id}", response_model=AgentPublic)
def update_agent(agent_id: str, body: AgentUpdate, session: SessionDep, who: Member) -> AgentPublic:
    agent = service.update_agent(session=session, agent_id=agent_id, body=body, actor=who.actor)
    return service.public(session, agent)


@router.delete("/{agent_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_agent(agent_id: str, session: SessionDep, who: Member) -> None:
    service.delete_agent(session=session, agent_id=agent_id, actor=who.actor)
