from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import Admin, Member, ReadSessionDep, SessionDep, Viewer
from api.errors import BadGateway
from api.keys import service
from api.keys.schemas import (
    KeyCreate,
    KeyList,
    KeyPublic,
    KeyTestResult,
    KeyUpdate,
    ModelList,
)
from shared.providers import ProviderError

router = APIRouter(prefix="/keys", tags=["keys"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=KeyPublic)
def create_key(body: KeyCreate, session: SessionDep, who: Admin) -> KeyPublic:
    key = service.create_key(session=session, body=body, actor=who.actor)
    return KeyPublic.model_validate(key, from_attributes=True)


@router.get("", response_model=KeyList)
def list_keys(session: ReadSessionDep, _: Viewer) -> KeyList:
    keys = service.list_keys(session=session)
    data = [KeyPublic.model_validate(k, from_attributes=True) for k in keys]
    return KeyList(data=data, count=len(data))


@router.get("/{key_id}", response_model=KeyPublic)
def get_key(key_id: str, session: ReadSessionDep, _: Viewer) -> KeyPublic:
    key = service.get_key(session=session, key_id=key_id)
    return KeyPublic.model_validate(key, from_attributes=True)


@router.patch("/{key_id}", response_model=KeyPublic)
def update_key(key_id: str, body: KeyUpdate, session: SessionDep, who: Admin) -> KeyPublic:
    """Rename, move, or set or clear (null) the key's rpm/tpm limits and queue. The
    secret cannot be changed here: create a new key for a new secret. A new queue holds
    for runs submitted after the change; steps already planned keep theirs."""
    key = service.update_key(session=session, key_id=key_id, body=body, actor=who.actor)
    return KeyPublic.model_validate(key, from_attributes=True)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_key(key_id: str, session: SessionDep, who: Admin) -> None:
    service.delete_key(session=session, key_id=key_id, actor=who.actor)


@router.post("/{key_id}/test", response_model=KeyTestResult)
def test_key(key_id: str, who: Admin) -> KeyTestResult:
    """Check the key against its provider: ok, or the provider's own error."""
    check = service.test_key(key_id, who.actor)
    if not check.ok:
        return KeyTestResult(ok=False, provider=check.provider, error=check.error)
    return KeyTestResult(ok=True, provider=check.provider, models_count=len(check.models))


@router.get("/{key_id}/models", response_model=ModelList)
def list_models(key_id: str, _: Member) -> ModelList:
    """The provider's models for this key (members pick an agent's model from them)."""
    key = service.load_key(key_id)
    with service.check_client() as client:
        try:
            models = service.provider_for(key, client).list_models()
        except ProviderError as exc:
            raise BadGateway(f"could not list the models of {key.provider}: {exc}") from exc
    return ModelList(data=sorted(models), count=len(models))
