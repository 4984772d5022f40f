"""A Ray worker that dies once mid-unit, as a killed one would: test tooling, not the package's.

:func:`crash_once_hook` gives a ``worker_process_setup_hook`` for ``ray.init``: every worker
process the cluster starts wraps the backend's shard encoder so that, while ``folder/armed``
exists, the first worker to reach a unit creates ``folder/crashed`` and exits abruptly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def crash_once_hook(folder: Path) -> Callable[[], None]:
    armed, crashed = folder / "armed", folder / "crashed"

    def install() -> None:
        from spurbench.features import ray_backend

        encode_rows = ray_backend._encode_rows

        def dying(*args: Any, **kwargs: Any) -> Any:
            if armed.exists():
                try:
                    os.close(os.open(crashed, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    pass
                else:
                    os._exit(17)
            return encode_rows(*args, **kwargs)

        ray_backend._encode_rows = dying

    return install
