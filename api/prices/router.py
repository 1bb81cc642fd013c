from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import select

from api.deps import Admin, ReadSessionDep, SessionDep, Viewer
from api.keys.schemas import ProviderName
from shared import audit
from shared.models import ModelPrice, utcnow
from shared.prices_store import forget_cached_prices
from shared.pricing import shipped_prices, shipped_prices_as_of

router = APIRouter(prefix="/prices", tags=["prices"])

PerMillion = Field(ge=0, le=100_000, max_digits=14, decimal_places=6)


class PriceSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_per_mtok: Decimal = PerMillion
    output_per_mtok: Decimal = PerMillion
    cached_input_per_mtok: Decimal | None = Field(
        default=None, ge=0, le=100_000, max_digits=14, decimal_places=6
    )


class PricePublic(BaseModel):
    provider: str
    model: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None
    source: str  # "override" (set by a user) or "shipped" (ownkey's table)


class PriceList(BaseModel):
    data: list[PricePublic]
    count: int
    shipped_as_of: str


@router.get("", response_model=PriceList)
def list_prices(session: ReadSessionDep, _: Viewer) -> PriceList:
    prices: dict[tuple[str, str], PricePublic] = {
        (provider, model): PricePublic(
            provider=provider,
            model=model,
            input_per_mtok=price.input,
            output_per_mtok=price.output,
            cached_input_per_mtok=price.cached_input,
            source="shipped",
        )
        for (provider, model), price in shipped_prices().items()
    }
    for row in session.exec(select(ModelPrice)).all():
        prices[(row.provider, row.model)] = PricePublic(
            provider=row.provider,
            model=row.model,
            input_per_mtok=Decimal(row.input_per_mtok),
            output_per_mtok=Decimal(row.output_per_mtok),
            cached_input_per_mtok=None
            if row.cached_input_per_mtok is None
            else Decimal(row.cached_input_per_mtok),
            source="override",
        )
    data = sorted(prices.values(), key=lambda p: (p.provider, p.model))
    return PriceList(data=data, count=len(data), shipped_as_of=shipped_prices_as_of())


@router.put("/{provider}/{model:path}", response_model=PricePublic)
def set_price(
    provider: ProviderName, model: str, body: PriceSet, session: SessionDep, who: Admin
) -> PricePublic:
    """Override (or add) the price of a model, in USD per million tokens."""
    row = session.exec(
        select(ModelPrice).where(ModelPrice.provider == provider, ModelPrice.model == model)
    ).first() or ModelPrice(provider=provider, model=model, input_per_mtok="0", output_per_mtok="0")
    row.input_per_mtok = str(body.input_per_mtok)
    row.output_per_mtok = str(body.output_per_mtok)
    row.cached_input_per_mtok = (
        None if body.cached_input_per_mtok is None else str(body.cached_input_per_mtok)
    )
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    audit.record(
        session,
        who.actor,
        "price.set",
        target_type="price",
        target_name=f"{provider}/{model}",
        detail=body.model_dump(mode="json"),
    )
    forget_cached_prices()
    return PricePublic(
        provider=provider,
        model=model,
        input_per_mtok=body.input_per_mtok,
        output_per_mtok=body.output_per_mtok,
        cached_input_per_mtok=body.cached_input_per_mtok,
        source="override",
    )
