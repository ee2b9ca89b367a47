"""Run the Kamailio stand-in by hand: `python bench/kamailio/serve.py [--users 2000] [--port 5090]`.

Starts Kamailio 5.6 in the foreground with the harness's config (tests/integration/harness/kamailio.cfg.tmpl:
in-memory registrar, digest auth from an htable, stateful proxy with record-routing) and the same users
the benchmarks use (u00000/pw00000x, ...; plus alice/pw-alice and bob/pw-bob), writes a sipp injection
file for them, prints the commands to drive it, and runs until Ctrl-C or SIGTERM, then stops Kamailio by
its PID. For comparing by hand what bench/register.py measures.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import ROOT, KamailioTarget, bench_users

from tests.integration.harness.sipp import write_users_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--port", type=int, default=0, help="UDP+TCP port (0: a free one)")
    parser.add_argument("--children", type=int, default=1, help="UDP and TCP worker processes")
    parser.add_argument("--no-invite-auth", action="store_true", help="do not challenge INVITE/MESSAGE")
    parser.add_argument("--workdir", type=Path, help="config and logs go here (default: a temp dir)")
    args = parser.parse_args(argv)
    users = {**bench_users(args.users), "alice": "pw-alice", "bob": "pw-bob"}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    with tempfile.TemporaryDirectory(prefix="kamailio-") as tmp:
        workdir = args.workdir or Path(tmp)
        target = KamailioTarget(workdir, users, children=args.children)
        target.server.fixed_port = args.port or None
        target.server.invite_auth = not args.no_invite_auth
        target.start()
        try:
            inf = write_users_file(workdir / "users.csv", bench_users(args.users), target.domain)
            print(target.describe())
            print(f"listening on udp+tcp {target.address}; config {target.server.cfg_path}")
            print(f"log: {target.server.proc.log_path if target.server.proc else '-'}")
            print("try:")
            print(
                f"  sipp {target.address} -sf {ROOT}/tests/sipp/reg_auth.xml -inf {inf} "
                "-i 127.0.0.1 -p 0 -m 10000 -r 1000 -nostdin"
            )
            print("Ctrl-C to stop.", flush=True)
            while not stop.wait(0.5):
                if target.server.proc is not None and not target.server.proc.alive():
                    print("kamailio exited:\n" + target.log_tail(), file=sys.stderr)
                    return 1
        finally:
            target.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
