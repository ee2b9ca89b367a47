"""Read-only views from the database for when the switch is not running (`softswitch agents`)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session

from softswitch.store.bindings import load_bindings
from softswitch.store.db import make_engine

__all__ = ["registrations_from_store"]


def registrations_from_store(url: str) -> list[dict[str, Any]]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            try:
                rows = load_bindings(session, now=time.time())
            except Exception:
                return []  # no schema yet: nothing was ever registered
    finally:
        engine.dispose()
    now = time.time()
    return [
        {
            "aor": row.aor,
            "user": row.aor.split(":", 1)[1].split("@", 1)[0],
            "contact": row.contact,
            "transport": row.transport,
            "source": f"{row.source_host}:{row.source_port}",
            "source_host": row.source_host,
            "source_port": row.source_port,
            "user_agent": row.user_agent,
            "expires_at": row.expires_at,
            "expires_in": max(0, int(row.expires_at - now)),
            "reachable": None,
            "rtt_ms": None,
        }
        for row in rows
    ]
