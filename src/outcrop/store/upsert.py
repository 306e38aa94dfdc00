"""Dialect-aware statements that SQLAlchemy Core spells differently on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Executable


def insert_ignore(conn: Connection, table: Table, values: dict[str, Any]) -> Executable:
    """INSERT that does nothing when the primary key already exists."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).values(**values).on_conflict_do_nothing()
