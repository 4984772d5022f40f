"""The :class:`~spurbench.runtime.Runtime` of a command's shared options, built in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spurbench.runtime import Runtime


def command_runtime(*, workers: int | None, quiet: bool, as_json: bool, **options: Any) -> Runtime:
    """``--workers`` decode the images; progress bars unless ``--quiet`` or ``--json`` (whose
    stdout holds the JSON alone); ``options`` are the other Runtime fields the command has."""
    from spurbench.runtime import Runtime

    return Runtime(decode_workers=workers, show_progress=not (quiet or as_json), **options)
