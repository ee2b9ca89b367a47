"""The durable store: SQLAlchemy 2 models, Alembic migrations, and a group-committing writer thread.

    engine = make_engine(settings.server.database)    # SQLite (WAL) by default, PostgreSQL by URL
    migrate(engine)                                    # Alembic upgrade head, at every start
    with session_factory(engine)() as session:         # start-up: rebuild the location service
        rows = load_bindings(session, now=time.time())
    writer = StoreWriter(engine); writer.start()
    writer.submit(lambda s: replace_bindings(s, aor, rows), done=...)   # done runs on the writer thread

The store takes plain records (`records.py`) and imports nothing from the cores.
"""

from __future__ import annotations

from softswitch.store.bindings import delete_expired, load_bindings, replace_bindings
from softswitch.store.db import (
    SchemaError,
    check_schema,
    current_revision,
    head_revision,
    is_at_head,
    make_engine,
    migrate,
    session_factory,
)
from softswitch.store.records import BindingRow
from softswitch.store.writer import StoreWriter

__all__ = [
    "BindingRow",
    "SchemaError",
    "StoreWriter",
    "check_schema",
    "current_revision",
    "delete_expired",
    "head_revision",
    "is_at_head",
    "load_bindings",
    "make_engine",
    "migrate",
    "replace_bindings",
    "session_factory",
]
