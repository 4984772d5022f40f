"""Results store (DuckDB)."""

from spurbench.store.results import DEFAULT_PATH, ResultsStore

__all__ = ["DEFAULT_PATH", "ResultsStore"]
