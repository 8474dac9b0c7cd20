"""The database's schema comes from Alembic's migrations (slot/migrations), on SQLite and on
PostgreSQL: they build exactly what the SQLModel classes declare, an SQLite file is upgraded
when a process opens it, a server database that is behind is refused with the command to run,
and a database made before migrations existed is taken over without losing a row."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import Session

from activities.campaign import DoNotCallList
from activities.records import make_engine
from slot.database import (
    SchemaBehind,
    check_at_start,
    current_revision,
    ensure_schema,
    head_revision,
    schema_metadata,
    upgrade,
)
from slot.payload_codec import Keyring
from tests.integration.databases import BACKENDS, blank_database


@pytest.fixture(params=BACKENDS)
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from blank_database(request.param, tmp_path, "migrations")


def test_the_migrations_build_exactly_the_models(blank_url: str) -> None:
    engine = make_engine(blank_url)
    try:
        assert upgrade(engine) == ""
        with engine.connect() as connection:
            assert current_revision(connection) == head_revision()
            diff = compare_metadata(MigrationContext.configure(connection), schema_metadata())
        assert diff == [], f"the models and the migrations differ: {diff}"
        assert upgrade(engine) == head_revision(), "a second upgrade changes nothing"
    finally:
        engine.dispose()


def test_a_server_database_behind_is_refused_and_sqlite_is_upgraded(blank_url: str) -> None:
    engine = make_engine(blank_url)
    try:
        if engine.dialect.name == "sqlite":
            ensure_schema(engine, blank_url)
            with engine.connect() as connection:
                assert current_revision(connection) == head_revision()
            return
        with pytest.raises(SchemaBehind, match=r"revision none, .* run `slot db upgrade`"):
            ensure_schema(engine, blank_url)
        with pytest.raises(SchemaBehind):
            DoNotCallList(blank_url).contains("+15550100")
        assert not inspect(engine).has_table("dnc"), "refused means nothing was created"
    finally:
        engine.dispose()


def test_processes_starting_together_on_a_new_sqlite_file_all_find_it_upgraded(
    tmp_path: Path,
) -> None:
    """Two workers, an edge and the API started at once each open the records file first. All
    must start (one upgrades, the others wait for it), and the file is left in write-ahead-log
    mode. Six openers, let go together by a barrier, several rounds: without turns at upgrading,
    some opener meets half a schema ("table call_records already exists") in most rounds."""
    openers = 6
    for round_ in range(4):
        url = f"sqlite:///{tmp_path / f'round-{round_}.db'}"
        together = threading.Barrier(openers)

        def open_at_once(url: str = url, together: threading.Barrier = together) -> None:
            together.wait()
            check_at_start(url)

        with ThreadPoolExecutor(openers) as pool:
            for opening in [pool.submit(open_at_once) for _ in range(openers)]:
                opening.result()
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                assert current_revision(connection) == head_revision()
                assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        finally:
            engine.dispose()


def test_a_database_from_before_migrations_keeps_its_rows(blank_url: str) -> None:
    """Tables as `create_all` made them (revision 0001, no alembic_version): stamped, then
    upgraded, the do-not-call entries still there."""
    engine = make_engine(blank_url)
    try:
        upgrade_to_first(engine)
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE alembic_version"))
        with Session(engine) as session:
            session.execute(
                text("INSERT INTO dnc (phone, reason, added_at) VALUES (:p, :r, :a)"),
                {"p": "+15550100", "r": "asked", "a": datetime(2026, 1, 5, tzinfo=UTC)},
            )
            session.commit()
        assert upgrade(engine) == "0001"
        with engine.connect() as connection:
            assert current_revision(connection) == head_revision()
        assert DoNotCallList(blank_url).contains("+1 555 0100")
    finally:
        engine.dispose()


def upgrade_to_first(engine: object) -> None:
    from alembic import command
    from sqlalchemy import Engine

    from slot.database import alembic_config

    assert isinstance(engine, Engine)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")


def test_slot_db_upgrade_and_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    env = {"SLOT_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}

    def slot(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "slot.cli", "db", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    behind = slot("current")
    assert behind.returncode == 1 and "run `slot db upgrade`" in behind.stdout
    done = slot("upgrade")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"empty -> {head_revision()}")


def test_the_api_refuses_a_server_database_behind(tmp_path: Path) -> None:
    """A process, not just the function: `slot api` on a PostgreSQL schema never migrated
    exits with one line naming the revision and what to run (the worker runs the same check)."""
    for url in blank_database("postgresql", tmp_path, "refused"):
        env = {
            "PATH": "/usr/bin:/bin",
            "SLOT_DATA_DIR": str(tmp_path),
            "SLOT_DATABASE_URL": url,
            "SLOT_API_TOKEN": "a-token-long-enough-for-the-api",
            "SLOT_PAYLOAD_KEYS": Keyring.new_entry("refused"),
        }
        command = [sys.executable, "-m", "slot.cli", "api"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("api not started: database postgresql+psycopg://")
        assert f"revision none, this code needs {head_revision()}" in line
        assert "run `slot db upgrade`" in line
