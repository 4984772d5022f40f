"""Errors a user can act on.

Every failure that comes from user input (a model name, a dataset folder, a class list, a
checkpoint) is raised as a :class:`SpurbenchError` subclass whose message says what was wrong
and what to do instead. The CLI prints these messages without a traceback; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SpurbenchError(Exception):
    """Base class of errors caused by input the user can fix."""


class UnknownModelError(SpurbenchError):
    """A model name or pretrained tag that no registry knows."""


class WeightsUnavailableError(SpurbenchError):
    """Weights exist by name but could not be fetched (offline, no cache) or read."""


class UnsafeCheckpointError(SpurbenchError):
    """A checkpoint that would need arbitrary code execution (pickle) to load."""


class DatasetError(SpurbenchError):
    """A dataset folder or manifest that does not match the expected layout or contents."""


class ClassListError(SpurbenchError):
    """Classes of a dataset that the class list or protocol cannot serve."""


class StoreError(SpurbenchError):
    """The results store could not be read or written."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during long work; the message says what was kept and how to resume.

    A KeyboardInterrupt still (so nothing catches it as an ordinary error); the CLI prints the
    message and exits 130 like any interrupted Unix command.
    """


def closest(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Return up to ``n`` candidates closest to ``name`` (case-insensitive), best first."""
    pool = {c.lower(): c for c in candidates}
    return [pool[m] for m in difflib.get_close_matches(name.lower(), list(pool), n=n, cutoff=0.5)]
