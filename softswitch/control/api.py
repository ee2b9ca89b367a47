"""aiohttp routes of the control API. Every request needs `Authorization: Bearer <token>`; the token is
written, readable by its owner only, to `server.control_token_file` when the switch starts."""

from __future__ import annotations

import dataclasses
import enum
import hmac
import json
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


def _plain(value: Any) -> Any:
    """Dataclasses, enums and mappings as JSON-ready values (enums by their value)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def _dumps(data: Any) -> str:
    return json.dumps(data, default=str)


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

    async def queues(_: web.Request) -> web.Response:
        snapshot = app.acd_snapshot()
        return web.json_response({"queues": [_plain(q) for q in snapshot.queues.values()]}, dumps=_dumps)

    async def acd_agents(_: web.Request) -> web.Response:
        snapshot = app.acd_snapshot()
        agents = []
        for agent in snapshot.agents.values():
            row = _plain(agent)
            for key in ("since", "wrap_up_until"):  # the engine's clock is monotonic; the API speaks epoch
                if isinstance(row.get(key), int | float):
                    row[key] = round(row[key] + app.wall_offset, 3)
            agents.append(row)
        return web.json_response({"agents": agents}, dumps=_dumps)

    async def agent_action(request: web.Request) -> web.Response:
        agent = request.match_info["agent"]
        action = request.match_info["action"].replace("-", "_")
        if action not in ("login", "logout", "pause", "resume", "end_wrap_up"):
            return web.json_response({"error": f"unknown action {action!r}"}, status=400)
        body: dict[str, Any] = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": "the body must be JSON"}, status=400)
            if not isinstance(body, dict):
                return web.json_response({"error": "the body must be a JSON object"}, status=400)
        ack = app.agent_command(agent, action, str(body.get("reason") or ""))
        status = 404 if ack == "unknown_agent" else 200
        return web.json_response({"ack": ack}, status=status)

    async def reload(_: web.Request) -> web.Response:
        ok, problems = app.reload()
        if not ok:
            return web.json_response(
                {"error": "the configuration has errors", "issues": problems}, status=400
            )
        return web.json_response(
            {"ok": True, "queues": len(app.settings.queues), "agents": len(app.settings.agents)}
        )

    web_app = web.Application(middlewares=[check_token])
    web_app.router.add_get("/api/calls", calls)
    web_app.router.add_get("/api/queues", queues)
    web_app.router.add_get("/api/acd/agents", acd_agents)
    web_app.router.add_post("/api/agents/{agent}/{action}", agent_action)
    web_app.router.add_post("/api/reload", reload)
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
