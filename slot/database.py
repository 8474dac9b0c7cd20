"""Slot's own database (call records, campaigns, leads, bookings, the do-not-call list): its
schema is Alembic's migrations in `slot/migrations`, on SQLite (the embedded default) and on
PostgreSQL alike.

`slot db upgrade` brings a database to the code's schema. A process that opens the database
checks it first: an SQLite file is upgraded in place (one machine, the dev stack; processes
starting together take turns), a server database that is behind is refused with one line saying
what to run, so several workers never race to migrate a shared database. A database made
before migrations existed (tables created by `create_all`) is recognised and stamped as the first
revision before upgrading.
"""

from __future__ import annotations

import fcntl
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, MetaData, inspect
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BEFORE_MIGRATIONS = "0001"
"""The revision whose schema `create_all` made before Slot had migrations."""


class SchemaBehind(RuntimeError):
    """The database's schema is older (or newer) than this code's."""


def schema_metadata() -> MetaData:
    """Every table Slot keeps, as the SQLModel classes declare them."""
    from sqlmodel import SQLModel

    import activities.campaign
    import activities.records
    import activities.sales_records  # noqa: F401

    return SQLModel.metadata


def shown(database_url: str) -> str:
    """The URL as it may be printed: without its password."""
    return make_url(database_url).render_as_string(hide_password=True)


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic is imported only where migrations run: every process that keeps records (the
    edge too, through the workflows' activity types) would otherwise pay for it at start."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS}"
    return head


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Bring the database to the head revision; returns the revision it was at ('' if empty)."""
    from alembic import command

    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin set-up, line by line
    with engine.begin() as connection:
        was = current_revision(connection)
        if was is None and inspect(connection).has_table("call_records"):
            command.stamp(alembic_config(connection), BEFORE_MIGRATIONS)
            was = BEFORE_MIGRATIONS
        command.upgrade(alembic_config(connection), "head")
    return was or ""


def ensure_schema(engine: Engine, database_url: str, *, auto_upgrade: bool | None = None) -> None:
    """Return when the schema is the code's (an SQLite file in write-ahead-log mode); upgrade it
    if allowed (default: SQLite only), else raise `SchemaBehind` naming the revisions and the
    command to run."""
    head = head_revision()
    at = _revision(engine)
    sqlite = engine.dialect.name == "sqlite"
    if at == head and (not sqlite or _journal_mode(engine) in ("wal", "memory")):
        return
    if at != head and not (sqlite if auto_upgrade is None else auto_upgrade):
        raise SchemaBehind(
            f"database {shown(database_url)} has schema revision {at or 'none'}, this code needs "
            f"{head}: run `slot db upgrade` (with the same SLOT_DATABASE_URL)"
        )
    with _upgrading_alone(database_url):
        if sqlite:
            _journal_mode(engine, "wal")
        if _revision(engine) != head:
            upgrade(engine)


def _revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return current_revision(connection)


def _journal_mode(engine: Engine, new: str | None = None) -> str:
    """An SQLite file's journal mode. Write-ahead log lets the worker, the edge and the API read
    while one writes; the mode is kept in the file, so it is set once, by the process upgrading."""
    pragma = f"PRAGMA journal_mode={new}" if new else "PRAGMA journal_mode"
    with engine.connect() as connection:
        return str(connection.exec_driver_sql(pragma).scalar())


@contextmanager
def _upgrading_alone(database_url: str) -> Iterator[None]:
    """Processes that start together on one SQLite file (two workers, an edge and the API) take
    turns at upgrading it. SQLite runs each CREATE TABLE on its own, so a second process upgrading
    at once meets half a schema ("table call_records already exists") and stops; the one that
    waits finds the schema at head and goes on."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        yield
        return
    with open(f"{url.database}.upgrade-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def check_at_start(database_url: str) -> None:
    """For a process starting (worker, API): raises `SchemaBehind` rather than run behind."""
    from activities.records import make_engine

    engine = make_engine(database_url)
    try:
        ensure_schema(engine, database_url)
    finally:
        engine.dispose()


def upgrade_main(database_url: str) -> int:
    """`slot db upgrade`: migrate, and say from which revision to which."""
    from activities.records import make_engine

    engine = make_engine(database_url)
    try:
        was = upgrade(engine)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"slot db upgrade: {shown(database_url)}: {reason}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    head = head_revision()
    where = shown(database_url)
    print(f"{where}: already at {head}" if was == head else f"{where}: {was or 'empty'} -> {head}")
    return 0


def current_main(database_url: str) -> int:
    """`slot db current`: the database's revision against the code's; 1 when they differ."""
    from activities.records import make_engine

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            at = current_revision(connection)
    finally:
        engine.dispose()
    head = head_revision()
    state = "up to date" if at == head else "behind: run `slot db upgrade`"
    print(f"{shown(database_url)}: at {at or 'none'}, code needs {head} ({state})")
    return 0 if at == head else 1
