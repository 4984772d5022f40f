"""Open a report in the system's headless Chromium, for the browser tests and
``scripts/screenshot_report.py`` (test tooling, not part of the package).

Playwright drives the Debian ``chromium`` package (``executable_path``) instead of downloading
its own browser build: the download needs network access the project does not assume, and the
system browser is what a reader of the report actually has. The flags keep Chromium from
reaching out (updates, sync, metrics) so an offline page is tested offline.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM_ARGS", "chromium_path", "open_report"]

CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def chromium_path() -> str | None:
    """The system Chromium: ``$SPURBENCH_CHROMIUM``, the Debian paths, or ``chromium`` on PATH."""
    env = os.environ.get("SPURBENCH_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for c in _CANDIDATES:
        if Path(c).exists():
            return c
    return shutil.which("chromium")


@contextmanager
def open_report(
    html: str | Path,
    *,
    width: int = 1280,
    height: int = 900,
    scale: float = 1.0,
    problems: list[str] | None = None,
) -> Iterator[Any]:
    """A Playwright page showing ``html`` (a local file), fully loaded.

    Requests that leave the machine are refused, so a page that still fetched something would
    visibly break instead of passing; each refused URL, console error and uncaught script error
    is appended to ``problems`` when given.
    """
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError(
            "No Chromium found: install the system package (apt-get install chromium) or set "
            "SPURBENCH_CHROMIUM to a Chromium binary."
        )
    log = problems if problems is not None else []

    def route(r: Any) -> None:
        if r.request.url.startswith(("file:", "data:", "about:")):
            r.continue_()
        else:
            log.append(f"blocked request: {r.request.url}")
            r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=list(CHROMIUM_ARGS))
        try:
            ctx = browser.new_context(
                viewport={"width": width, "height": height}, device_scale_factor=scale
            )
            ctx.route("**/*", route)
            page = ctx.new_page()
            page.on(
                "console",
                lambda m: log.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: log.append(f"script error: {e}"))
            page.goto(Path(html).resolve().as_uri(), wait_until="load")
            yield page
        finally:
            browser.close()
