"""Alembic's environment for Slot: always run through `slot.database`, which hands over an
open connection (so one transaction covers the check and the upgrade)."""

from __future__ import annotations

from alembic import context

from slot.database import schema_metadata

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise SystemExit("run migrations with `slot db upgrade`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=schema_metadata(),
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
