"""The one shape of every list endpoint (docs/api.md): offset pages with a `next` link.

    GET /things?limit=50&offset=0  ->  {"items": [...], "limit": 50, "offset": 0, "total": 123,
                                        "next": "/things?limit=50&offset=50"}

Offsets rather than cursors: every list here is small enough per filter (a customer's orders, a
day's shipments, a catalogue) that a COUNT and OFFSET are cheap, and a clerk's "page 3" link is
stable to share. `next` is a relative URL keeping every other query parameter, null on the last page.
"""
from __future__ import annotations

from typing import Generic, Sequence, TypeVar

from fastapi import Query, Request
from pydantic import BaseModel, Field

T = TypeVar("T")

MAX_LIMIT = 200       # rows per page: a page stays well under the 256 KiB body limit of a client
MAX_OFFSET = 1_000_000


class Page(BaseModel, Generic[T]):
    items: list[T] = Field(description="this page's items, in the endpoint's documented order")
    limit: int = Field(ge=1, le=MAX_LIMIT, description="the page size asked for")
    offset: int = Field(ge=0, le=MAX_OFFSET, description="how many items come before this page")
    total: int = Field(ge=0, description="how many items match, over every page")
    next: str | None = Field(description="relative URL of the next page (same filters), null on the last page")


class PageParams(BaseModel):
    limit: int
    offset: int


def page_params(limit: int = Query(50, ge=1, le=MAX_LIMIT, description="items per page"),
                offset: int = Query(0, ge=0, le=MAX_OFFSET, description="items to skip")) -> PageParams:
    """A FastAPI dependency: `params: PageParams = Depends(page_params)`."""
    return PageParams(limit=limit, offset=offset)


def page(request: Request, items: Sequence[T], params: PageParams, total: int) -> dict:
    """The page answer; `next` keeps the request's other query parameters."""
    end = params.offset + len(items)
    more = end < total and end < MAX_OFFSET and len(items) > 0
    nxt = None
    if more:  # relative: the service may sit behind a proxy with another host name
        url = request.url.include_query_params(limit=params.limit, offset=end)
        nxt = f"{url.path}?{url.query}"
    return {"items": list(items), "limit": params.limit, "offset": params.offset, "total": total, "next": nxt}
