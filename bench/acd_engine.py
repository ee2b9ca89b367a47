"""ACD engine benchmark: decisions per second, per-decision latency and memory at contact-centre scale.

Scenarios: 1,000 and 10,000 agents x 10,000 and 100,000 waiting calls across 50 queues (20 skills; each
queue needs one or two of them, some relax after a minute; mixed priorities and strategies; each agent has
three to five skills). Every agent is logged in and talking, and the waiting calls pile up behind them.
Then, in a loop:

* agent frees: a call ends (no wrap-up), so the agent takes the best waiting call it may serve across
  every queue — the decision the target is about (< 1 ms at 10,000 agents and 100,000 waiting calls);
* the agent answers; a new caller arrives, finds no free agent and waits (keeps the backlog constant).

A second measurement has every agent idle: a caller arrives and the queue's strategy picks among thousands
of available agents (call -> agent decision), then hangs up.

Each scenario runs in a fresh process, so RSS is that scenario's alone. Run: `python bench/acd_engine.py`
(`--quick` for the two small scenarios only, `--json` for machine-readable output).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from softswitch.acd import AcdEngine, AgentConfig, OfferCall, QueueConfig, RelaxStep

QUEUES = 50
SKILLS = 20
STRATEGIES = ["longest_idle", "best_skill", "least_calls", "round_robin", "longest_idle", "random"]
SCENARIOS = [(1_000, 10_000), (1_000, 100_000), (10_000, 10_000), (10_000, 100_000)]


def roster(agents: int, seed: int) -> tuple[list[QueueConfig], list[AgentConfig]]:
    rng = random.Random(seed)
    queues = []
    for index in range(QUEUES):
        needs = rng.sample(range(SKILLS), rng.choice([1, 1, 2]))
        skills = {f"s{n}": rng.randint(1, 4) for n in needs}
        relax = ()
        if index % 3 == 0:
            first = next(iter(skills))
            relax = (RelaxStep(60, {first: 1}),)
        queues.append(
            QueueConfig(
                f"q{index}", skills=skills, relax=relax, strategy=STRATEGIES[index % len(STRATEGIES)],
                priority=rng.choice([0, 0, 1, 2, 5]), wrap_up=0, max_wait=None, ring_timeout=20,
            )
        )
    people = []
    for index in range(agents):
        has = rng.sample(range(SKILLS), rng.randint(3, 5))
        people.append(AgentConfig(f"agent{index}", {f"s{n}": rng.randint(1, 10) for n in has}))
    return queues, people


class Samples:
    """Per-operation wall-clock and thread CPU time.

    CPU time excludes the time the process sat descheduled: on a shared machine wall-clock tails are mostly
    other processes' time slices, CPU time is the engine's own work (including garbage collection).
    """

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def time(self, operation: Callable[[], object]) -> None:
        cpu_started, started = time.thread_time(), time.perf_counter()
        operation()
        self.wall.append(time.perf_counter() - started)
        self.cpu.append(time.thread_time() - cpu_started)

    def summary(self) -> dict[str, float]:
        def at(ordered: list[float], share: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1e6, 1)

        wall, cpu = sorted(self.wall), sorted(self.cpu)
        return {
            "per_s_cpu": round(len(cpu) / sum(cpu)) if sum(cpu) else 0,
            "per_s_wall": round(len(wall) / sum(wall)),
            **{f"wall_{name}_us": at(wall, share) for name, share in PERCENTILES},
            **{f"cpu_{name}_us": at(cpu, share) for name, share in PERCENTILES},
        }


PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0))


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def one(agents: int, waiting: int, rounds: int, seed: int = 1) -> dict[str, object]:
    rng = random.Random(seed)
    rss_start = rss_mb()
    queues, people = roster(agents, seed)
    build_started = time.perf_counter()
    engine = AcdEngine(queues, people, rng=random.Random(seed))
    now = 0.0
    for person in people:
        engine.agent_login(person.id, now=now)
    takeable = [queue.name for queue in queues if engine.agents_serving(queue.name)]
    talking: dict[str, str] = {}  # agent -> call
    counter = 0

    def arrive() -> None:
        nonlocal counter
        counter += 1
        engine.call_arrived(f"c{counter}", rng.choice(takeable), caller=f"+371{counter}", now=now)

    def answer_offers() -> None:
        """Simulated phones answer every offer at once."""
        for action in engine.actions():
            if isinstance(action, OfferCall):
                engine.offer_answered(action.call, action.agent, now=now)
                talking[action.agent] = action.call
        engine.actions()
        engine.records()

    # Make everyone busy (as far as the backlog allows), then build the backlog.
    while len(talking) < len(people) and engine.call_count() - len(talking) < waiting:
        arrive()
        answer_offers()
    while engine.call_count() - len(talking) < waiting:
        now += 0.001
        arrive()
    engine.actions()
    engine.records()
    build_seconds = time.perf_counter() - build_started
    backlog = engine.call_count() - len(talking)

    def churn(count: int, frees: Samples, arrivals: Samples) -> None:
        """An agent's call ends and it takes the best call it may serve; a new caller arrives and waits."""
        nonlocal now
        for _ in range(count):
            now += 0.01
            call = talking.pop(rng.choice(list(talking)))
            frees.time(lambda call=call, at=now: engine.call_ended(call, by="caller", now=at))
            answer_offers()
            arrivals.time(arrive)
            answer_offers()

    # Warm-up: the first calls were offered on arrival and left stale heap entries at the top of every
    # queue; each is popped once by the first agent to look. Measure the steady state after that.
    churn(max(1000, rounds // 2), Samples(), Samples())
    frees, arrivals, frees_gc_off = Samples(), Samples(), Samples()
    churn(rounds, frees, arrivals)
    gc.disable()
    churn(rounds, frees_gc_off, Samples())
    gc.enable()
    rss_loaded = rss_mb()

    # Every agent idle: callers arrive and the strategy chooses among thousands of available agents.
    reload = Samples()
    reload.time(lambda: engine.reload(queues, people, now=now))  # same roster: a full rebuild
    for call_id in list(engine.snapshot(calls=True).calls):
        engine.caller_abandoned(call_id, now=now)
    for call_id in list(talking.values()):
        engine.call_ended(call_id, by="agent", now=now)
    talking.clear()
    engine.actions()
    engine.records()
    picks = Samples()
    for _ in range(rounds):
        now += 0.01
        counter += 1
        call_id = f"c{counter}"
        queue = rng.choice(takeable)
        picks.time(lambda call_id=call_id, queue=queue, at=now: engine.call_arrived(call_id, queue, now=at))
        engine.caller_abandoned(call_id, now=now)
        engine.actions()
        engine.records()

    return {
        "agents": agents,
        "waiting_calls": backlog,
        "queues": QUEUES,
        "build_s": round(build_seconds, 2),
        "reload_s": round(reload.wall[0], 2),
        "agent_frees_takes_call": frees.summary(),
        "agent_frees_takes_call_gc_off": frees_gc_off.summary(),
        "call_arrives_all_busy": arrivals.summary(),
        "call_arrives_agents_idle": picks.summary(),
        "rss_mb": round(rss_loaded, 1),
        "rss_growth_mb": round(rss_loaded - rss_start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 1,000-agent scenarios")
    parser.add_argument("--json", action="store_true", help="print one JSON object per scenario")
    parser.add_argument("--rounds", type=int, default=5000, help="decisions measured per scenario")
    parser.add_argument("--one", nargs=2, type=int, metavar=("AGENTS", "WAITING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.rounds)))
        return
    scenarios = SCENARIOS[:2] if args.quick else SCENARIOS
    results = []
    for agents, waiting in scenarios:
        output = subprocess.run(
            [sys.executable, __file__, "--one", str(agents), str(waiting), "--rounds", str(args.rounds)],
            check=True, capture_output=True, text=True,
        ).stdout
        results.append(json.loads(output))
        if args.json:
            print(output.strip(), flush=True)
    if args.json:
        return
    load = open("/proc/loadavg").read().split()[0]
    print(f"ACD engine: {QUEUES} queues, {SKILLS} skills, {args.rounds} decisions per measurement, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load}")
    sections = [
        ("agent_frees_takes_call", "an agent frees and takes the best call across all queues (the target)"),
        ("agent_frees_takes_call_gc_off", "the same with the cyclic garbage collector off"),
        ("call_arrives_all_busy", "a caller arrives while every agent is busy (it waits)"),
        ("call_arrives_agents_idle", "a caller arrives while every agent is idle (the strategy picks)"),
    ]
    for key, title in sections:
        print(f"\n{title}; microseconds")
        print(f"{'agents':>7} {'waiting':>8} | {'cpu dec/s':>9} {'p50':>6} {'p90':>6} {'p99':>6} "
              f"{'max':>7} | {'wall p50':>8} {'p99':>7} {'max':>8}")
        for r in results:
            m = r[key]
            print(f"{r['agents']:>7} {r['waiting_calls']:>8} | {m['per_s_cpu']:>9} {m['cpu_p50_us']:>6} "
                  f"{m['cpu_p90_us']:>6} {m['cpu_p99_us']:>6} {m['cpu_max_us']:>7} | {m['wall_p50_us']:>8} "
                  f"{m['wall_p99_us']:>7} {m['wall_max_us']:>8}")
    print(f"\n{'agents':>7} {'waiting':>8} | {'RSS MB':>7} {'build s':>8} {'reload s':>8}")
    for r in results:
        print(f"{r['agents']:>7} {r['waiting_calls']:>8} | {r['rss_mb']:>7} {r['build_s']:>8} "
              f"{r['reload_s']:>8}")


if __name__ == "__main__":
    main()
