"""Test harness: real SIP peers (pjsua2, sipp, Kamailio) and our switch as subprocesses on loopback.

Rules every piece follows: each helper process is started and stopped by its PID (its own process group)
and reaped; each test gets its own free ports; every wait is on an event or a readiness probe with a
timeout, never a bare sleep; a failure says what was expected and shows the tail of the peer's log.

Modules:
  phone        `Phone` / `PhoneFactory`: a pjsua2 UA per process (driver: pjua_driver.py), JSON events
  server       `SoftswitchServer`: `softswitch serve` with a generated config, certificates and database
  kamailio     `Kamailio`: in-memory registrar with digest auth + stateful proxy, the stand-in and the
               benchmark peer
  sipp         `run_sipp`, `SippResult`, `write_injection_file`, scenario paths
  audio        tones and FFT checks (`write_tone`, `assert_hears`, `dominant_frequency`, ...)
  rawsip       plain-socket SIP: OPTIONS probes, sending malformed bytes
  calls        live calls and call records of our switch, contacts for sipp agents, `RawPhone` (one
               dialog over a plain socket with its own RTP/RTCP sockets)
  process      `ManagedProcess`: the subprocess wrapper under all of the above
  ports        free loopback ports and RTP ranges
"""

from __future__ import annotations

from .audio import assert_hears, assert_silent, band_energy_ratio, dominant_frequency, rms, write_tone
from .kamailio import Kamailio, kamailio_available
from .phone import Phone, PhoneFactory
from .ports import free_port, free_port_pair, free_udp_range
from .process import ManagedProcess, ProcessError
from .server import SoftswitchServer, make_test_pki

__all__ = [
    "Kamailio",
    "ManagedProcess",
    "Phone",
    "PhoneFactory",
    "ProcessError",
    "SoftswitchServer",
    "assert_hears",
    "assert_silent",
    "band_energy_ratio",
    "dominant_frequency",
    "free_port",
    "free_port_pair",
    "free_udp_range",
    "kamailio_available",
    "make_test_pki",
    "rms",
    "write_tone",
]
