from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import Member, ReadSessionDep, SessionDep, Viewer
from api.webhooks import service
from api.webhooks.schemas import (
    DeliveryList,
    DeliveryPublic,
    DeliveryStatus,
    EventName,
    TargetType,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookPublic,
)
from shared.automation_models import WebhookDelivery, WebhookSubscription
from shared.db import read_session

router = APIRouter(tags=["webhooks"])

Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0)]


def _public(webhook: WebhookSubscription) -> WebhookPublic:
    return WebhookPublic.model_validate(webhook, from_attributes=True)


def _delivery(delivery: WebhookDelivery) -> DeliveryPublic:
    return DeliveryPublic.model_validate(
        {**delivery.model_dump(), "webhook_id": delivery.subscription_id}
    )


@router.post("/webhooks", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated)
def create_webhook(body: WebhookCreate, session: SessionDep, who: Member) -> WebhookCreated:
    """Call `url` on the target's events, signed with the secret in this answer: it is
    shown once, never again. A budget's webhook needs an admin."""
    webhook, secret = service.create_webhook(session=session, body=body, principal=who)
    return WebhookCreated(**_public(webhook).model_dump(), secret=secret)


@router.get("/webhooks", response_model=WebhookList)
def list_webhooks(
    session: ReadSessionDep,
    _: Viewer,
    target_type: Annotated[TargetType | None, Query()] = None,
    target_id: Annotated[str | None, Query(max_length=32)] = None,
) -> WebhookList:
    found = service.list_webhooks(session=session, target_type=target_type, target_id=target_id)
    return WebhookList(data=[_public(w) for w in found], count=len(found))


@router.get("/webhooks/{webhook_id}", response_model=WebhookPublic)
def get_webhook(webhook_id: str, session: ReadSessionDep, _: Viewer) -> WebhookPublic:
    return _public(service.get_webhook(session=session, webhook_id=webhook_id))


@router.delete("/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(webhook_id: str, session: SessionDep, who: Member) -> None:
    """Its pending deliveries are failed; past deliveries stay listed."""
    service.delete_webhook(session=session, webhook_id=webhook_id, principal=who)


@router.get("/webhooks/{webhook_id}/deliveries", response_model=DeliveryList)
def list_webhook_deliveries(
    webhook_id: str,
    session: ReadSessionDep,
    _: Viewer,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> DeliveryList:
    service.get_webhook(session=session, webhook_id=webhook_id)
    found, count = service.list_deliveries(
        session=session, webhook_id=webhook_id, status=status, limit=limit, offset=offset
    )
    return DeliveryList(data=[_delivery(d) for d in found], count=count)


@router.get("/webhook-deliveries", response_model=DeliveryList)
def list_deliveries(
    session: ReadSessionDep,
    _: Viewer,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    event: Annotated[EventName | None, Query()] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> DeliveryList:
    """Every webhook's deliveries, newest first: `?status=failed` for the ones to look at."""
    found, count = service.list_deliveries(
        session=session, status=status, event=event, limit=limit, offset=offset
    )
    return DeliveryList(data=[_delivery(d) for d in found], count=count)


@router.get("/webhook-deliveries/{delivery_id}", response_model=DeliveryPublic)
def get_delivery(delivery_id: str, session: ReadSessionDep, _: Viewer) -> DeliveryPublic:
    return _delivery(service.get_delivery(session=session, delivery_id=delivery_id))


@router.post(
    "/webhook-deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryPublic,
)
def redeliver(delivery_id: str, who: Member) -> DeliveryPublic:
    """Send a delivered or failed delivery again, from attempt 1 (409 while pending)."""
    service.redeliver(delivery_id=delivery_id, principal=who)
    with read_session() as session:
        return _delivery(service.get_delivery(session=session, delivery_id=delivery_id))
