"""REGISTER throughput with digest auth: `python bench/register.py [--duration 20] [--target both]`.

For each target (our `softswitch serve`, Kamailio 5.6 with the same users, or both) this starts the server
on free loopback ports with N users (default 2,000), then drives sipp `tests/sipp/reg_auth.xml` over UDP
(REGISTER -> 401 -> REGISTER with credentials -> 200, one user after the other from an injection file) at
fixed rates to find the highest rate the server sustains with under 0.1 % failed registrations:

1. ramp: short probes (`--probe` seconds) at doubling rates until one fails or falls behind;
2. bisect between the last good and the first bad rate until they are within 10 %;
3. confirm the best rate over the full `--duration`; if that fails, step down 10 % and confirm again.

Before the search every user registers once, unmeasured (so that steps refresh bindings rather than
create them). After a failed step the server is restarted (`--no-restart` to keep it), so that the
backlog an overload leaves behind does not count against the next, lower rate; before every step the
harness waits until the server's CPU is idle.

A step is good when failures < 0.1 % of the registrations started, every planned registration was
started, and the achieved rate (successful / elapsed) is at least 95 % of the target rate.

Reported per target: the rate achieved, failures and retransmissions, the server's CPU (user + system of
all its processes over the run, as % of one core) and sipp's, memory (sum of PSS; main process RSS),
latency p50/p95/p99 of the authenticated REGISTER -> 200 from sipp's -trace_rtt (1 ms resolution) and
from a side probe that times 20 REGISTERs a second with perf_counter. With both targets, the
softswitch/kamailio ratios. Figures only: nothing here passes or fails on speed.

This machine has 2 cores: sipp, the probe and the server share them, so at high rates sipp's own CPU
use (printed) can be the limit rather than the server's.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    KamailioTarget,
    RegisterProbe,
    ResourceSampler,
    SoftswitchTarget,
    Target,
    bench_users,
    format_table,
    highest_rate,
    kamailio_available,
    settle,
)

# (importing common put the repository root on sys.path)
from tests.integration.harness.sipp import sipp_available, start_sipp, write_users_file

MAX_FAILURE_RATIO = 0.001
MIN_ACHIEVED = 0.95


@dataclass
class Step:
    target: str
    phase: str
    rate: float
    seconds: float
    planned: int
    created: int
    successful: int
    failed: int
    retransmissions: int
    achieved: float
    server_cpu: float
    sipp_cpu: float
    p50: float | None
    p95: float | None
    p99: float | None
    probe_p50: float | None
    probe_p95: float | None
    probe_p99: float | None
    probe_failures: int
    pss_mib: float
    rss_mib: float
    ok: bool
    why: str


def run_step(
    target: Target,
    inf: Path,
    workdir: Path,
    rate: float,
    seconds: float,
    phase: str,
    probe_user: tuple[str, str],
) -> Step:
    planned = max(1, round(rate * seconds))
    settle(target.processes())
    sampler = ResourceSampler(target.processes())
    probe = RegisterProbe(target.address, target.domain, *probe_user, rate=20.0)
    sampler.start()
    probe.start()
    run = start_sipp(
        "reg_auth",
        target.address,
        directory=workdir,
        inf=inf,
        calls=planned,
        rate=rate,
        limit=max(200, int(rate)),  # concurrent registrations: a slow server shows up as a lower rate
        timeout=seconds * 3 + 30,
        stats_every_s=1,
        # A 4 MiB socket buffer (net.core.rmem_max here) keeps sipp from dropping answers in bursts.
        extra_args=["-max_recv_loops", "10000", "-max_sched_loops", "10000", "-buff_size", "4194304"],
    )
    # sipp is our child: its CPU is what RUSAGE_CHILDREN gains once it has been reaped.
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sipp_started = time.perf_counter()
    try:
        result = run.wait()
    except BaseException:  # SIGTERM / Ctrl-C: do not leave sipp running
        run.stop()
        probe.stop()
        raise
    usage = sampler.stop()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sipp_cpu_s = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    sipp_cpu = 100.0 * sipp_cpu_s / max(1e-9, time.perf_counter() - sipp_started)
    probed = probe.stop()
    latency = result.latency(2)
    elapsed = result.elapsed_s or usage.wall_seconds
    achieved = result.successful / elapsed if elapsed > 0 else 0.0
    failure_ratio = result.failed / max(1, result.created)
    problems = []
    if failure_ratio >= MAX_FAILURE_RATIO:
        problems.append(f"{failure_ratio:.2%} failed")
    if result.created < planned:
        problems.append(f"only {result.created}/{planned} started")
    if achieved < MIN_ACHIEVED * rate:
        problems.append(f"achieved {achieved:.0f}/s")
    if result.returncode not in (0, 1):
        problems.append(f"sipp exit {result.returncode}")
    probe_q = probed.percentiles()
    return Step(
        target=target.name,
        phase=phase,
        rate=rate,
        seconds=seconds,
        planned=planned,
        created=result.created,
        successful=result.successful,
        failed=result.failed,
        retransmissions=result.retransmissions,
        achieved=achieved,
        server_cpu=usage.cpu_percent,
        sipp_cpu=sipp_cpu,
        p50=latency["p50"],
        p95=latency["p95"],
        p99=latency["p99"],
        probe_p50=probe_q["p50"],
        probe_p95=probe_q["p95"],
        probe_p99=probe_q["p99"],
        probe_failures=probed.failures,
        pss_mib=usage.pss_mib,
        rss_mib=usage.rss_main_mib,
        ok=not problems,
        why=", ".join(problems) or "ok",
    )


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_step(step: Step) -> None:
    print(
        f"  [{step.target} {step.phase:8}] rate {step.rate:7.0f}/s for {step.seconds:4.0f} s: "
        f"{step.successful}/{step.planned} ok, {step.failed} failed, {step.retransmissions} retrans, "
        f"achieved {step.achieved:7.1f}/s, cpu {step.server_cpu:5.1f}% (sipp {step.sipp_cpu:5.1f}%), "
        f"p50/p99 {fmt(step.p50, 0)}/{fmt(step.p99, 0)} ms, probe p50 {fmt(step.probe_p50, 2)} ms "
        f"-> {'GOOD' if step.ok else 'BAD: ' + step.why}",
        flush=True,
    )


def warm_up(target: Target, inf: Path, workdir: Path, args: argparse.Namespace) -> None:
    """Register every user once, unmeasured, so that the steps update bindings rather than create them."""
    started = time.perf_counter()
    run = start_sipp(
        "reg_auth",
        target.address,
        directory=workdir,
        inf=inf,
        calls=args.users,
        rate=args.start_rate / 2,
        timeout=args.users / (args.start_rate / 2) * 3 + 30,
        extra_args=["-buff_size", "4194304"],
        trace_rtt=False,
    )
    try:
        result = run.wait()
    except BaseException:
        run.stop()
        raise
    print(
        f"  [{target.name} warm-up ] {result.successful}/{args.users} users registered in "
        f"{time.perf_counter() - started:.1f} s (not measured)",
        flush=True,
    )


def search(
    target: Target, inf: Path, workdir: Path, args: argparse.Namespace, probe_user: tuple[str, str]
) -> tuple[Step | None, list[Step]]:
    steps: list[Step] = []

    def attempt(rate: float, seconds: float, phase: str) -> Step:
        step = run_step(target, inf, workdir, rate, seconds, phase, probe_user)
        steps.append(step)
        print_step(step)
        if not step.ok and args.restart_after_overload:
            # An overload leaves work behind (retransmissions, transactions waiting for Timer J, queues):
            # start the next step from a fresh process so that it measures its own rate only.
            target.restart()
            print(f"  [{target.name} restart ] restarted after the overload: {target.describe()}", flush=True)
        return step

    if args.warmup:
        warm_up(target, inf, workdir, args)
    best = highest_rate(
        attempt,
        start_rate=args.start_rate,
        max_rate=args.max_rate,
        probe=args.probe,
        duration=args.duration,
        min_rate=10,
        confirmations=4,
    )
    return best, steps


def bench_target(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    users = bench_users(args.users)
    probe_user = ("probe", "pw-probe-x")
    all_users = {**users, probe_user[0]: probe_user[1]}
    target: Target
    if name == "kamailio":
        target = KamailioTarget(workdir, all_users, children=args.kamailio_children)
    else:
        target = SoftswitchTarget(workdir, all_users)
    print(f"\n== {name}: starting with {len(all_users)} users", flush=True)
    started = time.perf_counter()
    try:
        target.start()
    except Exception as exc:
        print(f"  {name} did not start: {exc}", flush=True)
        return {"target": name, "error": str(exc).splitlines()[0]}
    described = target.describe()
    print(f"  up in {time.perf_counter() - started:.1f} s: {described}", flush=True)
    try:
        inf = write_users_file(workdir / f"{name}-users.csv", users, target.domain)
        best, steps = search(target, inf, workdir, args, probe_user)
    except Exception as exc:
        print(f"  {name}: benchmark failed: {exc}\n{target.log_tail()}", flush=True)
        return {"target": name, "error": str(exc).splitlines()[0]}
    finally:
        target.stop()
    return {
        "target": name,
        "described": described,
        "best": asdict(best) if best else None,
        "steps": [asdict(s) for s in steps],
    }


def report(results: list[dict[str, object]], args: argparse.Namespace) -> None:
    print(f"\nREGISTER with digest over UDP, {args.users} users, {args.duration:.0f} s confirmation run")
    print(f"(kamailio: children={args.kamailio_children}, tcp_children={args.kamailio_children})")
    headers = [
        "target",
        "rate/s",
        "achieved/s",
        "failed",
        "retrans",
        "cpu %",
        "sipp cpu %",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "probe p50",
        "probe p95",
        "probe p99",
        "PSS MiB",
        "RSS MiB",
    ]
    rows = []
    best_by_target: dict[str, dict[str, float]] = {}
    for result in results:
        best = result.get("best")
        if not isinstance(best, dict):
            error = str(result.get("error") or "no rate passed")
            rows.append([str(result["target"]), "-", error[:40], *["-"] * 12])
            continue
        best_by_target[str(result["target"])] = best
        rows.append(
            [
                str(result["target"]),
                f"{best['rate']:.0f}",
                f"{best['achieved']:.1f}",
                str(best["failed"]),
                str(best["retransmissions"]),
                fmt(best["server_cpu"]),
                fmt(best["sipp_cpu"]),
                fmt(best["p50"], 0),
                fmt(best["p95"], 0),
                fmt(best["p99"], 0),
                fmt(best["probe_p50"], 2),
                fmt(best["probe_p95"], 2),
                fmt(best["probe_p99"], 2),
                fmt(best["pss_mib"]),
                fmt(best["rss_mib"]),
            ]
        )
    print(format_table(headers, rows))
    print("p50/p95/p99: sipp -trace_rtt, authenticated REGISTER -> 200, 1 ms resolution;")
    print("probe: the same span timed with perf_counter, 20 REGISTERs/s alongside the load.")
    ours, theirs = best_by_target.get("softswitch"), best_by_target.get("kamailio")
    if ours and theirs:
        ratio_rate = ours["achieved"] / theirs["achieved"] if theirs["achieved"] else float("nan")
        cpu_per_reg_ours = ours["server_cpu"] / ours["achieved"] if ours["achieved"] else float("nan")
        cpu_per_reg_theirs = theirs["server_cpu"] / theirs["achieved"] if theirs["achieved"] else float("nan")
        print(f"softswitch/kamailio: sustained rate x{ratio_rate:.2f}, ", end="")
        print(f"CPU per registration x{cpu_per_reg_ours / cpu_per_reg_theirs:.2f}", end="")
        if ours.get("probe_p50") and theirs.get("probe_p50"):
            print(f", probe p50 latency x{ours['probe_p50'] / theirs['probe_p50']:.2f}", end="")
        print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of the confirmation run")
    parser.add_argument("--probe", type=float, default=5.0, help="seconds of each ramp/bisect step")
    parser.add_argument("--target", choices=("softswitch", "kamailio", "both"), default="both")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--start-rate", type=float, default=250.0)
    parser.add_argument("--max-rate", type=float, default=20000.0)
    parser.add_argument("--kamailio-children", type=int, default=1, help="UDP (and TCP) worker processes")
    parser.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="do not register every user once before measuring",
    )
    parser.add_argument(
        "--no-restart",
        dest="restart_after_overload",
        action="store_false",
        help="keep the server running after a failed step (by default it is restarted)",
    )
    parser.add_argument("--json", type=Path, help="also write every step and the result as JSON here")
    parser.add_argument("--workdir", type=Path, help="keep logs and sipp files here (default: a temp dir)")
    args = parser.parse_args(argv)
    # SIGTERM (from run_all.py's timeout) becomes SystemExit, so that `finally` stops the servers.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if sipp_available() is None:
        print("sipp is not installed (apt-get install sip-tester); nothing to measure", file=sys.stderr)
        return 2
    names = ["softswitch", "kamailio"] if args.target == "both" else [args.target]
    if "kamailio" in names and kamailio_available() is None:
        print("kamailio is not installed (apt-get install kamailio); skipping it", file=sys.stderr)
        names.remove("kamailio")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-register-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for name in names:
            results.append(bench_target(name, args, workdir / name))
    report(results, args)
    if args.json:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results})
        )
    return 0 if all(r.get("best") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
