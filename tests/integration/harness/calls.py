"""Helpers for call tests against our switch: live calls, call detail records, contacts for sipp agents.

* `live_calls(server)`: the control API's `/api/calls` list (what `softswitch calls --json` prints).
* `wait_for(server, predicate, timeout, what)`: re-check a condition whenever the switch logs a line (and
  at least every 100 ms) until it holds; fail saying `what` was awaited and the server log's tail.
* `wait_no_calls(server, ...)`: the leak check: no live call is left (optionally: none of `ids`).
* `cdr(server, call_id)` / `cdr_legs(server, call_id)`: rows of `cdrs` / `cdr_legs` in the switch's
  SQLite file, waited for (a call's rows are written by the store's writer thread after `call_ended`).
* `register_contact(server, user, password, port)`: REGISTER with digest from a given local UDP port (the
  port a sipp UAS then listens on), so calls to the user's extension reach that sipp.
* `sdp_offer(port)`: a minimal PCMU + telephone-event offer for raw INVITEs.

Times are the switch's: `cdrs.*_at` are UNIX epoch seconds.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any

from .rawsip import SipClient, SipResponse
from .server import SoftswitchServer

__all__ = [
    "cdr",
    "cdr_legs",
    "live_calls",
    "register_contact",
    "sdp_offer",
    "wait_for",
    "wait_no_calls",
]


def live_calls(server: SoftswitchServer) -> list[dict[str, Any]]:
    """The calls up right now, from the control API (`GET /api/calls`)."""
    return list(server.api("/api/calls")["calls"])


def wait_for(
    server: SoftswitchServer,
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
) -> Any:
    """Return the first truthy `predicate()`; re-checked on every server log line (and every 100 ms)."""
    deadline = time.monotonic() + timeout
    cond = server._log_cond
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{server.log_tail(30)}")
        with cond:
            cond.wait(min(remaining, 0.1))


def wait_no_calls(
    server: SoftswitchServer, *, ids: Iterable[str] | None = None, timeout: float = 5.0
) -> None:
    """Wait until the switch has no live call (or none of `ids`); fail listing what is left."""
    wanted = None if ids is None else set(ids)
    left: list[dict[str, Any]] = []

    def clear() -> bool:
        nonlocal left
        calls = live_calls(server)
        left = calls if wanted is None else [c for c in calls if c["id"] in wanted]
        return not left

    try:
        wait_for(server, clear, timeout, "no live calls")
    except AssertionError as exc:
        raise AssertionError(f"calls left on the switch after {timeout} s: {left}\n{exc}") from None


def _rows(server: SoftswitchServer, query: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    if not server.db_path.exists():
        return []
    db = sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True, timeout=2.0)
    try:
        db.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in db.execute(query, args)]
        except sqlite3.OperationalError:  # the table does not exist yet (migrations still running)
            return []
    finally:
        db.close()


def cdr(server: SoftswitchServer, call_id: str, *, timeout: float = 5.0) -> dict[str, Any]:
    """The `cdrs` row of `call_id`, waited for up to `timeout` seconds."""
    rows = wait_for(
        server,
        lambda: _rows(server, "select * from cdrs where call_id = ?", (call_id,)),
        timeout,
        f"the cdrs row of call {call_id}",
    )
    return rows[0]


def cdr_legs(server: SoftswitchServer, call_id: str, *, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The `cdr_legs` rows of `call_id` (A leg first, then the B attempts in order)."""
    cdr(server, call_id, timeout=timeout)  # legs are written in the same transaction as the call
    return _rows(server, "select * from cdr_legs where call_id = ? order by leg, id", (call_id,))


def register_contact(
    server: SoftswitchServer,
    user: str,
    password: str,
    port: int,
    *,
    expires: int = 300,
    host: str = "127.0.0.1",
) -> SipResponse:
    """REGISTER `user` with digest from UDP `host:port` (then closed, for a sipp UAS to bind); return 200.

    The switch reaches a UDP contact at the REGISTER's source address, which is this port.
    """
    client = SipClient("127.0.0.1", server.udp_port, local_host=host, local_port=port)
    try:
        _, answer = client.register(user, password, domain=server.domain, expires=expires)
    finally:
        client.close()
    if answer is None or answer.status != 200:
        raise AssertionError(
            f"REGISTER {user} from {host}:{port} was answered {answer and answer.status_line}"
        )
    return answer


def sdp_offer(port: int, *, host: str = "127.0.0.1", payloads: tuple[int, ...] = (0, 101)) -> bytes:
    """A minimal audio offer (PCMU and telephone-event by default) for raw INVITEs."""
    names = {0: "PCMU/8000", 8: "PCMA/8000", 101: "telephone-event/8000"}
    lines = [
        "v=0",
        f"o=- 1 1 IN IP4 {host}",
        "s=-",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(str(p) for p in payloads)}",
        *(f"a=rtpmap:{p} {names[p]}" for p in payloads if p in names),
        "a=sendrecv",
        "",
    ]
    return "\r\n".join(lines).encode()
