"""Catalog records, as the pages show them."""

from __future__ import annotations

from typing import ClassVar

from litestar import Controller, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from composer.api.schemas import ProductOut
from composer.api.state import Api


class ProductController(Controller):
    tags: ClassVar[list[str]] = ["catalog"]

    @get("/v1/products/{product_id:str}", summary="One product", raises=[NotFoundException])
    async def product(self, product_id: FromPath[str], api: Api) -> ProductOut:
        services, pages = api.require()
        catalog = services.retriever.catalog
        i = catalog.index.get(product_id)
        # Products ingested after start-up are in the store, not yet in the loaded catalog.
        p = catalog.products[i] if i is not None else None
        if p is None and len(product_id) <= 128:
            p = await pages.in_thread(services.store.product, product_id)
        if p is None:
            raise NotFoundException(detail=f"unknown product id '{product_id[:128]}'")
        return ProductOut(
            product_id=p.product_id,
            title=p.title,
            categories=list(p.categories),
            price=p.price,
            in_stock=p.in_stock,
            year=p.year,
            description=p.description,
            image_url=p.image_url,
            url=p.url,
        )
