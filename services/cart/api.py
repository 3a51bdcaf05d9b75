"""The store's HTTP API: the catalog here, carts and checkout in carts.py / checkout.py."""
from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import Depends, FastAPI, Path, Query, Request, Response

from runtime.auth import Principal, authenticate, require
from runtime.http import make_app
from runtime.pages import Page, PageParams, page, page_params
from runtime.problems import Conflict, NotFound
from runtime.service import ServiceContext
from schemas import ProductChanged
from schemas.types import ID_BOUNDS, LINE_PATTERN, Money
from services.cart import carts, checkout, store
from services.cart.models import TEST_TOKENS, ProductIn, ProductOut

SKU_PATTERN = r"^[A-Z0-9][A-Z0-9\-]{1,39}$"
# Reading: bounded like any id (an unknown one is a 404). Creating: a well-formed SKU.
SkuPath = Annotated[str, Path(**ID_BOUNDS, description="catalog SKU, e.g. BULB-LED-9W")]
NewSkuPath = Annotated[str, Path(pattern=SKU_PATTERN, max_length=40, description=(
    "catalog SKU: 2-40 capital letters, digits and hyphens, starting with a letter or digit, e.g. BULB-LED-9W"))]


class CurrencyNotSold(Conflict):
    slug = "currency-not-sold"


def create_app(ctx: ServiceContext) -> FastAPI:
    app = make_app(ctx=ctx, title="salesbus cart", description=(
        "Catalog, carts and checkout of the online store. Every endpoint needs an API key (Authorization: "
        "Bearer ...). Errors are RFC 9457 problem+json; lists are pages (docs/api.md). "
        f"Currencies sold: {', '.join(sorted(ctx.settings.supported_currencies()))} (SALESBUS_CURRENCIES). "
        + TEST_TOKENS))
    _catalog_routes(app, ctx)
    app.include_router(carts.router(ctx))
    app.include_router(checkout.router(ctx))
    return app


def product_out(row: dict) -> ProductOut:
    return ProductOut(sku=row["sku"], name=row["name"], description=row["description"],
                      unit_price=Money(amount=row["unit_price"], currency=row["currency"].strip()),
                      active=row["active"], created_at=row["created_at"], updated_at=row["updated_at"])


def _catalog_routes(app: FastAPI, ctx: ServiceContext) -> None:
    @app.get("/products", response_model=Page[ProductOut], tags=["catalog"])
    def list_products(request: Request,
                      q: str | None = Query(None, max_length=100, pattern=LINE_PATTERN,
                                            description="search in SKU, name, description"),
                      active: bool | None = Query(None, description="staff only: filter on the active flag"),
                      params: PageParams = Depends(page_params),
                      principal: Principal = Depends(authenticate)):
        """Products, ordered by SKU. Customers see only products on sale."""
        if principal.role == "customer":
            active = True
        with ctx.pool.connection() as conn:
            rows, count = store.search_products(conn, q=q.strip() if q else None, active=active, limit=params.limit,
                                                offset=params.offset)
        return page(request, [product_out(r) for r in rows], params, count)

    @app.get("/products/{sku}", response_model=ProductOut, tags=["catalog"],
             responses={404: {"description": "no such product"}})
    def get_product(sku: SkuPath, principal: Principal = Depends(authenticate)) -> ProductOut:
        with ctx.pool.connection() as conn:
            row = store.get_product(conn, sku)
        if row is None:
            raise NotFound(f"no product with SKU {sku!r}")
        return product_out(row)

    @app.put("/products/{sku}", response_model=ProductOut, tags=["catalog"],
             responses={201: {"model": ProductOut, "description": "created"}, 200: {"description": "updated"},
                        409: {"description": "the store does not sell in this currency (currency-not-sold)"}})
    def put_product(sku: NewSkuPath, body: ProductIn, response: Response,
                    principal: Principal = Depends(require("operator"))) -> ProductOut:
        """Create or update a product; every real change is published as ProductChanged."""
        supported = ctx.settings.supported_currencies()
        if body.unit_price.currency not in supported:
            raise CurrencyNotSold(f"the store does not sell in {body.unit_price.currency} "
                                  f"(accepted: {', '.join(sorted(supported))})")
        price = body.unit_price.money().amount.quantize(Decimal("0.01"))
        fields = (body.name, body.description, price, body.unit_price.currency, body.active)
        with ctx.unit_of_work() as uow:
            now = uow.now()
            old = store.get_product(uow.conn, sku, lock=True)
            if old is None:
                row = store.insert_product(uow.conn, sku, *fields, now)
                response.status_code = 201
            elif (old["name"], old["description"], old["unit_price"], old["currency"].strip(), old["active"]) != fields:
                row = store.update_product(uow.conn, sku, *fields, now)
            else:
                return product_out(old)  # nothing changed: nothing to announce
            uow.emit(ProductChanged(sku=sku, name=row["name"], description=row["description"],
                                    unit_price=Money(amount=price, currency=body.unit_price.currency),
                                    active=row["active"], changed_at=now))
        return product_out(row)
