"""Helpers for the reliability suite: fault injection needs real processes, files and stores.

Subprocess tests run the real CLI (``python -m spurbench.cli``) so that kill -9 and concurrent
writers hit exactly what users run. Each such process pays the torch import (several seconds on
a busy 2-core box), so the suite keeps their number small and their datasets tiny.
"""

from __future__ import annotations

import importlib
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from spurbench.models import create_model
from spurbench.models.base import ModelAdapter
from tests.conftest import write_image

SRC = Path(__file__).resolve().parents[2] / "src"


def cli_command(*args: str) -> list[str]:
    """The command line a user runs, with this interpreter."""
    return [sys.executable, "-m", "spurbench.cli", *args]


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for CLI subprocesses: never touch the network or the user's caches."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH", "")])),
        COLUMNS="200",  # rich wraps error messages at the terminal width; keep them on one line
    )
    env.update(extra)
    return env


def run_cli(args: Sequence[str], timeout: float = 240, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_command(*args), env=cli_env(**env), capture_output=True, text=True, timeout=timeout
    )


def make_grouped(
    root: Path,
    per_group: int,
    classes: Sequence[str] = ("9 ostrich", "100 black swan"),
    seed: int = 0,
) -> Path:
    """A CounterAnimal-layout folder with ``per_group`` small images per (class, group)."""
    rng = np.random.default_rng(seed)
    for c in classes:
        for g in ("common-ground", "counter-water"):
            for i in range(per_group):
                write_image(root / c / g / f"{i:03d}.png", rng, size=32)
    return root


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width``×``height`` pixels: a decompression bomb shape.

    The IDAT holds a few bytes only, so a loader that trusted the header would allocate the
    full image and then fail (or, with a real bomb, exhaust memory).
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="session")
def tiny_model(tiny_clip_dir: Path) -> ModelAdapter:
    """The tiny open_clip model, loaded once (tests must not patch its methods)."""
    return create_model(f"local-dir:{tiny_clip_dir}")


@pytest.fixture()
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make any model load in the runner fail loudly, and record the attempts.

    Validation errors must come before a model is loaded (minutes for a large model, and a
    download): a test that expects such an error and sees this sentinel instead fails.
    """
    calls: list[str] = []

    def refuse(name: str, *args: object, **kwargs: object) -> ModelAdapter:
        calls.append(str(name))
        raise AssertionError(f"a model ({name}) was loaded before input validation")

    # by module object: the package ``spurbench`` re-exports a function named ``evaluate``
    runner = importlib.import_module("spurbench.evaluate.runner")
    monkeypatch.setattr(runner, "create_model", refuse)
    return calls
