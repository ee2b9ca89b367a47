"""Durable registrations: write an AOR's current set of bindings, read back the unexpired ones at start-up.

Functions take a Session and never commit: the writer thread (`writer.py`) runs them inside its group
commit, and a start-up reader runs them in its own short transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.orm import Session

from softswitch.store.models import Binding
from softswitch.store.records import BindingRow

__all__ = ["delete_expired", "load_bindings", "replace_bindings", "replace_many"]


def _identity(instance_id: str | None, reg_id: int | None, contact: str) -> tuple[str, ...]:
    # RFC 5626 §6: with +sip.instance the binding is identified by instance and reg-id, else by Contact URI.
    if instance_id:
        return ("instance", instance_id, "" if reg_id is None else str(reg_id))
    return ("contact", contact)


def replace_bindings(
    session: Session, aor: str, rows: Sequence[BindingRow], *, now: float | None = None
) -> None:
    """Make the stored bindings of `aor` exactly `rows` (the AOR's full current set; empty removes all).

    Bindings that persist keep their `created_at`; `now` (UNIX epoch seconds, default the wall clock)
    stamps `updated_at` and the `created_at` of new ones.
    """
    replace_many(session, {aor: rows}, now=now)


def replace_many(
    session: Session, sets: Mapping[str, Sequence[BindingRow]], *, now: float | None = None
) -> None:
    """`replace_bindings` for many AORs at once: one DELETE and one INSERT, each executed for many rows.

    This runs for every REGISTER that changes something, on the writer thread that shares the GIL with
    the event loop, so it is two cached Core statements rather than the ORM's unit of work (several times
    the CPU per registration). A row's `created_at` comes from the caller (the registrar knows when it first
    saw the binding); rows without one keep the stored value.
    """
    if not sets:
        return
    stamp = time.time() if now is None else now
    table = Binding.__table__
    known: dict[tuple[str, tuple[str, ...]], float] = {}
    if any(row.created_at is None for rows in sets.values() for row in rows):
        for aor in sets:
            for instance_id, reg_id, contact, created_at in session.execute(
                select(table.c.instance_id, table.c.reg_id, table.c.contact, table.c.created_at).where(
                    table.c.aor == aor
                )
            ):
                known[(aor, _identity(instance_id, reg_id, contact))] = created_at
    values = []
    for aor, rows in sets.items():
        for row in rows:
            if row.aor != aor:
                raise ValueError(f"binding for {row.aor!r} passed to replace_bindings({aor!r})")
            created = row.created_at
            if created is None:
                created = known.get((aor, _identity(row.instance_id, row.reg_id, row.contact)), stamp)
            values.append(
                {
                    "aor": aor,
                    "contact": row.contact,
                    "instance_id": row.instance_id,
                    "reg_id": row.reg_id,
                    "q": row.q,
                    "expires_at": row.expires_at,
                    "call_id": row.call_id,
                    "cseq": row.cseq,
                    "user_agent": row.user_agent,
                    "transport": row.transport,
                    "source_host": row.source_host,
                    "source_port": row.source_port,
                    "local_host": row.local_host,
                    "local_port": row.local_port,
                    "path": list(row.path),
                    "created_at": created,
                    "updated_at": stamp,
                }
            )
    (delete_sql, delete_order), (insert_sql, insert_order) = _raw_statements(session)
    for value in values:
        value["path"] = json.dumps(value["path"])
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(delete_sql, _params([{"aor": aor} for aor in sets], delete_order))
        if values:
            cursor.executemany(insert_sql, _params(values, insert_order))
    finally:
        cursor.close()


def _params(rows: list[dict[str, object]], order: tuple[str, ...] | None) -> list[Any]:
    if order is None:
        return rows  # a named paramstyle takes the dicts as they are
    return [tuple(row[name] for name in order) for row in rows]


_Statement = tuple[str, tuple[str, ...] | None]
_RAW: dict[str, tuple[_Statement, _Statement]] = {}


def _raw_statements(session: Session) -> tuple[_Statement, _Statement]:
    """The DELETE and INSERT of `replace_many`, compiled once per dialect (named parameters).

    They run through the driver's own cursor: SQLAlchemy's per-execute bookkeeping costs more than the
    statements themselves at a few thousand registrations a second, and that time holds the GIL the event
    loop needs. SQLAlchemy still writes the SQL, so SQLite and PostgreSQL both work.
    """
    dialect = session.get_bind().dialect
    cached = _RAW.get(dialect.name)
    if cached is None:
        table = Binding.__table__
        columns = [c.name for c in table.columns if c.name != "id"]
        compiled = [
            delete(table).where(table.c.aor == bindparam("aor")).compile(dialect=dialect),
            insert(table).compile(dialect=dialect, column_keys=columns),
        ]
        delete_stmt, insert_stmt = (
            (str(c), tuple(c.positiontup) if dialect.positional and c.positiontup else None) for c in compiled
        )
        cached = _RAW[dialect.name] = (delete_stmt, insert_stmt)
    return cached


def load_bindings(session: Session, *, now: float) -> list[BindingRow]:
    """Every binding that has not expired at `now` (UNIX epoch seconds), ordered by AOR then age."""
    query = select(Binding).where(Binding.expires_at > now).order_by(Binding.aor, Binding.id)
    return [_row(b) for b in session.scalars(query)]


def delete_expired(session: Session, *, now: float) -> int:
    """Remove bindings expired at `now`; returns how many."""
    result = session.execute(delete(Binding).where(Binding.expires_at <= now))
    return int(getattr(result, "rowcount", 0) or 0)


def _row(b: Binding) -> BindingRow:
    return BindingRow(
        aor=b.aor,
        contact=b.contact,
        expires_at=b.expires_at,
        call_id=b.call_id,
        cseq=b.cseq,
        transport=b.transport,
        source_host=b.source_host,
        source_port=b.source_port,
        local_host=b.local_host,
        local_port=b.local_port,
        q=b.q,
        instance_id=b.instance_id,
        reg_id=b.reg_id,
        user_agent=b.user_agent,
        path=tuple(b.path or ()),
        created_at=b.created_at,
    )
