"""Common set-up for every service's FastAPI app: key ring, body-size limit, error shape."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from runtime.auth import KeyRing

MAX_BODY_BYTES = 256 * 1024


def make_app(title: str, *, keyring: KeyRing | None = None, description: str = "") -> FastAPI:
    app = FastAPI(title=title, description=description, version="1")
    app.state.keyring = keyring or KeyRing.from_env()

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        # Refuse oversized bodies before parsing them.
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        return await call_next(request)

    app.add_exception_handler(RequestValidationError, validation_error)
    return app


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's default answer echoes each rejected input back; a card number sent where a
    # token belongs must never be repeated (nor logged by whoever records responses).
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "").removeprefix("Value error, "),
               "type": e.get("type", "")}
              for e in exc.errors()]
    summary = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in errors[:5])
    return JSONResponse({"detail": errors, "message": summary or "invalid request"}, status_code=422)


def _where(loc: list) -> str:
    parts = loc[1:] if loc[:1] == ["body"] else loc
    return ".".join(str(p) for p in parts) or "body"
