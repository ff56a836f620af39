"""Engine set-up for SQLite and PostgreSQL, connection checks, and the one-writer lock."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import math
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from mcdata.errors import DatabaseError, LockedError, masked_url, register_secret, url_secrets
from mcdata.private_files import PRIVATE_FILE_MODE, make_private_dir, open_private

log = logging.getLogger("mcdata")

SQLITE_BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_S = 4  # a host that drops packets must still give exit 4 within 10 s


def normalize_url(raw: str) -> URL:
    """Parse a database URL; postgres:// and postgresql:// use psycopg 3."""
    try:
        url = make_url(raw)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise DatabaseError(
            "the database URL cannot be parsed",
            "expected sqlite:///path/to/file.db or postgresql://user:password@host/dbname",
        ) from exc
    for secret in [*([str(url.password)] if url.password else []), *url_secrets(raw)]:  # the query's too (libpq)
        register_secret(secret)
    if url.drivername in ("postgres", "postgresql", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        if url.database and url.database.startswith("~"):
            return url.set(database=str(Path(url.database).expanduser()))
        return url
    raise DatabaseError(
        f"unsupported database {url.drivername!r}",
        "use a sqlite:/// or postgresql:// URL",
    )


@contextmanager
def engine_for(url: str, read_only: bool = False) -> Iterator[Engine]:
    """The database's engine, disposed at the end; a database-level failure inside names the database (its
    password hidden)."""
    engine = make_engine(url, read_only=read_only)
    log.debug("database: %s%s", display_url(engine.url), " (read-only)" if read_only else "")
    try:
        yield engine
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        if getattr(exc.orig, "sqlstate", None) is None and engine.dialect.name == "sqlite":
            raise DatabaseError(f"{display_url(engine.url)}: {str(exc.orig).strip().splitlines()[0]}",
                                "check the file's and its folder's permissions") from exc
        raise
    finally:
        engine.dispose()


def display_url(url: URL) -> str:
    """The URL with its password hidden; a SQLite database opened read-only shows as its plain path."""
    if url.drivername.startswith("sqlite") and url.query.get("uri") and str(url.database).startswith("file:"):
        url = url.set(database=str(url.database)[5:].split("?")[0], query={})
    return masked_url(url.render_as_string(hide_password=True))


class _SampleStddev:
    """Sample standard deviation (n - 1) for SQLite, computed in two passes with exact sums."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value: float | None) -> None:
        if value is not None:
            self.values.append(float(value))

    def finalize(self) -> float | None:
        n = len(self.values)
        if n < 2:
            return None
        mean = math.fsum(self.values) / n
        deviations = [v - mean for v in self.values]
        correction = math.fsum(deviations)
        return math.sqrt(max(0.0, (math.fsum(d * d for d in deviations) - correction * correction / n) / (n - 1)))


def round_significant(value: float | None, digits: int) -> float | None:
    """`value` rounded to `digits` significant digits (the rank key of mcdata.metrics)."""
    if value is None or value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def _sqrt(value: float | None) -> float | None:
    """sqrt, for SQLite builds compiled without the math functions."""
    return None if value is None or value < 0 else math.sqrt(value)


def _set_up_sqlite_read_only(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    dbapi_connection.create_aggregate("stddev_samp", 1, _SampleStddev)  # type: ignore[arg-type]
    dbapi_connection.create_function("sqrt", 1, _sqrt, deterministic=True)
    dbapi_connection.create_function("mcdata_round_sig", 2, round_significant, deterministic=True)
    dbapi_connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")


def _set_up_sqlite(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    _set_up_sqlite_read_only(dbapi_connection, _record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def make_engine(raw_url: str, read_only: bool = False) -> Engine:
    """An engine for the URL. SQLite: the file and its folder are created on first use, or with
    `read_only` never: a missing file is a DatabaseError, and the file is opened read-only."""
    url = normalize_url(raw_url)
    if url.drivername.startswith("sqlite"):
        on_disk = bool(url.database) and url.database != ":memory:"
        if on_disk and read_only:
            path = Path(str(url.database))
            if not path.exists():
                raise DatabaseError(f"there is no database at {path}",
                                    "run `mcdata run` first, or point --database-url at your database")
            url = url.set(database=f"file:{path}?mode=ro", query={"uri": "true"})
        elif on_disk:
            _create_private(Path(str(url.database)))
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        sa.event.listen(engine, "connect", _set_up_sqlite_read_only if read_only else _set_up_sqlite)
        return engine
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "mcdata"},
    )


def _create_private(database: Path) -> None:
    """The database's folder (0700) and an empty file (0600), whatever the umask, if they are missing;
    SQLite creates its -wal and -shm files with the database file's mode."""
    try:
        make_private_dir(database.parent)
        fd = os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        os.close(fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise DatabaseError(f"cannot create the database {database}: {exc.strerror}",
                            "choose another place with --database-url") from exc


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@contextmanager
def connect(engine: Engine) -> Iterator[sa.Connection]:
    """A connection, with "cannot connect" turned into a one-line DatabaseError (exit 4)."""
    try:
        connection = engine.connect()
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(
            f"cannot connect to the database at {display_url(engine.url)}: {_first_line(exc.orig)}",
            "check --database-url / MCDATA_DATABASE_URL and that the server is running",
        ) from exc
    with connection:
        yield connection


def _first_line(error: BaseException | None) -> str:
    text = str(error or "").strip().splitlines()
    return text[0] if text else "unknown error"


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a name."""
    return int.from_bytes(hashlib.sha256(f"mcdata:{name}".encode()).digest()[:8], "big", signed=True)


def _held() -> None:
    pass


def _postgres_lock(engine: Engine, key: int) -> Iterator[Callable[[], None]]:
    with connect(engine) as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        if not connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar():
            raise LockedError("another mcdata run holds the lock on this database", "try again later")

        def still_held() -> None:  # a session lock is lost only with its session
            try:
                connection.execute(sa.text("SELECT 1"))
            except sa.exc.DBAPIError as exc:
                raise DatabaseError("lost the database connection that held the run's lock; nothing was written",
                                    "check that the database is up, then rerun") from exc

        try:
            yield still_held
        finally:
            with contextlib.suppress(sa.exc.SQLAlchemyError):  # a lost connection took its lock with it
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})


@contextmanager
def writer_lock(engine: Engine, name: str = "writer") -> Iterator[Callable[[], None]]:
    """Hold the one-writer lock or raise LockedError at once (exit 75).

    Yields a check that each write transaction makes before it commits: it raises (exit 4) if the lock is
    no longer ours. PostgreSQL: a session-level advisory lock on a connection of its own in autocommit
    mode, so it holds no transaction open through the HTTP work (managed servers end sessions "idle in
    transaction"); it is freed when the process or the connection dies. SQLite: flock on a file beside
    the database.
    """
    if is_postgres(engine):
        yield from _postgres_lock(engine, lock_key(name))
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield _held
        return
    # beside the real file: a symlink to the database must lock the same file
    lock_path = Path(f"{os.path.realpath(database)}.lock")
    try:
        fd = open_private(lock_path, os.O_RDWR, create=True)
    except OSError as exc:
        raise DatabaseError(f"cannot use the lock file {lock_path}: {exc.strerror or exc}",
                            "mcdata's database folder must be writable by this user only") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(
                f"another mcdata run holds the lock {lock_path}", "try again later"
            ) from None
        yield _held
    finally:
        os.close(fd)
