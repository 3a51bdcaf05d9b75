"""Common set-up for every service's FastAPI app: key ring, body-size limit, error shape."""
from __future__ import annotations

from fastapi import FastAPI, Request
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

    return app
