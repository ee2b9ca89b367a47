"""SIP transaction timer values (RFC 3261 §17 and Table 4 in Appendix A; RFC 6026 §8.4 for L and M).

T1, T2 and T4 are the three knobs; every named timer is derived from them as Table 4 says:

====  ==========================  ========================================  =========================
name  default                     meaning                                   here
====  ==========================  ========================================  =========================
A     T1, doubling                INVITE request retransmit (UDP only)      `timer_a`, `backoff_a`
B     64*T1                       INVITE transaction timeout                `timer_b`
D     > 32 s UDP, 0 reliable      wait for response retransmits (ICT)       `timer_d(reliable)`
E     T1, doubling up to T2       non-INVITE request retransmit (UDP only)  `timer_e`, `backoff_e`
F     64*T1                       non-INVITE transaction timeout            `timer_f`
G     T1, doubling up to T2       INVITE response retransmit (UDP only)     `timer_g`, `backoff_g`
H     64*T1                       wait for ACK receipt                      `timer_h`
I     T4 UDP, 0 reliable          wait for ACK retransmits                  `timer_i(reliable)`
J     64*T1 UDP, 0 reliable       wait for non-INVITE request retransmits   `timer_j(reliable)`
K     T4 UDP, 0 reliable          wait for non-INVITE response retransmits  `timer_k(reliable)`
L     64*T1                       wait for INVITE retransmits after a 2xx   `timer_l` (RFC 6026)
M     64*T1                       wait for 2xx retransmits after the first  `timer_m` (RFC 6026)
====  ==========================  ========================================  =========================

Durations are float seconds. Defaults are the RFC's, the same as pjsip's `PJSIP_T1_TIMEOUT 500`,
`PJSIP_T2_TIMEOUT 4000`, `PJSIP_T4_TIMEOUT 5000` (milliseconds).

Deviation: Table 4 gives Timer D as "> 32 s" for UDP. We use `max(32, 64*T1)` so that when T1 is raised
(a slow trunk) Timer D still outlives the server's Timer G retransmissions, which run for 64*T1.
Not here: Timer C (proxy INVITE timeout, §16.8) — we are not a proxy.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TimerValues"]


@dataclass(frozen=True, slots=True)
class TimerValues:
    """RFC 3261 T1/T2/T4 and the timers derived from them (Table 4, RFC 6026)."""

    #: RTT estimate; the first retransmit interval (RFC 3261 §17.1.1.1: 500 ms default).
    t1: float = 0.5
    #: Cap on the non-INVITE request and INVITE response retransmit interval (4 s default).
    t2: float = 4.0
    #: Maximum time a message stays in the network (5 s default).
    t4: float = 5.0

    def __post_init__(self) -> None:
        if not self.t1 > 0:
            raise ValueError(f"T1 must be positive, not {self.t1}")
        if not self.t2 >= self.t1:
            raise ValueError(f"T2 ({self.t2}) must not be below T1 ({self.t1})")
        if not self.t4 >= 0:
            raise ValueError(f"T4 must not be negative, not {self.t4}")

    # -- retransmit schedules (unreliable transports only) ----------------------------------------------

    @property
    def timer_a(self) -> float:
        """First INVITE retransmit interval (§17.1.1.2)."""
        return self.t1

    def backoff_a(self, interval: float) -> float:
        """The next Timer A interval: doubled, uncapped (Timer B ends it)."""
        return 2 * interval

    @property
    def timer_e(self) -> float:
        """First non-INVITE retransmit interval (§17.1.2.2)."""
        return self.t1

    def backoff_e(self, interval: float, *, proceeding: bool) -> float:
        """The next Timer E interval: doubled up to T2 in Trying, always T2 in Proceeding (§17.1.2.2)."""
        return self.t2 if proceeding else min(2 * interval, self.t2)

    @property
    def timer_g(self) -> float:
        """First INVITE final-response retransmit interval (§17.2.1)."""
        return self.t1

    def backoff_g(self, interval: float) -> float:
        """The next Timer G interval: doubled up to T2 (§17.2.1)."""
        return min(2 * interval, self.t2)

    # -- timeouts ---------------------------------------------------------------------------------------

    @property
    def timer_b(self) -> float:
        """INVITE client transaction timeout (§17.1.1.2)."""
        return 64 * self.t1

    def timer_d(self, reliable: bool) -> float:
        """ICT wait in Completed for retransmitted non-2xx finals (§17.1.1.2)."""
        return 0.0 if reliable else max(32.0, 64 * self.t1)

    @property
    def timer_f(self) -> float:
        """Non-INVITE client transaction timeout (§17.1.2.2)."""
        return 64 * self.t1

    @property
    def timer_h(self) -> float:
        """IST wait in Completed for the ACK (§17.2.1)."""
        return 64 * self.t1

    def timer_i(self, reliable: bool) -> float:
        """IST wait in Confirmed for ACK retransmissions (§17.2.1)."""
        return 0.0 if reliable else self.t4

    def timer_j(self, reliable: bool) -> float:
        """NIST wait in Completed for request retransmissions (§17.2.2)."""
        return 0.0 if reliable else 64 * self.t1

    def timer_k(self, reliable: bool) -> float:
        """NICT wait in Completed for response retransmissions (§17.1.2.2)."""
        return 0.0 if reliable else self.t4

    @property
    def timer_l(self) -> float:
        """IST wait in Accepted for INVITE retransmissions and ACKs (RFC 6026 §7.1)."""
        return 64 * self.t1

    @property
    def timer_m(self) -> float:
        """ICT wait in Accepted for 2xx retransmissions (RFC 6026 §7.2)."""
        return 64 * self.t1
