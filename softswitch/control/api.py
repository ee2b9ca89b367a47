"""aiohttp routes of the control API. Every request needs `Authorization: Bearer <token>`; the token is
written, readable by its owner only, to `server.control_token_file` when the switch starts."""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from softswitch.app import App

__all__ = ["start_control", "write_token"]

log = logging.getLogger("softswitch.control")


def write_token(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.replace(tmp, path)
    return token


def _routes(app: App, token: str) -> web.Application:
    @web.middleware
    async def check_token(request: web.Request, handler: Any) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return web.json_response({"error": "missing or wrong control token"}, status=401)
        return await handler(request)  # type: ignore[no-any-return]

    async def status(_: web.Request) -> web.Response:
        return web.json_response(app.status())

    async def registrations(_: web.Request) -> web.Response:
        return web.json_response({"registrations": app.registrations()})

    async def calls(_: web.Request) -> web.Response:
        return web.json_response({"calls": app.calls()})

    web_app = web.Application(middlewares=[check_token])
    web_app.router.add_get("/api/calls", calls)
    web_app.router.add_get("/api/status", status)
    web_app.router.add_get("/api/registrations", registrations)
    extra = getattr(app, "extra_routes", None)
    if extra is not None:
        extra(web_app)
    return web_app


async def start_control(app: App) -> web.AppRunner:
    server = app.settings.server
    token = write_token(Path(server.control_token_file))
    runner = web.AppRunner(_routes(app, token), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, str(server.control.host), server.control.port)
    await site.start()
    return runner
