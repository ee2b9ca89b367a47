"""Bindings: replace an AOR's set, load the unexpired ones, delete the expired."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from softswitch.store import BindingRow, delete_expired, load_bindings, make_engine, migrate, replace_bindings
from softswitch.store.models import Binding

NOW = 1_700_000_000.0
ALICE = "sip:alice@cc.example.com"
BOB = "sip:bob@cc.example.com"


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = make_engine("sqlite://")
    migrate(engine)
    yield engine
    engine.dispose()


def row(
    aor: str = ALICE, contact: str = "sip:alice@192.0.2.10:5062;transport=tcp", **fields: object
) -> BindingRow:
    base = BindingRow(
        aor=aor,
        contact=contact,
        expires_at=NOW + 3600,
        call_id="a84b4c76e66710@pc33",
        cseq=314159,
        transport="tcp",
        source_host="203.0.113.7",
        source_port=40123,
        local_host="0.0.0.0",
        local_port=5060,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def write(engine: Engine, aor: str, rows: list[BindingRow], *, now: float = NOW) -> None:
    with Session(engine) as session, session.begin():
        replace_bindings(session, aor, rows, now=now)


def read(engine: Engine, *, now: float = NOW) -> list[BindingRow]:
    """What was stored, without the first-registered stamp (tested on its own below)."""
    with Session(engine) as session:
        return [replace(row, created_at=None) for row in load_bindings(session, now=now)]


def test_created_at_comes_from_the_row_or_else_is_kept(engine: Engine) -> None:
    row = BindingRow(
        "sip:bob@cc.example.com", "sip:bob@192.0.2.5", NOW + 600, "c", 1, "udp", "203.0.113.9", 5060,
        "0.0.0.0", 5060, created_at=NOW - 50.0,
    )
    write(engine, row.aor, [row])
    write(engine, row.aor, [replace(row, cseq=2, created_at=None)], now=NOW + 10)
    with Session(engine) as session:
        (stored,) = load_bindings(session, now=NOW)
    assert stored.created_at == NOW - 50.0 and stored.cseq == 2


def test_round_trip_keeps_every_field(engine: Engine) -> None:
    full = row(
        q=0.7,
        instance_id="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>",
        reg_id=1,
        user_agent="Linphone/5.2",
        path=("<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"),
        transport="tls",
    )
    plain = row(contact="sip:alice@198.51.100.4", transport="udp")
    write(engine, ALICE, [full, plain])
    assert read(engine) == [full, plain]


def test_replace_is_the_full_set(engine: Engine) -> None:
    first, second = row(contact="sip:alice@192.0.2.1"), row(contact="sip:alice@192.0.2.2")
    write(engine, ALICE, [first, second])
    write(engine, BOB, [row(aor=BOB, contact="sip:bob@192.0.2.3")])

    refreshed = replace(second, cseq=2, expires_at=NOW + 7200)
    write(engine, ALICE, [refreshed], now=NOW + 10)

    assert read(engine) == [refreshed, row(aor=BOB, contact="sip:bob@192.0.2.3")]
    write(engine, ALICE, [])
    assert [r.aor for r in read(engine)] == [BOB]


def test_refresh_keeps_created_at_and_stamps_updated_at(engine: Engine) -> None:
    binding = row(instance_id="<urn:uuid:1>", reg_id=1)
    write(engine, ALICE, [binding], now=NOW)
    # The same instance from a new address after a NAT rebinding: still the same binding (RFC 5626).
    write(engine, ALICE, [replace(binding, contact="sip:alice@192.0.2.99", cseq=2)], now=NOW + 60)
    with Session(engine) as session:
        stored = session.scalars(select(Binding)).all()
    assert len(stored) == 1
    assert (stored[0].created_at, stored[0].updated_at, stored[0].contact) == (
        NOW,
        NOW + 60,
        "sip:alice@192.0.2.99",
    )


def test_rows_for_another_aor_are_refused(engine: Engine) -> None:
    with Session(engine) as session, pytest.raises(ValueError, match="replace_bindings"):
        replace_bindings(session, ALICE, [row(aor=BOB)])


def test_expired_rows_are_not_loaded_and_can_be_deleted(engine: Engine) -> None:
    live = row(contact="sip:alice@192.0.2.1", expires_at=NOW + 1)
    expired = row(contact="sip:alice@192.0.2.2", expires_at=NOW - 1)
    at_the_edge = row(contact="sip:alice@192.0.2.3", expires_at=NOW)
    write(engine, ALICE, [live, expired, at_the_edge])

    assert read(engine, now=NOW) == [live]

    with Session(engine) as session, session.begin():
        assert delete_expired(session, now=NOW) == 2
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Binding)) == 1
        assert delete_expired(session, now=NOW) == 0
