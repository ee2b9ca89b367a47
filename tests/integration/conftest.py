"""Fixtures for the integration tests: phones, Kamailio, our switch, sipp, tones.

Every fixture starts its processes for one test on fresh ports and stops them by PID at the end, even when
the test fails. Tools that are not installed make the tests that need them skip with the install command
in the reason; on this machine and in CI they are installed, so nothing skips there.

Fixtures:
  phones            PhoneFactory: ``phones("alice", server=kam, password="pw-alice", play=wav)``
  kamailio          a started Kamailio (registrar + proxy, INVITE auth on) with harness TEST_USERS
  make_kamailio     factory: ``make_kamailio(users=..., invite_auth=False, children=1)``
  make_softswitch   factory: ``make_softswitch(agents=[...], extra_config={...})`` -> started SoftswitchServer
  baresips          factory: ``baresips("bob", server=kam, password="pw-bob", auto_answer=True, source=wav)``
  sipp_dir          a directory for sipp runs of this test
  tones             {700: Path, 1100: Path, 1000: Path}: 3 s mono 8 kHz tone WAVs
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # so that `tests.integration.harness` imports however pytest was started
    sys.path.insert(0, str(_ROOT))

from tests.integration.harness import (  # noqa: E402
    Kamailio,
    PhoneFactory,
    SoftswitchServer,
    kamailio_available,
    write_tone,
)
from tests.integration.harness.baresip import Baresip, baresip_available  # noqa: E402
from tests.integration.harness.kamailio import TEST_USERS  # noqa: E402
from tests.integration.harness.sipp import sipp_available  # noqa: E402


def require_kamailio() -> None:
    if kamailio_available() is None:
        pytest.skip("kamailio is not installed (apt-get install kamailio; scripts/setup-system.sh test)")


def require_sipp() -> None:
    if sipp_available() is None:
        pytest.skip("sipp is not installed (apt-get install sip-tester; scripts/setup-system.sh test)")


def require_baresip() -> None:
    if baresip_available() is None:
        pytest.skip("baresip is not installed (apt-get install baresip; scripts/setup-system.sh test)")


def require_pjsua2() -> None:
    try:
        import pjsua2  # noqa: F401
    except ImportError:
        pytest.skip("pjsua2 is not installed (pip install pjsua2-python; make setup-test)")


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[PhoneFactory]:
    """Start pjsua2 phones for this test; all are closed (quit, then killed if stuck) at the end."""
    require_pjsua2()
    factory = PhoneFactory(tmp_path / "phones")
    try:
        yield factory
    finally:
        factory.close_all()


@pytest.fixture
def baresips(tmp_path: Path) -> Iterator[Callable[..., Baresip]]:
    """Start baresip phones for this test (registered when given a server); all are closed at the end."""
    require_baresip()
    started: list[Baresip] = []

    def make(name: str, **kwargs: Any) -> Baresip:
        phone = Baresip(name, log_dir=tmp_path / "baresip", **kwargs)
        started.append(phone)
        return phone.start()

    try:
        yield make
    finally:
        for phone in started:
            phone.close()


@pytest.fixture
def make_kamailio(tmp_path: Path) -> Iterator[Callable[..., Kamailio]]:
    require_kamailio()
    started: list[Kamailio] = []

    def make(users: dict[str, str] | None = None, **kwargs: Any) -> Kamailio:
        name = kwargs.pop("name", f"kamailio{len(started) or ''}")
        server = Kamailio(tmp_path, TEST_USERS if users is None else users, name=name, **kwargs)
        started.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def kamailio(make_kamailio: Callable[..., Kamailio]) -> Kamailio:
    """Kamailio with TEST_USERS: REGISTER and INVITE need digest auth; two UDP/TCP workers."""
    return make_kamailio()


@pytest.fixture
def make_softswitch(tmp_path: Path) -> Iterator[Callable[..., SoftswitchServer]]:
    """Start `softswitch serve` with a generated config; every server is stopped at the end."""
    started: list[SoftswitchServer] = []

    def make(agents: Any = (), **kwargs: Any) -> SoftswitchServer:
        kwargs.setdefault("name", f"softswitch{len(started) or ''}")
        server = SoftswitchServer(tmp_path, agents, **kwargs)
        started.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def sipp_dir(tmp_path: Path) -> Path:
    require_sipp()
    path = tmp_path / "sipp"
    path.mkdir()
    return path


@pytest.fixture
def tones(tmp_path: Path) -> dict[int, Path]:
    directory = tmp_path / "tones"
    return {freq: write_tone(directory / f"tone{freq}.wav", freq, 3.0) for freq in (700, 1000, 1100)}
