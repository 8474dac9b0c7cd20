"""Slot's database on each backend a test runs on: an SQLite file, and the machine's PostgreSQL
(127.0.0.1:5432, trust auth, database `test`; CI has it; `SLOT_TEST_POSTGRES_URL` points
elsewhere), where each test gets a schema of its own, dropped after, so parallel test workers
never meet. The session's time zone is not UTC, as a server's may not be. When PostgreSQL does
not answer, its tests skip saying so, with the URL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SESSION_TIME_ZONE = "America/New_York"
BACKENDS = ["sqlite", "postgresql"]


def postgres_url() -> URL:
    return make_url(os.environ.get("SLOT_TEST_POSTGRES_URL", POSTGRES_URL))


def blank_database(backend: str, tmp_path: Path, prefix: str) -> Iterator[str]:
    """The URL of an empty database on `backend`, removed after."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/slot.db"
        return
    base = postgres_url()
    admin = create_engine(base, connect_args={"connect_timeout": 3})
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as error:
        admin.dispose()
        reason = str(error).strip().splitlines()[0]
        pytest.skip(f"PostgreSQL at {base.render_as_string()} not reachable: {reason}")
    options = f"-csearch_path={schema} -ctimezone={SESSION_TIME_ZONE}"
    try:
        yield base.update_query_dict({"options": options}).render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
