"""Files the user names on the command line (class lists, templates, candidate sets).

Each is read with one clear error for the usual mistakes (missing, a folder, not UTF-8, not
JSON) instead of a traceback from deep inside the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spurbench.errors import ClassListError, SpurbenchError

__all__ = ["read_json_file", "read_text_file"]


def read_text_file(
    path: str | Path, what: str, error: type[SpurbenchError] = ClassListError
) -> str:
    """A UTF-8 text file the user named, or one error saying why it cannot be read."""
    p = Path(path)
    if not p.exists():
        raise error(f"{what} {p} does not exist.")
    if p.is_dir():
        raise error(f"{what} {p} is a folder; a file is needed.")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{what} {p} is not UTF-8 text (byte {e.start}); save it as UTF-8.") from None
    except OSError as e:
        raise error(f"{what} {p} cannot be read ({e.strerror or e}).") from None


def read_json_file(path: str | Path, what: str) -> Any:
    """A JSON file the user named, or one error saying where it is malformed."""
    text = read_text_file(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ClassListError(
            f"{what} {path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}."
        ) from None
