"""Run every benchmark in bench/ with its defaults: `python bench/run_all.py [--only NAME ...] [--list]`.

Every `bench/*.py` except this file, `common.py` and names starting with `_` is a benchmark script; each
runs in its own process with this interpreter, one after the other (they would skew each other's figures
if run together on 2 cores), with its output streamed as it comes. At the end a summary lists each
script's exit code and wall time. The exit code is 0 only if every script exited 0. Figures, never
pass/fail thresholds, are the scripts' business; a non-zero exit here means a script broke.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"run_all.py", "common.py"}


def scripts() -> list[Path]:
    return sorted(
        p for p in BENCH.glob("*.py") if p.name not in NOT_BENCHMARKS and not p.name.startswith("_")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these (e.g. register calls)")
    parser.add_argument("--skip", nargs="+", metavar="NAME", default=[], help="do not run these")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per script")
    args = parser.parse_args(argv)
    chosen = scripts()
    if args.only:
        wanted = {name.removesuffix(".py") for name in args.only}
        unknown = wanted - {p.stem for p in chosen}
        if unknown:
            parser.error(
                f"no such benchmark: {', '.join(sorted(unknown))} (have {', '.join(p.stem for p in chosen)})"
            )
        chosen = [p for p in chosen if p.stem in wanted]
    skipped = {name.removesuffix(".py") for name in args.skip}
    chosen = [p for p in chosen if p.stem not in skipped]
    if args.list:
        for path in chosen:
            doc = (
                path.read_text().split('"""')[1].strip().splitlines()[0] if '"""' in path.read_text() else ""
            )
            print(f"{path.stem:16} {doc}")
        return 0
    summary: list[tuple[str, int, float]] = []
    for path in chosen:
        print(f"\n######## {path.name} ########", flush=True)
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(path)], cwd=BENCH.parent)
        try:
            code = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            # SIGTERM first: the scripts turn it into SystemExit so that they stop their servers.
            print(f"{path.name}: over {args.timeout:.0f} s, stopping it", flush=True)
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            raise
        summary.append((path.name, code, time.perf_counter() - started))
    print("\n######## summary ########")
    for name, code, seconds in summary:
        status = "ok" if code == 0 else f"exit {code}"
        print(f"{name:24} {status:10} {seconds:7.1f} s")
    return 0 if all(code == 0 for _, code, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
