"""Alembic environment: migrations run on a synchronous engine (sqlite3 or psycopg)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from matchcast.db.tables import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url") or "sqlite:///./matchcast.db"
engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
