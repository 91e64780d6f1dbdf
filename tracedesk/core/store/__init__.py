"""The local SQLite database: ``schema`` (tables and migrations), ``db`` (the connection,
transactions and writes) and ``queries`` (typed reads), joined in ``Store``."""

from __future__ import annotations

from tracedesk.core.store.db import Database, StoreError, default_db_path, to_pusd
from tracedesk.core.store.queries import Queries
from tracedesk.core.store.schema import INSERT_STEP_SQL, SCHEMA_VERSION

__all__ = ["INSERT_STEP_SQL", "SCHEMA_VERSION", "Store", "StoreError", "default_db_path",
           "to_pusd"]  # fmt: skip


class Store(Database, Queries):
    """A tracedesk database. Open with ``Store(path)``; use as a context manager."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
