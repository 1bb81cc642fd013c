"""Webhooks: subscriptions whose signing secret is stored encrypted and shown once, and
their deliveries.

Members manage the webhooks of workflows and batches; a budget's webhook tells how
much is being spent, so, like budgets themselves, it is an admin's.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlmodel import Session, col, func, select

from api.deps import Principal
from api.errors import Conflict, Forbidden, NotFound, Unprocessable, field_error
from api.webhooks.schemas import WebhookCreate
from api.workflows import service as workflows
from shared import audit, webhook_store, webhooks
from shared.automation_models import (
    Batch,
    BatchStatus,
    Budget,
    WebhookDelivery,
    WebhookSubscription,
)
from shared.db import session_scope
from shared.keystore import get_secret_box
from shared.models import Role, utcnow
from shared.webhook_signing import new_secret

NEEDED_ROLE = {"workflow": Role.member, "batch": Role.member, "budget": Role.admin}


def _require_role(principal: Principal, target_type: str) -> None:
    needed = NEEDED_ROLE[target_type]
    if not principal.may(needed):
        raise Forbidden(
            f"your role ({principal.role}) cannot do this; a {target_type}'s webhooks "
            f"need {needed} or above"
        )


def _shown_url(url: str) -> str:
    """The URL without its query, for the audit log: a query may hold the receiver's token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _resolve_target(session: Session, target_type: str, target: str) -> str:
    """The id of the workflow, batch or budget named by id or name; 422 if there is none."""
    if target_type == "workflow":
        workflow = workflows.find_workflow(session, target)
        if workflow is None:
            raise Unprocessable([field_error("target", f"no workflow with id or name '{target}'")])
        return workflow.id
    if target_type == "budget":
        budget = (
            session.get(Budget, target)
            or session.exec(select(Budget).where(Budget.name == target)).first()
        )
        if budget is None:
            raise Unprocessable([field_error("target", f"no budget with id or name '{target}'")])
        return budget.id
    return _resolve_batch(session, target).id


def _resolve_batch(session: Session, target: str) -> Batch:
    batch = session.get(Batch, target)
    if batch is None:
        named = session.exec(select(Batch).where(Batch.name == target).limit(2)).all()
        if len(named) > 1:
            message = f"several batches are named '{target}'; give the batch's id"
            raise Unprocessable([field_error("target", message)])
        batch = named[0] if named else None
    if batch is None:
        raise Unprocessable([field_error("target", f"no batch with id or name '{target}'")])
    if batch.status != BatchStatus.running:
        raise Conflict(
            f"batch '{target}' has already finished ({batch.status}): its webhook would "
            "never be called"
        )
    return batch


def create_webhook(
    *, session: Session, body: WebhookCreate, principal: Principal
) -> tuple[WebhookSubscription, str]:
    """Store the subscription with a new secret, encrypted; returns the secret in clear
    for the one answer that shows it."""
    _require_role(principal, body.target_type)
    target_id = _resolve_target(session, body.target_type, body.target)
    secret = new_secret()
    webhook = WebhookSubscription(
        target_type=body.target_type,
        target_id=target_id,
        url=body.url,
        secret_ciphertext=get_secret_box().encrypt(secret),
    )
    session.add(webhook)
    session.flush()
    audit.record(
        session,
        principal.actor,
        "webhook.created",
        target_type="webhook",
        target_id=webhook.id,
        detail={
            "target_type": webhook.target_type,
            "target_id": webhook.target_id,
            "url": _shown_url(webhook.url),
        },
    )
    webhooks.forget_subscribers()
    return webhook, secret


def list_webhooks(
    *, session: Session, target_type: str | None, target_id: str | None
) -> list[WebhookSubscription]:
    query = select(WebhookSubscription)
    if target_type:
        query = query.where(WebhookSubscription.target_type == target_type)
    if target_id:
        query = query.where(WebhookSubscription.target_id == target_id)
    return list(session.exec(query.order_by(col(WebhookSubscription.created_at))).all())


def get_webhook(*, session: Session, webhook_id: str) -> WebhookSubscription:
    webhook = session.get(WebhookSubscription, webhook_id)
    if webhook is None:
        raise NotFound(f"no webhook with id '{webhook_id}'")
    return webhook


def delete_webhook(*, session: Session, webhook_id: str, principal: Principal) -> None:
    """Delete it; its deliveries stay visible, and those still pending are failed."""
    webhook = get_webhook(session=session, webhook_id=webhook_id)
    _require_role(principal, webhook.target_type)
    webhook_store.fail_pending(session, webhook.id, reason="the webhook was deleted")
    session.delete(webhook)
    audit.record(
        session,
        principal.actor,
        "webhook.deleted",
        target_type="webhook",
        target_id=webhook.id,
        detail={"target_type": webhook.target_type, "target_id": webhook.target_id},
    )
    webhooks.forget_subscribers()


def list_deliveries(
    *,
    session: Session,
    webhook_id: str | None = None,
    status: str | None = None,
    event: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[WebhookDelivery], int]:
    """Newest first."""
    query = select(WebhookDelivery)
    if webhook_id is not None:
        query = query.where(WebhookDelivery.subscription_id == webhook_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if event is not None:
        query = query.where(WebhookDelivery.event == event)
    count = session.exec(select(func.count()).select_from(query.subquery())).one()
    newest_first = query.order_by(
        col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id).desc()
    )
    return list(session.exec(newest_first.limit(limit).offset(offset)).all()), count


def get_delivery(*, session: Session, delivery_id: str) -> WebhookDelivery:
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise NotFound(f"no webhook delivery with id '{delivery_id}'")
    return delivery


def redeliver(*, delivery_id: str, principal: Principal) -> None:
    """Start a delivered or failed delivery over: pending, attempts from 1, sent now."""
    with session_scope() as session:
        delivery = get_delivery(session=session, delivery_id=delivery_id)
        webhook = (
            session.get(WebhookSubscription, delivery.subscription_id)
            if delivery.subscription_id
            else None
        )
        if webhook is None:
            raise Conflict(f"delivery '{delivery_id}' cannot be sent: its webhook was deleted")
        _require_role(principal, webhook.target_type)
        attempt = webhook_store.reopen(session.connection(), delivery_id, now=utcnow())
        if attempt is None:
            raise Conflict(
                f"delivery '{delivery_id}' is still pending: it is being tried "
                "(see next_attempt_at)"
            )
        audit.record(
            session,
            principal.actor,
            "webhook.redelivered",
            target_type="webhook",
            target_id=webhook.id,
            detail={"delivery_id": delivery_id, "event": delivery.event},
        )
    webhooks.enqueue_attempts([attempt])
