"""Alembic environment: outcrop always hands Alembic an open connection (see ``outcrop.store.engine``)."""

from alembic import context

from outcrop.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
