"""Opening the registry database: SQLite under $ANYTUNE_HOME by default, any SQLAlchemy URL by
$ANYTUNE_DATABASE_URL (PostgreSQL included), brought to the newest schema on open."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from anytune.errors import RegistryError
from anytune.locks import file_lock

# The newest migration in migrations/versions. A test checks it against Alembic's own idea of head, so
# that opening an up-to-date database never has to import Alembic.
HEAD_REVISION = "0007"
MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_SECONDS = 30  # how long a SQLite connection waits for another's lock, WAL switch included


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": BUSY_SECONDS})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={BUSY_SECONDS * 1000}")
            cur.execute("PRAGMA foreign_keys=ON")
            _use_wal(cur)
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _use_wal(cur) -> None:  # type: ignore[no-untyped-def]
    """Switch the file to WAL once; later connections find it there (the mode lives in the file).

    SQLite can answer a journal-mode change with "database is locked" at once, without waiting on the
    busy timeout, while other connections open the same fresh file (six submits started together
    failed this way about one run in twenty): so the mode is read before it is changed, and a change
    that meets a lock is tried again for up to the busy timeout."""
    import sqlite3
    import time

    deadline = time.monotonic() + BUSY_SECONDS
    delay = 0.005
    while True:
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            contended = "locked" in str(exc) or "busy" in str(exc)
            if not contended or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def open_engine(url: str) -> Engine:
    """An engine on `url` whose schema is at HEAD_REVISION, migrating if it is older.

    Several processes may open a fresh registry at once (`anytune run --detach` started in a loop): the
    migration runs under a lock (a file lock beside a SQLite database, an advisory lock on PostgreSQL) and
    each process looks at the revision again once it holds it, so exactly one of them migrates."""
    try:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(url)
        if current_revision(engine) != HEAD_REVISION:
            with _migration_lock(engine, url):
                if current_revision(engine) != HEAD_REVISION:
                    upgrade(engine)
        return engine
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        raise RegistryError(
            f"cannot open the registry at {_redact(url)}: {type(exc).__name__}: {reason}",
            hint="check ANYTUNE_DATABASE_URL, or unset it to use SQLite under $ANYTUNE_HOME",
        ) from None


@contextmanager
def _migration_lock(engine: Engine, url: str) -> Iterator[None]:
    if url.startswith("sqlite:///"):
        with file_lock(Path(url.removeprefix("sqlite:///")).expanduser().with_suffix(".migrate.lock")):
            yield
        return
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
        return
    yield  # other databases: the migration's own transaction is all there is


_LOCK_KEY = 0x616E7974756E65  # "anytune"


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database url>"
