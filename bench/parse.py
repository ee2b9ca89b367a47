"""SIP message parse and serialise cost per message: `python bench/parse.py [--quick] [--against DIR]`.

Messages are the phone-style corpus in tests/data/sip/phones: a typical REGISTER (Zoiper), a REGISTER
with digest Authorization (MicroSIP), a registrar's 200 OK with Contacts (Kamailio) and an INVITE with
SDP (Zoiper). For each: `parse_message`, `bytes(msg)` of the parsed message as it is (the header lines
go out as received), and `bytes(msg)` after one header changed (every line written again). Then what
the registrar does per authenticated REGISTER (RFC 3261 §22: REGISTER -> 401, REGISTER with
credentials -> 200): two parses, two `request.reply(...)` and two serialisations, and the share of one
core that costs at 2,000 authenticated REGISTERs a second.

Each figure is the best of several repeats of CPU time (process_time), the least disturbed by the
rest of the machine. `--against DIR` runs the same figures with the `softswitch` package found in DIR
(e.g. an older commit: `git archive <rev> softswitch | tar -x -C /tmp/old`) and prints both.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH, so that --against DIR wins

from softswitch.sip.parser import parse_message  # noqa: E402

PHONES = ROOT / "tests" / "data" / "sip" / "phones"
CASES = [
    ("REGISTER", "zoiper-register"),
    ("REGISTER + Authorization", "microsip-register-auth"),
    ("200 OK with Contacts", "kamailio-200-register"),
    ("INVITE with SDP", "zoiper-invite"),
]
CHALLENGE = (
    'Digest realm="cc.example.com", nonce="MTcwMDAwMDAwMC4xMjM0OjRmYjJkOTE3", algorithm=MD5, qop="auth"'
)


def best_us(work: Callable[[], object], *, repeats: int, budget: float) -> float:
    """Microseconds per call: the best of `repeats` runs of about `budget` CPU seconds each."""
    start = time.process_time()
    work()
    once = max(time.process_time() - start, 1e-6)
    number = max(10, int(budget / once))
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(number):
            work()
        best = min(best, (time.process_time() - start) / number)
    return best * 1e6


def measure(repeats: int, budget: float) -> dict[str, float]:
    figures: dict[str, float] = {}
    for label, name in CASES:
        data = (PHONES / f"{name}.sip").read_bytes()
        msg = parse_message(data)
        changed = parse_message(data)
        changed.headers.set("User-Agent", "softswitch")
        figures[f"{label}|parse"] = best_us(lambda d=data: parse_message(d), repeats=repeats, budget=budget)
        figures[f"{label}|bytes"] = best_us(lambda m=msg: bytes(m), repeats=repeats, budget=budget)
        figures[f"{label}|bytes changed"] = best_us(
            lambda m=changed: bytes(m), repeats=repeats, budget=budget
        )

    first = (PHONES / "zoiper-register.sip").read_bytes()
    second = (PHONES / "microsip-register-auth.sip").read_bytes()

    def authenticated_register() -> None:
        request = parse_message(first)
        challenge = request.reply(401, to_tag="a1b2c3", headers=[("WWW-Authenticate", CHALLENGE)])  # type: ignore[union-attr]
        bytes(challenge)
        request = parse_message(second)
        contacts = [("Contact", f"{c};expires=300") for c in request.headers.get_all("Contact")]
        accepted = request.reply(200, to_tag="d4e5f6", headers=[*contacts, ("Expires", "300")])  # type: ignore[union-attr]
        bytes(accepted)

    figures["registrar|auth REGISTER"] = best_us(authenticated_register, repeats=repeats, budget=budget)
    return figures


def report(figures: dict[str, float], before: dict[str, float] | None) -> None:
    def cell(key: str) -> str:
        now = f"{figures[key]:7.1f}"
        if before is None or key not in before:
            return now
        return f"{before[key]:7.1f} -> {figures[key]:5.1f}"

    width = 26 if before is None else 38
    print(f"{'us per message':28}{'parse':>{width}}{'bytes(msg)':>{width}}{'bytes after a change':>{width}}")
    for label, _ in CASES:
        print(
            f"{label:28}{cell(label + '|parse'):>{width}}{cell(label + '|bytes'):>{width}}"
            f"{cell(label + '|bytes changed'):>{width}}"
        )
    per_register = figures["registrar|auth REGISTER"]
    print(
        f"\nauthenticated REGISTER (2 parses, 2 replies built and serialised): "
        f"{cell('registrar|auth REGISTER')} us"
        f"\n  at 2,000 REGISTER/s that is {per_register * 2000 / 1e4:.1f} % of one core for the message layer"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    parser.add_argument("--against", metavar="DIR", help="also measure the softswitch package in DIR")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    repeats, budget = (3, 0.05) if args.quick else (7, 0.2)
    figures = measure(repeats, budget)
    if args.json:
        print(json.dumps(figures))
        return
    before = None
    if args.against:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([args.against, os.environ.get("PYTHONPATH", "")])}
        command = [sys.executable, __file__, "--json", *(["--quick"] if args.quick else [])]
        before = json.loads(
            subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
        )
        print(f"before: softswitch from {args.against}; after: {ROOT}")
    print(f"Python {sys.version.split()[0]}, best of {repeats} repeats of process time\n")
    report(figures, before)


if __name__ == "__main__":
    main()
