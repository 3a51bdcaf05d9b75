"""Domain errors: what a command refuses, said without HTTP.

Commands (services/*/commands.py) are called from HTTP, from event handlers and from workers;
they raise these, never HTTPException. Every FastAPI app made by runtime.http.make_app maps a
DomainError to its RFC 9457 problem answer (status, slug, the error's sentence as `detail`), so
api.py modules let them through; a handler catches them and decides (dead-letter, ignore).

A service may subclass one to give a case its own stable slug:

    class AlreadyShipped(Conflict):
        slug = "already-shipped"
"""
from __future__ import annotations

from http import HTTPStatus

PROBLEM_BASE = "https://salesbus.dev/problems/"

#: the slug of an error answer by status, when nothing more specific names it (docs/api.md)
SLUGS: dict[int, str] = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: "unprocessable",  # a service's own HTTPException(422, ...); new code raises Refused (409)
    429: "too-many-requests",
    500: "internal-error",
    502: "bad-gateway",
    503: "unavailable",
}
#: a request whose fields fail their schema (422 with `errors`): not the same as a business refusal
VALIDATION_SLUG = "validation-failed"


def slug_for(status: int) -> str:
    return SLUGS.get(status, f"http-{status}")


def title_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class DomainError(Exception):
    """A command's refusal. `str(error)` is the sentence the caller reads."""
    status = 422
    slug: str | None = None  # None: the status's slug

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail

    @property
    def problem_slug(self) -> str:
        return self.slug or slug_for(self.status)


class NotFound(DomainError):
    """No such thing, or not one the caller may see (reported alike, so ids cannot be probed)."""
    status = 404


class Conflict(DomainError):
    """The thing exists but is in a state where this does not apply (ship a cancelled order)."""
    status = 409


class Refused(DomainError):
    """A schema-valid request that a business rule refuses (a start date in the past, the same SKU
    twice). 409, not 422: 422 says the request breaks its documented schema (validation-failed),
    and a client that sent exactly what the OpenAPI allows must be able to tell the two apart."""
    status = 409
    slug = "refused"


class Forbidden(DomainError):
    """The caller is known but may not do this (a customer acting for another customer)."""
    status = 403
