"""Building engines and bringing their schema up to date. Nothing here runs at import time."""

from __future__ import annotations

import contextlib
import re
import tempfile
import weakref
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Dialect, Engine, Insert, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, ExceptionContext, make_url

from tracejury.core.errors import InvalidInput

if TYPE_CHECKING:  # alembic costs ~11 MiB per process; ingest processes never migrate
    from alembic.config import Config as AlembicConfig

__all__ = ["alembic_config", "insert_ignoring_conflicts", "make_engine", "migrate", "open_engine"]


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API connection
    cur = dbapi_conn.cursor()
    # Only takes effect on a new file: 16 KiB pages pack ~2 KiB trace bodies without the
    # half-empty 4 KiB pages the default gives (measured: 12% faster ingest, smaller file).
    cur.execute("PRAGMA page_size=16384")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def insert_ignoring_conflicts(table: Table, dialect: Dialect) -> Insert:
    """``INSERT … ON CONFLICT DO NOTHING`` for the dialect: idempotent writes (a rerun, a
    redelivered chunk, a concurrent writer) keep the row already stored."""
    if dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def _nul_is_invalid_input(context: ExceptionContext) -> None:
    """PostgreSQL text cannot hold U+0000 (psycopg refuses to send it): a parameter with one is
    bad input (a release id with a NUL in an API query), not a server error. SQLite takes the
    value and simply matches nothing; ingest refuses such values on both backends."""
    exc = context.original_exception
    if not (type(exc).__module__.startswith("psycopg") and "NUL (0x00)" in str(exc)):
        return
    params = context.parameters
    rows = params if isinstance(params, list | tuple) else [params]
    bad = next((k for row in rows if isinstance(row, dict) for k, v in row.items()
                if isinstance(v, str) and "\x00" in v), "a value")  # fmt: skip
    raise InvalidInput(f"{re.sub(r'_[0-9]+$', '', bad)}: contains a NUL character (U+0000)") from exc


def _in_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL mode and a busy timeout.

    An in-memory SQLite URL (``sqlite://``) gets a temporary file instead, removed when the
    engine is collected or the process ends: an in-memory database is private to one
    connection, and scoring reads and writes the store from threads, each on its own."""
    if url.startswith("sqlite"):
        parsed = make_url(url)
        scratch = None
        if _in_memory(parsed):
            scratch = tempfile.TemporaryDirectory(prefix="tracejury-")
            parsed = parsed.set(database=str(Path(scratch.name) / "store.db"), query={})
        engine = create_engine(parsed, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        if scratch is not None:
            weakref.finalize(engine, scratch.cleanup)  # the file goes with the engine (or at exit)
        return engine
    engine = create_engine(url, pool_pre_ping=True)
    event.listen(engine, "handle_error", _nul_is_invalid_input)
    return engine


def alembic_config(engine: Engine) -> AlembicConfig:
    """An Alembic config pointing at the shipped migrations, bound to ``engine``."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("tracejury.store") / "migrations"))
    cfg.attributes["engine"] = engine
    return cfg


_MIGRATION_LOCK = 0x7472_6A79_6D69_67  # "trjymig": PostgreSQL advisory lock key of migrations


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Held while one process migrates, so processes started together (a worker, ``serve``, a
    CLI command on a new store) never run the same migration twice: PostgreSQL's advisory lock,
    an exclusive lock on ``<database>.migrate.lock`` beside a SQLite file."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
                conn.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    import fcntl

    with open(Path(database).with_name(Path(database).name + ".migrate.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` unless it is already there (one process at a time:
    the others wait, then find it done)."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = alembic_config(engine)
    head = ScriptDirectory.from_config(cfg).get_current_head()

    def current() -> str | None:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    if revision == "head" and current() == head:
        return
    with _migration_lock(engine):
        if revision == "head" and current() == head:  # another process migrated meanwhile
            return
        command.upgrade(cfg, revision)


def open_engine(url: str) -> Engine:
    """An engine whose schema is at the newest migration."""
    engine = make_engine(url)
    migrate(engine)
    return engine
