"""Alembic environment: runs migrations on the engine passed in ``config.attributes``."""

from alembic import context
from sqlmodel import SQLModel

import tracejury.store.tables  # noqa: F401 - registers the tables on SQLModel.metadata

config = context.config
target_metadata = SQLModel.metadata

engine = config.attributes.get("engine")
if engine is None:  # the alembic CLI: build one from settings
    from tracejury.settings import Settings
    from tracejury.store.engine import make_engine

    engine = make_engine(Settings().database_url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
