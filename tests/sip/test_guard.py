"""Per-source failure/ban table: literal times, bounds, address grouping, and a model-based property."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.sip.guard import Guard, Verdict

A = "198.51.100.7"
B = "203.0.113.9"


def test_fresh_source_is_allowed() -> None:
    guard = Guard()
    assert guard.check(A, now=0.0) is Verdict.ALLOW
    assert guard.next_deadline() is None
    assert guard.tracked == 0


def test_throttle_then_ban_at_literal_times() -> None:
    guard = Guard(failures=10, window=60.0, ban_time=600.0, throttle_after=5)
    verdicts = [guard.record_failure(A, now=float(t)) for t in range(10)]
    assert verdicts == [Verdict.ALLOW] * 4 + [Verdict.THROTTLE] * 5 + [Verdict.BANNED]
    assert guard.check(A, now=9.0) is Verdict.BANNED
    assert guard.check(A, now=608.999) is Verdict.BANNED
    assert guard.bans(now=100.0) == [(A, 609.0)]
    assert guard.check(A, now=609.0) is Verdict.ALLOW  # ban over, and the count starts afresh
    assert guard.bans(now=609.0) == []
    assert guard.record_failure(A, now=610.0) is Verdict.ALLOW


def test_check_reports_throttle_between_thresholds() -> None:
    guard = Guard(failures=10, throttle_after=5)
    for t in range(4):
        guard.record_failure(A, now=float(t))
    assert guard.check(A, now=4.0) is Verdict.ALLOW
    guard.record_failure(A, now=4.0)
    assert guard.check(A, now=4.0) is Verdict.THROTTLE
    assert guard.check(B, now=4.0) is Verdict.ALLOW  # other sources unaffected


def test_banned_is_returned_once_by_record_failure_and_ban_not_extended() -> None:
    guard = Guard(failures=2, throttle_after=1, ban_time=100.0)
    assert guard.record_failure(A, now=0.0) is Verdict.THROTTLE
    assert guard.record_failure(A, now=1.0) is Verdict.BANNED
    # A caller that ignored check() and records again: still banned, ban end unchanged.
    assert guard.record_failure(A, now=50.0) is Verdict.BANNED
    assert guard.bans(now=50.0) == [(A, 101.0)]


def test_failures_age_out_of_the_sliding_window() -> None:
    guard = Guard(failures=3, window=60.0, throttle_after=2)
    assert guard.record_failure(A, now=0.0) is Verdict.ALLOW
    assert guard.record_failure(A, now=30.0) is Verdict.THROTTLE
    assert guard.check(A, now=59.999) is Verdict.THROTTLE
    assert guard.check(A, now=60.0) is Verdict.ALLOW  # the failure at 0 left the window at 60
    assert guard.record_failure(A, now=61.0) is Verdict.THROTTLE  # 30 and 61: two in the window
    assert guard.record_failure(A, now=89.0) is Verdict.BANNED  # 30, 61, 89


def test_spread_out_failures_never_ban() -> None:
    guard = Guard(failures=3, window=10.0, throttle_after=2)
    assert {guard.record_failure(A, now=t * 10.0) for t in range(100)} == {Verdict.ALLOW}


def test_success_forgets_failures_but_not_a_ban() -> None:
    guard = Guard(failures=3, throttle_after=2)
    guard.record_failure(A, now=0.0)
    guard.record_failure(A, now=1.0)
    assert guard.check(A, now=2.0) is Verdict.THROTTLE
    guard.record_success(A, now=2.0)
    assert guard.check(A, now=2.0) is Verdict.ALLOW
    assert guard.record_failure(A, now=3.0) is Verdict.ALLOW
    guard.record_failure(B, now=3.0)
    guard.record_failure(B, now=3.0)
    assert guard.record_failure(B, now=3.0) is Verdict.BANNED
    guard.record_success(B, now=4.0)
    assert guard.check(B, now=4.0) is Verdict.BANNED


def test_bans_listing_sorted_and_unban() -> None:
    guard = Guard(failures=1, ban_time=100.0)
    assert guard.record_failure(B, now=5.0) is Verdict.BANNED
    assert guard.record_failure(A, now=7.0) is Verdict.BANNED
    assert guard.bans(now=8.0) == [(B, 105.0), (A, 107.0)]
    assert guard.bans(now=105.0) == [(A, 107.0)]
    assert guard.unban(A) is True
    assert guard.unban(A) is False
    assert guard.check(A, now=9.0) is Verdict.ALLOW


def test_next_deadline_and_expire() -> None:
    guard = Guard(failures=3, window=60.0, ban_time=600.0, throttle_after=2)
    guard.record_failure(A, now=10.0)
    guard.record_failure(A, now=20.0)
    guard.record_failure(B, now=15.0)
    assert guard.next_deadline() == 70.0  # A's failure at 10 ages out
    guard.expire(now=70.0)
    assert guard.check(A, now=70.0) is Verdict.ALLOW
    assert guard.next_deadline() == 75.0  # B's failure at 15
    guard.expire(now=75.0)
    assert guard.next_deadline() == 80.0  # A's failure at 20
    guard.expire(now=1000.0)
    assert guard.next_deadline() is None
    assert guard.tracked == 0


def test_next_deadline_of_a_ban() -> None:
    guard = Guard(failures=2, window=60.0, ban_time=600.0)
    guard.record_failure(A, now=1.0)
    assert guard.record_failure(A, now=2.0) is Verdict.BANNED
    assert guard.next_deadline() == 602.0
    guard.expire(now=601.0)
    assert guard.bans(now=601.0) == [(A, 602.0)]
    guard.expire(now=602.0)
    assert guard.bans(now=602.0) == []
    assert guard.next_deadline() is None
    assert guard.tracked == 0


def test_deadline_moves_after_success() -> None:
    guard = Guard()
    guard.record_failure(A, now=0.0)
    guard.record_failure(B, now=30.0)
    guard.record_success(A, now=31.0)
    assert guard.next_deadline() == 90.0


def test_loopback_is_not_exempt_by_default_but_can_be() -> None:
    guard = Guard(failures=1)
    assert guard.record_failure("127.0.0.1", now=0.0) is Verdict.BANNED
    exempted = Guard(failures=1, exempt=["127.0.0.0/8", "10.0.0.0/8", "::1"])
    for ip in ("127.0.0.1", "10.1.2.3", "::1", "::ffff:10.9.9.9"):
        assert exempted.record_failure(ip, now=0.0) is Verdict.ALLOW
        assert exempted.check(ip, now=0.0) is Verdict.ALLOW
    assert exempted.tracked == 0
    assert exempted.record_failure("11.0.0.1", now=0.0) is Verdict.BANNED


def test_ipv6_sources_are_grouped_by_prefix() -> None:
    guard = Guard(failures=2, throttle_after=1)
    assert guard.record_failure("2001:db8:1:2::1", now=0.0) is Verdict.THROTTLE
    assert guard.record_failure("2001:db8:1:2:ffff::9", now=1.0) is Verdict.BANNED
    assert guard.bans(now=1.0) == [("2001:db8:1:2::/64", 601.0)]
    assert guard.check("2001:db8:1:3::1", now=1.0) is Verdict.ALLOW
    assert Guard(ipv6_prefix=128).key("2001:db8::1") == "2001:db8::1/128"


def test_ipv4_mapped_addresses_count_as_ipv4() -> None:
    guard = Guard(failures=2)
    guard.record_failure("::ffff:198.51.100.7", now=0.0)
    assert guard.record_failure(A, now=1.0) is Verdict.BANNED
    assert guard.key("::ffff:198.51.100.7") == A


def test_non_address_strings_are_tracked_as_given() -> None:
    guard = Guard(failures=1)
    assert guard.record_failure("not-an-ip", now=0.0) is Verdict.BANNED
    assert guard.bans(now=0.0) == [("not-an-ip", 600.0)]


def test_tracked_sources_are_capped_least_recent_first() -> None:
    guard = Guard(failures=3, throttle_after=2, max_tracked=2)
    guard.record_failure("192.0.2.1", now=0.0)
    guard.record_failure("192.0.2.1", now=0.0)
    guard.record_failure("192.0.2.2", now=1.0)
    guard.record_failure("192.0.2.2", now=1.0)
    guard.record_failure("192.0.2.3", now=3.0)  # evicts .1, the least recently failing
    assert guard.tracked == 2
    assert guard.check("192.0.2.1", now=3.0) is Verdict.ALLOW
    assert guard.check("192.0.2.2", now=3.0) is Verdict.THROTTLE


def test_recent_failure_refreshes_lru_position() -> None:
    guard = Guard(failures=5, throttle_after=2, max_tracked=2)
    guard.record_failure("192.0.2.1", now=0.0)
    guard.record_failure("192.0.2.2", now=1.0)
    assert guard.record_failure("192.0.2.2", now=1.5) is Verdict.THROTTLE
    assert guard.record_failure("192.0.2.1", now=2.0) is Verdict.THROTTLE  # .1 is now the most recent
    guard.record_failure("192.0.2.3", now=3.0)  # evicts .2
    assert guard.check("192.0.2.2", now=3.0) is Verdict.ALLOW
    assert guard.check("192.0.2.1", now=3.0) is Verdict.THROTTLE
    assert guard.tracked == 2


def test_ban_table_is_capped_soonest_ending_lifted_first() -> None:
    guard = Guard(failures=1, ban_time=100.0, max_bans=2)
    guard.record_failure("192.0.2.1", now=0.0)
    guard.record_failure("192.0.2.2", now=1.0)
    guard.record_failure("192.0.2.3", now=2.0)
    assert guard.bans(now=2.0) == [("192.0.2.2", 101.0), ("192.0.2.3", 102.0)]
    assert guard.next_deadline() == 101.0


def test_heap_stays_bounded_under_a_flood() -> None:
    guard = Guard(failures=1_000_000, throttle_after=1, window=5.0)
    for i in range(20_000):
        guard.record_failure(f"192.0.2.{i % 7}", now=i * 0.01)
        guard.check(f"192.0.2.{i % 7}", now=i * 0.01)
    assert len(guard._heap) <= 2 * 7 + 64 + 1
    assert guard.tracked == 7


def test_constructor_validates() -> None:
    for kwargs in (
        {"failures": 0},
        {"throttle_after": 0},
        {"window": 0.0},
        {"ban_time": -1.0},
        {"max_tracked": 0},
        {"ipv6_prefix": 129},
    ):
        with pytest.raises(ValueError):
            Guard(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Guard(exempt=["not a network"])


# --- model-based property ---------------------------------------------------------------------------------

FAILURES, THROTTLE_AFTER, WINDOW, BAN_TIME = 4, 2, 10.0, 30.0
IPS = ["192.0.2.1", "192.0.2.2", "2001:db8::1"]


class Model:
    """The policy written the obvious way: every failure time kept, every answer recomputed."""

    def __init__(self) -> None:
        self.failures: dict[str, list[float]] = {}
        self.bans: dict[str, float] = {}

    def _tidy(self, ip: str, now: float) -> None:
        if ip in self.bans and self.bans[ip] <= now:
            del self.bans[ip]
        self.failures[ip] = [t for t in self.failures.get(ip, []) if t + WINDOW > now]

    def check(self, ip: str, now: float) -> Verdict:
        self._tidy(ip, now)
        if ip in self.bans:
            return Verdict.BANNED
        return Verdict.THROTTLE if len(self.failures[ip]) >= THROTTLE_AFTER else Verdict.ALLOW

    def failure(self, ip: str, now: float) -> Verdict:
        self._tidy(ip, now)
        if ip in self.bans:
            return Verdict.BANNED
        self.failures[ip].append(now)
        if len(self.failures[ip]) >= FAILURES:
            self.failures[ip] = []
            self.bans[ip] = now + BAN_TIME
            return Verdict.BANNED
        return Verdict.THROTTLE if len(self.failures[ip]) >= THROTTLE_AFTER else Verdict.ALLOW

    def success(self, ip: str, now: float) -> None:
        self._tidy(ip, now)
        self.failures[ip] = []

    def next_deadline(self, now: float) -> float | None:
        for ip in IPS:
            self._tidy(ip, now)
        deadlines = [u for u in self.bans.values()] + [f[0] + WINDOW for f in self.failures.values() if f]
        return min(deadlines) if deadlines else None


OPS = st.lists(
    st.tuples(
        st.sampled_from(["check", "failure", "success", "expire"]),
        st.sampled_from(range(len(IPS))),
        st.sampled_from([0.0, 0.0, 0.5, 1.0, 3.0, 9.5, 10.0, 30.0]),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_guard_matches_the_obvious_model(ops: list[tuple[str, int, float]]) -> None:
    guard = Guard(failures=FAILURES, throttle_after=THROTTLE_AFTER, window=WINDOW, ban_time=BAN_TIME)
    model = Model()
    now = 0.0
    for op, index, step in ops:
        now += step
        ip = IPS[index]
        key = guard.key(ip)
        if op == "check":
            assert guard.check(ip, now=now) is model.check(ip, now)
        elif op == "failure":
            assert guard.record_failure(ip, now=now) is model.failure(ip, now)
        elif op == "success":
            guard.record_success(ip, now=now)
            model.success(ip, now)
        else:
            guard.expire(now=now)
            assert guard.next_deadline() == model.next_deadline(now)
            assert {k for k, _ in guard.bans(now=now)} == {guard.key(i) for i in model.bans}
        assert key == guard.key(ip)


def test_address_cache_is_bounded() -> None:
    guard = Guard()
    for i in range(10_000):
        assert guard.check(f"10.{i // 256 % 256}.{i % 256}.1", now=0.0) is Verdict.ALLOW
    assert len(guard._keys) <= 4096


def test_ban_time_zero_turns_banning_off_but_keeps_throttling() -> None:
    guard = Guard(failures=3, window=60.0, ban_time=0.0, throttle_after=2)
    verdicts = [guard.record_failure("192.0.2.9", now=float(i)) for i in range(6)]
    assert Verdict.BANNED not in verdicts
    assert verdicts[-1] is Verdict.THROTTLE
    assert guard.check("192.0.2.9", now=6.0) is not Verdict.BANNED
    assert guard.bans(now=6.0) == []


def test_a_success_forgets_only_that_users_failures() -> None:
    """Holding one valid account must not reset the count of guesses at other users' passwords."""
    guard = Guard(failures=4, throttle_after=3)
    guard.record_failure(A, now=0.0, user="victim")
    guard.record_failure(A, now=1.0, user="victim")
    guard.record_failure(A, now=2.0, user="mallory")
    guard.record_success(A, now=3.0, user="mallory")  # the attacker's own account
    assert guard.check(A, now=3.0) is Verdict.ALLOW  # two failures left: below throttle_after
    assert guard.record_failure(A, now=4.0, user="victim") is Verdict.THROTTLE
    assert guard.record_failure(A, now=5.0, user="victim") is Verdict.BANNED
    guard.record_failure(B, now=6.0, user="carol")
    guard.record_failure(B, now=7.0, user="carol")
    guard.record_success(B, now=8.0, user="carol")  # a typo, then the right password
    assert guard.tracked == 1 and guard.check(B, now=8.0) is Verdict.ALLOW
