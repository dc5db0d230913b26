"""State: one embedded SQLite database (WAL) plus in-memory indexes for the List RPCs."""

from cri_py.store.db import Database, DatabaseUnusable
from cri_py.store.table import Record, RecordTable

__all__ = ["Database", "DatabaseUnusable", "Record", "RecordTable"]
