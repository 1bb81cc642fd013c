from __future__ import annotations

from fastapi import APIRouter, status

from api.budgets import service
from api.budgets.schemas import BudgetCreate, BudgetList, BudgetPublic, BudgetUpdate
from api.deps import Admin, ReadSessionDep, SessionDep, Viewer

router = APIRouter(prefix="/budgets", tags=["budgets"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=BudgetPublic)
def create_budget(body: BudgetCreate, session: SessionDep, who: Admin) -> BudgetPublic:
    """Cap the spend of the instance, a key or a workflow per month or custom window.
    Workers apply it within a few seconds; a step whose budget is spent does not call
    its provider, and its run ends `budget_exceeded`."""
    budget = service.create_budget(session=session, body=body, actor=who.actor)
    return service.to_public(session, [budget])[0]


@router.get("", response_model=BudgetList)
def list_budgets(session: ReadSessionDep, _: Viewer) -> BudgetList:
    data = service.to_public(session, service.list_budgets(session=session))
    return BudgetList(data=data, count=len(data))


@router.get("/{budget_id}", response_model=BudgetPublic)
def get_budget(budget_id: str, session: ReadSessionDep, _: Viewer) -> BudgetPublic:
    """The budget (by id or name), what its current window spent and what remains."""
    budget = service.get_budget(session=session, budget_id=budget_id)
    return service.to_public(session, [budget])[0]


@router.patch("/{budget_id}", response_model=BudgetPublic)
def update_budget(
    budget_id: str, body: BudgetUpdate, session: SessionDep, who: Admin
) -> BudgetPublic:
    budget = service.update_budget(session=session, budget_id=budget_id, body=body, actor=who.actor)
    return service.to_public(session, [budget])[0]


@router.delete("/{budget_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_budget(budget_id: str, session: SessionDep, who: Admin) -> None:
    service.delete_budget(session=session, budget_id=budget_id, actor=who.actor)
