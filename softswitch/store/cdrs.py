"""Call detail records: write a finished call, read recent ones."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from softswitch.store.models import Cdr, CdrLeg
from softswitch.store.records import CallRecord, LegRecord

__all__ = ["legs_of", "recent_calls", "save_call"]


def save_call(session: Session, call: CallRecord, legs: Sequence[LegRecord]) -> None:
    """Insert (or, for a job the writer re-runs, replace) one call and its legs."""
    existing = session.get(Cdr, call.call_id)
    if existing is not None:
        session.delete(existing)
        for row in session.scalars(select(CdrLeg).where(CdrLeg.call_id == call.call_id)):
            session.delete(row)
        session.flush()
    session.add(Cdr(**dataclasses.asdict(call)))
    session.add_all(CdrLeg(**dataclasses.asdict(leg)) for leg in legs)


def recent_calls(session: Session, *, limit: int = 50, since: float | None = None) -> list[CallRecord]:
    query = select(Cdr).order_by(Cdr.started_at.desc()).limit(limit)
    if since is not None:
        query = query.where(Cdr.started_at >= since)
    names = [f.name for f in dataclasses.fields(CallRecord)]
    return [CallRecord(**{n: getattr(row, n) for n in names}) for row in session.scalars(query)]


def legs_of(session: Session, call_id: str) -> list[LegRecord]:
    names = [f.name for f in dataclasses.fields(LegRecord)]
    rows = session.scalars(select(CdrLeg).where(CdrLeg.call_id == call_id).order_by(CdrLeg.id))
    return [LegRecord(**{n: getattr(row, n) for n in names}) for row in rows]
