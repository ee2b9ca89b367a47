"""Durable registrations: write an AOR's current set of bindings, read back the unexpired ones at start-up.

Functions take a Session and never commit: the writer thread (`writer.py`) runs them inside its group
commit, and a start-up reader runs them in its own short transaction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from softswitch.store.models import Binding
from softswitch.store.records import BindingRow

__all__ = ["delete_expired", "load_bindings", "replace_bindings"]


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
    stamp = time.time() if now is None else now
    existing = {
        _identity(b.instance_id, b.reg_id, b.contact): b
        for b in session.scalars(select(Binding).where(Binding.aor == aor))
    }
    for row in rows:
        if row.aor != aor:
            raise ValueError(f"binding for {row.aor!r} passed to replace_bindings({aor!r})")
        key = _identity(row.instance_id, row.reg_id, row.contact)
        binding = existing.pop(key, None)
        if binding is None:
            binding = Binding(aor=aor, created_at=stamp)
            session.add(binding)
        binding.contact = row.contact
        binding.instance_id = row.instance_id
        binding.reg_id = row.reg_id
        binding.q = row.q
        binding.expires_at = row.expires_at
        binding.call_id = row.call_id
        binding.cseq = row.cseq
        binding.user_agent = row.user_agent
        binding.transport = row.transport
        binding.source_host = row.source_host
        binding.source_port = row.source_port
        binding.local_host = row.local_host
        binding.local_port = row.local_port
        binding.path = list(row.path)
        binding.updated_at = stamp
    for stale in existing.values():
        session.delete(stale)
    session.flush()


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
    )
