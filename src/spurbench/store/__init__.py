"""Results store (DuckDB)."""

from spurbench.store.frames import ResultFrames, load_results
from spurbench.store.results import DEFAULT_PATH, ResultsStore

__all__ = ["DEFAULT_PATH", "ResultFrames", "ResultsStore", "load_results"]
