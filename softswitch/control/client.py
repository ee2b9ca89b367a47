"""The control API client the CLI uses (plain blocking HTTP: the CLI has no event loop to share)."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["ControlClient", "ControlError", "ServerDown"]


class ControlError(RuntimeError):
    """The server answered with an error."""


class ServerDown(ControlError):
    """Nothing is listening on the control address (the switch is not running)."""


class ControlClient:
    def __init__(self, host: str, port: int, token_file: Path, *, timeout: float = 5.0) -> None:
        self.base = f"http://{host}:{port}"
        self.token_file = token_file
        self.timeout = timeout

    def _token(self) -> str:
        try:
            return self.token_file.read_text().strip()
        except FileNotFoundError:
            raise ServerDown(f"no control token at {self.token_file} (is the switch running?)") from None

    def exchange(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> tuple[int, Any]:
        """(HTTP status, JSON body) of a request, error answers included (a refused reload's "issues" are in
        its body). Raises `ServerDown` when nothing answers."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self._token()}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read() or b"null")
            except ValueError:
                payload = None
            return exc.code, payload
        except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException) as exc:
            # HTTPException: the server went away in the middle of its answer
            raise ServerDown(f"the switch is not answering on {self.base} ({exc!r})") from None
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            raise ControlError(
                f"{method} {path}: the switch answered {status} with a body that is not JSON"
            ) from None

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The JSON body of a successful request; `ControlError` for an error answer."""
        status, payload = self.exchange(method, path, body)
        if status >= 400:
            detail = payload.get("error") if isinstance(payload, dict) else None
            raise ControlError(f"{status}: {detail or 'error'}")
        return payload

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, body or {})
