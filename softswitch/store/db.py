"""Engines, schema migrations and the schema check.

SQLite by default (one file, no server), PostgreSQL by URL. For SQLite every connection gets:

* `journal_mode=WAL`: readers (the control API, reports) never block the writer thread and vice versa;
* `synchronous=NORMAL`: in WAL mode a commit is durable against a crash of *this process* (the WAL pages
  are written to the OS before COMMIT returns) but the last commits can be lost on power failure or an OS
  crash, because the WAL is fsynced only at checkpoints. That is the trade the design makes for
  registrations; FULL would fsync on every group commit;
* `busy_timeout`: wait for a lock (another process, a checkpoint) instead of failing at once;
* `foreign_keys=ON`: SQLite leaves them off unless asked.

pysqlite (Python < 3.12) manages transactions itself and starts them lazily, only before DML; following
the SQLAlchemy documentation we turn that off and emit BEGIN ourselves, so each Session transaction is a
real SQLite transaction (reads included) and SAVEPOINT works.

Migrations are Alembic scripts inside this package (`migrations/`), found from `__file__`, so they run
from an installed package without an alembic.ini.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

__all__ = [
    "SchemaError",
    "check_schema",
    "current_revision",
    "head_revision",
    "is_at_head",
    "make_engine",
    "migrate",
    "session_factory",
]

log = logging.getLogger("softswitch.store")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000


class SchemaError(RuntimeError):
    """The database schema is not the one this code expects."""


def make_engine(url: str) -> Engine:
    """An Engine for `url`; for SQLite, creates the file's directory and sets the pragmas above."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)

    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or parsed.query.get("mode") == "memory"
    kwargs: dict[str, Any] = {}
    if in_memory:
        # One shared connection, so the writer thread and readers see the same in-memory database.
        kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    elif not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see the module docstring)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose loaded objects stay readable after commit (results cross threads as plain data)."""
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def migrate(url: str | Engine) -> None:
    """Bring the database to the newest schema (Alembic `upgrade head`); safe to run at every start."""
    engine, owned = _engine(url)
    try:
        config = _alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        if owned:
            engine.dispose()


def head_revision() -> str:
    """The newest migration this code ships."""
    heads = ScriptDirectory.from_config(_alembic_config()).get_heads()
    if len(heads) != 1:
        raise SchemaError(f"migrations have {len(heads)} heads; expected exactly one")
    return heads[0]


def current_revision(url: str | Engine) -> str | None:
    """The revision the database is at; None for an empty (never migrated) database."""
    engine, owned = _engine(url)
    try:
        with engine.connect() as connection:
            heads = MigrationContext.configure(connection).get_current_heads()
    finally:
        if owned:
            engine.dispose()
    return heads[0] if len(heads) == 1 else None


def is_at_head(url: str | Engine) -> bool:
    return current_revision(url) == head_revision()


def check_schema(url: str | Engine) -> None:
    """Raise SchemaError unless the database is at the newest revision (for read-only tools)."""
    current, head = current_revision(url), head_revision()
    if current != head:
        state = "empty" if current is None else f"at revision {current}"
        raise SchemaError(
            f"database is {state}, this softswitch expects {head}; `softswitch serve` migrates it"
        )


def _engine(url: str | Engine) -> tuple[Engine, bool]:
    if isinstance(url, Engine):
        return url, False
    return make_engine(url), True
