"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from outcrop.store.engine import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A migrated SQLite store of its own (a test module may define its own ``store`` instead)."""
    store = Store(f"sqlite:///{tmp_path / 'db' / 'outcrop.db'}")
    store.migrate()
    yield store
    store.close()
