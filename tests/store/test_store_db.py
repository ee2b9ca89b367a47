"""Engines and migrations: the schema is created by Alembic in a fresh SQLite file, with the pragmas set."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from softswitch.store import (
    SchemaError,
    check_schema,
    current_revision,
    head_revision,
    is_at_head,
    make_engine,
    migrate,
)
from softswitch.store.models import Base


def test_migrate_creates_the_schema_in_a_new_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nested/dir/softswitch.db"
    assert current_revision(url) is None  # creates the directory, finds no schema
    assert not is_at_head(url)
    with pytest.raises(SchemaError, match="empty"):
        check_schema(url)

    migrate(url)

    assert (tmp_path / "nested" / "dir" / "softswitch.db").exists()
    assert current_revision(url) == head_revision()
    assert is_at_head(url)
    check_schema(url)
    engine = make_engine(url)
    try:
        inspector = inspect(engine)
        assert {"bindings", "meta", "alembic_version"} <= set(inspector.get_table_names())
        indexes = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes("bindings")}
        assert indexes["ix_bindings_aor"] == ["aor"]
        columns = {c["name"] for c in inspector.get_columns("bindings")}
        assert columns == {c.name for c in Base.metadata.tables["bindings"].columns}
    finally:
        engine.dispose()


def test_migrate_twice_is_harmless(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    migrate(url)
    migrate(url)
    assert is_at_head(url)


def test_migrations_match_the_models(tmp_path: Path) -> None:
    """Autogenerate finds nothing to do: the migration scripts and models.py describe the same schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(f"sqlite:///{tmp_path}/s.db")
    try:
        migrate(engine)
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/s.db")
    try:
        with engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA busy_timeout").scalar() == 5000
    finally:
        engine.dispose()


def test_in_memory_database_is_shared_between_threads() -> None:
    import threading

    engine = make_engine("sqlite://")
    migrate(engine)
    seen: list[bool] = []
    thread = threading.Thread(target=lambda: seen.append(is_at_head(engine)))
    thread.start()
    thread.join(10)
    assert seen == [True]
    engine.dispose()
