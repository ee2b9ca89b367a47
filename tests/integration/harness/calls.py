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
* `RawPhone`: one dialog over a plain UDP socket plus an RTP/RTCP socket pair, for tests that must see
  and shape every message and packet (glare, UPDATE, RTCP, codecs): `start_invite`/`finish_invite`,
  `accept`, `send_request`, `final`, `respond`, `next_request`; `rtp_packet`, `rtcp_receiver_report`,
  `media_of`, `make_sdp`.

Times are the switch's: `cdrs.*_at` are UNIX epoch seconds.
"""

from __future__ import annotations

import re
import secrets
import socket
import sqlite3
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

from .rawsip import SipClient, SipResponse
from .server import SoftswitchServer

__all__ = [
    "RawPhone",
    "body_of",
    "cdr",
    "cdr_legs",
    "header_of",
    "live_calls",
    "make_sdp",
    "media_of",
    "register_contact",
    "rtcp_receiver_report",
    "rtp_packet",
    "sdp_offer",
    "tag_of",
    "uri_of",
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


# -- a raw SIP phone with its own RTP/RTCP sockets ----------------------------------------------------------

_HEADER_RE = re.compile(r"^([A-Za-z-]+)\s*:\s*(.*)$")
_COMPACT_NAMES = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length"}


def header_of(message: bytes | str, name: str) -> str | None:
    """The first value of header `name` in a raw message (compact forms understood), or None."""
    text = message.decode(errors="replace") if isinstance(message, bytes) else message
    wanted = name.lower()
    for line in text.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        match = _HEADER_RE.match(line)
        if match and _COMPACT_NAMES.get(match.group(1).lower(), match.group(1).lower()) == wanted:
            return match.group(2).strip()
    return None


def body_of(message: bytes) -> bytes:
    return message.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in message else b""


def uri_of(value: str) -> str:
    """The URI inside a name-addr (`"x" <sip:a@b>;tag=1` -> `sip:a@b`)."""
    match = re.search(r"<([^>]+)>", value)
    return match.group(1) if match else value.split(";", 1)[0].strip()


def tag_of(value: str) -> str | None:
    match = re.search(r";\s*tag=([^;\s]+)", value)
    return match.group(1) if match else None


def media_of(sdp: bytes) -> tuple[str, int, list[int], str]:
    """(c= address, m=audio port, payload types, direction attribute) of an SDP body."""
    text = sdp.decode(errors="replace")
    host = re.search(r"^c=IN IP4 (\S+)", text, re.MULTILINE)
    media = re.search(r"^m=audio (\d+) RTP/AVP ([\d ]+)", text, re.MULTILINE)
    direction = re.search(r"^a=(sendrecv|sendonly|recvonly|inactive)\s*$", text, re.MULTILINE)
    if host is None or media is None:
        raise AssertionError(f"no c=/m=audio in SDP:\n{text}")
    payloads = [int(p) for p in media.group(2).split()]
    return host.group(1), int(media.group(1)), payloads, direction.group(1) if direction else "sendrecv"


def make_sdp(
    port: int,
    *,
    host: str = "127.0.0.1",
    codecs: tuple[tuple[int, str], ...] = ((0, "PCMU/8000"), (101, "telephone-event/8000")),
    direction: str = "sendrecv",
    version: int = 1,
) -> bytes:
    lines = [
        "v=0",
        f"o=- 4242 {version} IN IP4 {host}",
        "s=-",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(str(pt) for pt, _ in codecs)}",
        *(f"a=rtpmap:{pt} {name}" for pt, name in codecs),
        f"a={direction}",
        "",
    ]
    return "\r\n".join(lines).encode()


def rtp_packet(
    seq: int, *, ssrc: int = 0x1234ABCD, pt: int = 0, marker: bool = False, payload: bytes = b""
) -> bytes:
    """An RTP packet (RFC 3550 §5.1), 20 ms of G.711 silence by default."""
    first, second = 0x80, (0x80 if marker else 0) | (pt & 0x7F)
    data = payload or b"\xff" * 160
    return struct.pack("!BBHII", first, second, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc) + data


def rtcp_receiver_report(ssrc: int = 0x1234ABCD) -> bytes:
    """An empty RTCP RR (RFC 3550 §6.4.2: PT 201, no report blocks)."""
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


class RawPhone:
    """A SIP phone made of one UDP socket (`SipClient`) and an RTP/RTCP socket pair, for exact tests.

    It keeps one dialog, set up by `start_invite()` + `finish_invite()` (as caller) or `accept()` (as
    callee); then `send_request()` sends in-dialog requests (re-INVITE, UPDATE, BYE, INFO) and
    `respond()` answers the other side's. Nothing is retransmitted: on loopback nothing is lost, and a
    test that needs a retransmission sends the same bytes again itself.
    """

    def __init__(
        self,
        server: SoftswitchServer,
        user: str,
        *,
        local_host: str = "127.0.0.1",
        password: str | None = None,
    ) -> None:
        self.server = server
        self.user = user
        self.password = password
        self.sip = SipClient("127.0.0.1", server.udp_port, local_host=local_host, timeout=3.0)
        self.host = local_host
        self.rtp, self.rtcp = self._rtp_pair(local_host)
        self.rtp_port = self.rtp.getsockname()[1]
        self.call_id = ""
        self.local_tag = secrets.token_hex(4)
        self.remote_tag: str | None = None
        self.local_uri = f"sip:{user}@127.0.0.1"
        self.remote_uri = ""
        self.remote_target = ""
        self.cseq = 0
        self.last_invite: bytes = b""

    @staticmethod
    def _rtp_pair(host: str) -> tuple[socket.socket, socket.socket]:
        for _ in range(100):
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind((host, 0))
            port = probe.getsockname()[1]
            probe.close()
            even = port - port % 2
            rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtp.bind((host, even))
                rtcp.bind((host, even + 1))
            except OSError:
                rtp.close()
                rtcp.close()
                continue
            return rtp, rtcp
        raise RuntimeError(f"no free RTP/RTCP pair on {host}")

    @property
    def contact(self) -> str:
        return f"sip:{self.user}@{self.host}:{self.sip.local[1]}"

    def sdp(self, **kwargs: Any) -> bytes:
        return make_sdp(self.rtp_port, host=self.host, **kwargs)

    def register(self) -> None:
        assert self.password is not None
        _, answer = self.sip.register(self.user, self.password, domain=self.server.domain)
        if answer is None or answer.status != 200:
            raise AssertionError(f"REGISTER {self.user}: {answer and answer.status_line}")

    # -- as the caller --

    def start_invite(
        self, number: str, sdp: bytes | None = None, headers: list[tuple[str, str]] | None = None
    ) -> int:
        """Send an INVITE for `number` to the switch, not waiting; return its CSeq (see `finish_invite`)."""
        uri = f"sip:{number}@127.0.0.1:{self.server.udp_port}"
        self.cseq += 1
        self.remote_uri = uri
        data, self.call_id, number_ = self.sip.request(
            "INVITE",
            uri,
            from_uri=self.local_uri,
            to_uri=uri,
            from_tag=self.local_tag,
            cseq=self.cseq,
            headers=[
                ("Contact", f"<{self.contact}>"),
                ("Content-Type", "application/sdp"),
                *(headers or []),
            ],
            body=sdp if sdp is not None else self.sdp(),
        )
        self.sip.send(data)
        return number_

    def finish_invite(self, cseq: int, timeout: float = 5.0) -> SipResponse:
        """The final answer to our INVITE (ACKed); a 2xx sets up the dialog."""
        answer = self.sip.response(timeout, call_id=self.call_id, cseq=cseq)
        if answer is None:
            raise AssertionError(f"{self.user}: no final answer to the INVITE within {timeout} s")
        if answer.status < 300:
            self.remote_tag = tag_of(answer.get("to") or "")
            self.remote_target = uri_of(answer.get("contact") or "")
            self._ack(cseq)
        else:
            self.sip.ack(answer, self.remote_uri)
        return answer

    # -- as the callee --

    def accept(self, invite: bytes, sdp: bytes | None = None, *, headers: list[str] | None = None) -> bytes:
        """Answer an INVITE from the switch with 200 and our SDP (plus raw header lines `headers`); sets up
        the dialog; returns the 200 as sent (send it again to play a retransmission)."""
        self.last_invite = invite
        self.call_id = header_of(invite, "call-id") or ""
        self.remote_tag = tag_of(header_of(invite, "from") or "")
        self.remote_uri = uri_of(header_of(invite, "from") or "")
        self.local_uri = uri_of(header_of(invite, "to") or "")
        self.remote_target = uri_of(header_of(invite, "contact") or "")
        return self.respond(invite, 200, body=sdp if sdp is not None else self.sdp(), headers=headers)

    # -- both --

    def respond(
        self,
        request: bytes,
        status: int,
        reason: str = "",
        *,
        body: bytes = b"",
        headers: list[str] | None = None,
    ) -> bytes:
        head = request.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
        lines = [f"SIP/2.0 {status} {reason or _REASONS.get(status, 'Answer')}"]
        for line in head[1:]:
            match = _HEADER_RE.match(line)
            if not match:
                continue
            name = _COMPACT_NAMES.get(match.group(1).lower(), match.group(1).lower())
            if name in ("via", "from", "call-id", "cseq"):
                lines.append(line)
            elif name == "to":
                lines.append(line if tag_of(line) else f"{line};tag={self.local_tag}")
        if 200 <= status < 300 and request.startswith((b"INVITE ", b"UPDATE ")):
            lines.append(f"Contact: <{self.contact}>")
        lines += headers or []
        if body:
            lines.append("Content-Type: application/sdp")
        lines += [f"Content-Length: {len(body)}", "", ""]
        data = "\r\n".join(lines).encode() + body
        self.sip.send(data)
        return data

    def send_request(
        self, method: str, *, body: bytes = b"", content_type: str = "application/sdp"
    ) -> tuple[bytes, int]:
        """Send an in-dialog request; return (bytes sent, CSeq number). Wait with `final(cseq)`."""
        self.cseq += 1
        headers: list[tuple[str, str]] = []
        if method in ("INVITE", "UPDATE"):
            headers.append(("Contact", f"<{self.contact}>"))
        if body:
            headers.append(("Content-Type", content_type))
        data, _, number = self.sip.request(
            method,
            self.remote_target,
            from_uri=self.local_uri,
            to_uri=self.remote_uri,
            call_id=self.call_id,
            cseq=self.cseq,
            from_tag=self.local_tag,
            headers=headers,
            body=body,
        )
        text = data.decode()
        to_line = f"To: <{self.remote_uri}>"
        text = text.replace(to_line, f"{to_line};tag={self.remote_tag}", 1)
        self.sip.send(text.encode())
        return text.encode(), number

    def final(self, cseq: int, timeout: float = 3.0) -> SipResponse:
        """The final response to our in-dialog request `cseq` (a 2xx to a re-INVITE is ACKed)."""
        answer = self.sip.response(timeout, call_id=self.call_id, cseq=cseq)
        if answer is None:
            raise AssertionError(f"{self.user}: no final response to CSeq {cseq} within {timeout} s")
        if answer.cseq[1] == "INVITE":
            if answer.status < 300:
                self._ack(cseq)
            else:
                self.sip.ack(answer, self.remote_target)
        return answer

    def _ack(self, cseq: int) -> None:
        data, _, _ = self.sip.request(
            "ACK",
            self.remote_target,
            from_uri=self.local_uri,
            to_uri=self.remote_uri,
            call_id=self.call_id,
            cseq=cseq,
            from_tag=self.local_tag,
        )
        text = data.decode()
        to_line = f"To: <{self.remote_uri}>"
        self.sip.send(text.replace(to_line, f"{to_line};tag={self.remote_tag}", 1).encode())

    def next_request(self, method: str | None = None, timeout: float = 3.0) -> bytes:
        """The next request from the switch (of `method` if given; qualify OPTIONS are answered)."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.sip.next_request(max(0.0, deadline - time.monotonic()))
            if message is None:
                raise AssertionError(f"{self.user}: no {method or 'request'} within {timeout} s")
            if message.startswith(b"OPTIONS ") and method != "OPTIONS":
                self.sip.answer_request(message)
                continue
            if message.startswith(b"ACK ") and method != "ACK":
                continue
            if method is None or message.startswith(method.encode() + b" "):
                return message
            raise AssertionError(f"{self.user}: expected {method}, got:\n{message.decode(errors='replace')}")

    def recv_media(self, sock: socket.socket, timeout: float = 2.0) -> tuple[bytes, tuple[str, int]] | None:
        sock.settimeout(timeout)
        try:
            data, source = sock.recvfrom(4096)
        except TimeoutError:
            return None
        return data, source

    def close(self) -> None:
        for sock in (self.rtp, self.rtcp):
            sock.close()
        self.sip.close()


_REASONS = {
    180: "Ringing",
    200: "OK",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    491: "Request Pending",
}
