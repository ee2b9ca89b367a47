"""Transaction layer throughput, without sockets: `python bench/transactions.py [--n 50000]`.

Three cycles, each run N times on a simulated clock (one cycle every millisecond, `handle_timer` called as
the edge would, so Timer J/D/M entries really go through the heap):

* NIST: REGISTER in -> RequestReceived -> 200 out -> Timer J (32 s) -> TransactionTerminated.
* ICT 2xx: INVITE out -> 100, 180, 200 in -> Timer M (32 s) -> TransactionTerminated.
* ICT non-2xx: INVITE out -> 486 in -> ACK out -> Timer D (32 s) -> TransactionTerminated.

Messages are parsed before the clock starts, so the figures are the transaction layer's alone; the "with
parsing" line adds `parse_message` of every inbound message for scale. Prints figures; never asserts.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

from softswitch.sip.flow import Flow
from softswitch.sip.message import Request, Response, new_branch
from softswitch.sip.parser import parse_message
from softswitch.sip.transaction import RequestReceived, TransactionLayer

PEER = Flow("udp", ("192.0.2.10", 5060), ("198.51.100.1", 5060))
STEP = 0.001  # one new transaction per simulated millisecond


def request_bytes(method: str, branch: str, n: int) -> bytes:
    return (
        f"{method} sip:bob@biloxi.example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "To: Bob <sip:bob@biloxi.example.com>\r\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        f"Call-ID: {n}-a84b4c76e66710@pc33.example.com\r\n"
        f"CSeq: {n + 1} {method}\r\n"
        "Contact: <sip:alice@192.0.2.10:5060>\r\n"
        "Expires: 3600\r\n"
        "User-Agent: bench\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def parsed_request(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def parsed_response(data: bytes) -> Response:
    message = parse_message(data)
    assert isinstance(message, Response)
    return message


def drain(layer: TransactionLayer) -> int:
    count = 0
    while layer.next_event() is not None:
        count += 1
    return count


def nist_cycle(n: int, *, parse: bool) -> float:
    raw = [request_bytes("REGISTER", new_branch(), i) for i in range(n)]
    requests = [parsed_request(data) for data in raw]
    replies = [request.reply(200, to_tag="reg") for request in requests]
    layer = TransactionLayer()
    start = time.perf_counter()
    now = 0.0
    for i in range(n):
        now = i * STEP
        request = parsed_request(raw[i]) if parse else requests[i]
        layer.receive_request(request, PEER, now=now)
        event = layer.next_event()
        assert isinstance(event, RequestReceived)
        layer.respond(event.tx, replies[i] if not parse else request.reply(200, to_tag="reg"), now=now)
        layer.outgoing()
        deadline = layer.next_deadline()
        if deadline is not None and deadline <= now:
            layer.handle_timer(now=now)
            drain(layer)
    layer.handle_timer(now=now + 3600)
    drain(layer)
    elapsed = time.perf_counter() - start
    assert len(layer) == 0
    return elapsed


def ict_cycle(n: int, *, statuses: tuple[int, ...], parse: bool) -> float:
    raw = [request_bytes("INVITE", new_branch(), i) for i in range(n)]
    requests = [parsed_request(data) for data in raw]
    raw_responses = [[bytes(request.reply(s, to_tag="callee")) for s in statuses] for request in requests]
    responses = [[parsed_response(data) for data in group] for group in raw_responses]
    layer = TransactionLayer()
    start = time.perf_counter()
    now = 0.0
    for i in range(n):
        now = i * STEP
        layer.send_request(requests[i], PEER, now=now)
        layer.outgoing()
        group = [parsed_response(d) for d in raw_responses[i]] if parse else responses[i]
        for response in group:
            layer.receive_response(response, PEER, now=now)
        drain(layer)
        layer.outgoing()  # the ACK, for a non-2xx
        deadline = layer.next_deadline()
        if deadline is not None and deadline <= now:
            layer.handle_timer(now=now)
            drain(layer)
    layer.handle_timer(now=now + 3600)
    drain(layer)
    elapsed = time.perf_counter() - start
    assert len(layer) == 0
    return elapsed


def report(name: str, n: int, run: Callable[[], float]) -> None:
    best = min(run() for _ in range(3))
    print(f"{name:<44} {n / best:>10,.0f} transactions/s  ({best * 1e6 / n:6.1f} µs each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=50_000, help="transactions per run (best of 3)")
    n = parser.parse_args().n
    for parse in (False, True):
        suffix = " + parsing" if parse else ""
        report(f"NIST REGISTER -> 200 -> Timer J{suffix}", n, partial(nist_cycle, n, parse=parse))
        ok = partial(ict_cycle, n, statuses=(100, 180, 200), parse=parse)
        report(f"ICT INVITE -> 100/180/200 -> Timer M{suffix}", n, ok)
        busy = partial(ict_cycle, n, statuses=(486,), parse=parse)
        report(f"ICT INVITE -> 486 + ACK -> Timer D{suffix}", n, busy)


if __name__ == "__main__":
    main()
