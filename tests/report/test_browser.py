"""The report opened in a real headless browser: images decode, figures render, the table sorts.

The browser is the Debian ``chromium`` package driven by the Python ``playwright`` package
(``executable_path``), never Playwright's own browser download. The session fixture installs
what is missing when it can (``apt-get`` as root, ``pip`` into this interpreter) and otherwise
skips with the command that would fix it.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spurbench.store import ResultsStore
from tests.browser import chromium_path, open_report

pytestmark = pytest.mark.browser

INSTALL_TIMEOUT_S = 900


def _run(cmd: list[str]) -> bool:
    env = {
        **os.environ,
        "DEBIAN_FRONTEND": "noninteractive",
        "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
    }
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, timeout=INSTALL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _ensure_chromium() -> str | None:
    exe = chromium_path()
    if exe is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
        if not _run(install):  # package lists may be missing or stale on a fresh machine
            _run(["apt-get", "update", "-q"])
            _run(install)
        exe = chromium_path()
    return exe


def _ensure_playwright() -> bool:
    try:
        importlib.import_module("playwright.sync_api")
        return True
    except ImportError:
        pass
    if not _run([sys.executable, "-m", "pip", "install", "-q", "playwright"]):
        return False
    importlib.invalidate_caches()
    try:
        importlib.import_module("playwright.sync_api")
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def browser_ready() -> str:
    """Path of a usable Chromium, with playwright importable, or skip saying how to get them."""
    exe = _ensure_chromium()
    if exe is None:
        pytest.skip(
            "Chromium is missing and could not be installed (needs root and apt-get): run "
            "`apt-get install chromium`, or set SPURBENCH_CHROMIUM to a Chromium binary."
        )
    if not _ensure_playwright():
        pytest.skip("The playwright package could not be installed: pip install playwright")
    return exe


@pytest.fixture(scope="module")
def opened(browser_ready, built_report, tmp_path_factory):
    """One browser session on the report: everything the tests check, read in one visit."""
    problems: list[str] = []
    shot = tmp_path_factory.mktemp("shots") / "report.png"
    with open_report(built_report.html, width=1280, height=900, problems=problems) as page:
        page.wait_for_function("Array.from(document.images).every(i => i.complete)")
        images = page.evaluate(
            "Array.from(document.images).map(i => [i.naturalWidth, i.naturalHeight])"
        )
        svgs = page.evaluate(
            "Array.from(document.querySelectorAll('figure.fig svg'))"
            ".map(s => [s.getBoundingClientRect().width, s.getBoundingClientRect().height,"
            " s.querySelectorAll('path').length])"
        )
        models = page.evaluate(
            "Array.from(document.querySelectorAll('#models tbody tr')).map(r => r.dataset.model)"
        )
        sorting = {}
        headers = page.locator("#models thead th")
        names = headers.all_inner_texts()
        for label in ("Common %", "Model"):
            col = next(i for i, n in enumerate(names) if n.strip().startswith(label))
            read = (
                "Array.from(document.querySelectorAll('#models tbody tr'))"
                f".map(r => r.cells[{col}].dataset.sort)"
            )
            headers.nth(col).click()
            first = page.evaluate(read)
            aria_first = headers.nth(col).get_attribute("aria-sort")
            headers.nth(col).click()
            sorting[label] = (first, aria_first, page.evaluate(read))
        page.screenshot(path=str(shot), full_page=True)
    return {
        "images": images,
        "svgs": svgs,
        "models": models,
        "sorting": sorting,
        "problems": problems,
        "shot": shot,
    }


def test_every_image_decodes(opened):
    assert len(opened["images"]) >= 6
    assert all(w > 0 and h > 0 for w, h in opened["images"]), opened["images"]


def test_figures_render_as_svg(opened, built_report):
    svgs = opened["svgs"]
    assert len(svgs) == len(built_report.figures) // 2  # one inline SVG per PNG/SVG pair
    for width, height, paths in svgs:
        assert width > 150 and height > 100 and paths > 5


def test_table_lists_every_model_of_the_store(opened, report_store):
    assert sorted(opened["models"]) == sorted(ResultsStore(report_store.path).runs()["model"])


def test_clicking_a_header_sorts_the_table(opened):
    asc, aria, desc = opened["sorting"]["Common %"]
    values = [float(v) for v in asc]
    assert len(set(values)) > 1, "the store should give the models different accuracies"
    assert aria == "ascending" and values == sorted(values)
    assert [float(v) for v in desc] == sorted(values, reverse=True)  # rows really moved
    asc, aria, desc = opened["sorting"]["Model"]
    assert asc == sorted(asc) and desc == sorted(asc, reverse=True)


def test_page_loads_offline_without_errors(opened):
    assert opened["problems"] == []


def test_screenshot_is_taken(opened):
    shot: Path = opened["shot"]
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 50_000
