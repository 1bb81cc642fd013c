"""Provider keys: stored encrypted, checked against their provider on request."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from api.errors import Conflict, NotFound
from api.keys.schemas import KeyCreate, KeyUpdate
from shared import audit
from shared.audit import Actor
from shared.crypto import key_hint
from shared.db import read_session, session_scope
from shared.keystore import get_secret_box
from shared.models import Agent, ProviderKey
from shared.providers import Provider, ProviderError, make_provider

CHECK_TIMEOUT_SECONDS = 15.0


def create_key(*, session: Session, body: KeyCreate, actor: Actor) -> ProviderKey:
    secret = body.api_key.get_secret_value().strip() if body.api_key else ""
    if session.exec(select(ProviderKey.id).where(ProviderKey.name == body.name)).first():
        raise Conflict(f"a key named '{body.name}' already exists")
    key = ProviderKey(
        provider=body.provider,
        name=body.name,
        base_url=body.resolved_base_url(),
        secret_ciphertext=get_secret_box().encrypt(secret) if secret else None,
        key_hint=key_hint(secret) if secret else "",
        rpm=body.rpm,
        tpm=body.tpm,
        queue=body.queue,
    )
    session.add(key)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a key named '{body.name}' already exists") from exc
    audit.record(
        session,
        actor,
        "key.created",
        target_type="key",
        target_id=key.id,
        target_name=key.name,
        detail={
            "provider": key.provider,
            "base_url": key.base_url,
            "hint": key.key_hint,
            "queue": key.queue,
        },
    )
    return key


def get_key(*, session: Session, key_id: str) -> ProviderKey:
    key = session.get(ProviderKey, key_id)
    if key is None:
        raise NotFound(f"no key with id '{key_id}'")
    return key


def load_key(key_id: str) -> ProviderKey:
    """Read a key in its own short transaction, for calls that then wait on a provider:
    no database transaction (on SQLite, the write lock) is held across the network."""
    with read_session() as session:
        key = get_key(session=session, key_id=key_id)
        session.expunge(key)
    return key


def list_keys(*, session: Session) -> list[ProviderKey]:
    return list(session.exec(select(ProviderKey).order_by(ProviderKey.name)).all())


def update_key(*, session: Session, key_id: str, body: KeyUpdate, actor: Actor) -> ProviderKey:
    """Change what was sent; a null limit clears it. Workers read the limits at each
    step, so a change holds from the next call on."""
    key = get_key(session=session, key_id=key_id)
    changes = body.model_dump(exclude_unset=True)
    new_name = changes.get("name")
    if new_name is not None and new_name != key.name:
        taken = session.exec(select(ProviderKey.id).where(ProviderKey.name == new_name)).first()
        if taken:
            raise Conflict(f"a key named '{new_name}' already exists")
    for field, value in changes.items():
        setattr(key, field, value)
    session.add(key)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a key named '{new_name}' already exists") from exc
    audit.record(
        session,
        actor,
        "key.updated",
        target_type="key",
        target_id=key.id,
        target_name=key.name,
        detail=changes,
    )
    return key


def delete_key(*, session: Session, key_id: str, actor: Actor) -> None:
    key = get_key(session=session, key_id=key_id)
    users = session.exec(select(Agent.name).where(Agent.key_id == key.id)).all()
    if users:
        raise Conflict(
            f"key '{key.name}' is used by agent(s) {', '.join(sorted(users))}; "
            "move them to another key first"
        )
    session.delete(key)
    audit.record(
        session, actor, "key.deleted", target_type="key", target_id=key.id, target_name=key.name
    )


@dataclass(frozen=True, slots=True)
class KeyCheck:
    ok: bool
    provider: str
    models: list[str]
    error: str | None = None


def test_key(key_id: str, actor: Actor) -> KeyCheck:
    """Ask the provider for its models with this key: ok, or the provider's own error
    (scrubbed of the secret). Recorded in the audit log either way."""
    key = load_key(key_id)
    with check_client() as client:
        try:
            result = KeyCheck(True, key.provider, sorted(provider_for(key, client).list_models()))
        except ProviderError as exc:
            result = KeyCheck(False, key.provider, [], str(exc))
    with session_scope() as session:
        audit.record(
            session,
            actor,
            "key.tested",
            target_type="key",
            target_id=key.id,
            target_name=key.name,
            detail={"ok": result.ok, "error": result.error},
        )
    return result


def provider_for(key: ProviderKey, client: httpx.Client) -> Provider:
    """The provider adapter for a key, with its secret decrypted for this call only."""
    secret = get_secret_box().decrypt(key.secret_ciphertext) if key.secret_ciphertext else None
    return make_provider(key.provider, base_url=key.base_url, api_key=secret, client=client)


def check_client() -> httpx.Client:
    return httpx.Client(timeout=CHECK_TIMEOUT_SECONDS, follow_redirects=False)
