"""The :class:`~spurbench.runtime.Runtime` of a command's shared options, built in one place."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spurbench.runtime import Runtime


def command_runtime(*, workers: int | None, quiet: bool, as_json: bool, **options: Any) -> Runtime:
    """``--workers`` decode the images; progress bars unless ``--quiet`` or ``--json`` (whose
    stdout holds the JSON alone); ``options`` are the other Runtime fields the command has
    (``--precision`` and ``--engine`` left unset, None, take the Runtime's default)."""
    from spurbench.runtime import Runtime

    chosen = {
        k: v.value if isinstance(v, Enum) else v  # the library takes plain strings
        for k, v in options.items()
        if v is not None or k not in _AUTO_DEFAULTS
    }
    return Runtime(decode_workers=workers, show_progress=not (quiet or as_json), **chosen)


#: Options whose default is the Runtime's own (``auto``, or what the environment pins).
_AUTO_DEFAULTS = ("precision", "engine")
