"""``spurbench --help``, ``results`` and ``models`` start without loading torch or the stages.

Run in a fresh interpreter: the test process itself has imported torch long before.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from spurbench.store import ResultsStore
from tests.reliability.rows import run_rows

#: Modules that run a stage; none of them is needed to list commands, results or model names.
STAGES = (
    "spurbench.evaluate.runner",
    "spurbench.features.cache",
    "spurbench.probes.run",
    "spurbench.curate.pipeline",
    "spurbench.report.html",
    "spurbench.suite",
)

_PROBE = """
import json, sys
from typer.testing import CliRunner
from spurbench.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
print(json.dumps({"exit": result.exit_code, "output": result.output,
                  "modules": sorted(m for m in sys.modules if m.split(".")[0] in
                                    ("torch", "torchvision", "open_clip", "timm", "spurbench"))}))
"""


def _loaded(*args: str) -> tuple[int, str, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    return out["exit"], out["output"], set(out["modules"])


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in ("torch", "torchvision", "open_clip", "timm")}


@pytest.mark.subprocess
def test_help_loads_neither_torch_nor_a_stage():
    code, output, modules = _loaded("--help")
    assert code == 0 and "eval" in output and "curate" in output
    assert not _heavy(modules)
    assert not modules & set(STAGES)


@pytest.mark.subprocess
def test_results_loads_neither_torch_nor_a_stage(tmp_path):
    store = tmp_path / "r.duckdb"
    ResultsStore(store).write_run(*run_rows("first"))
    code, output, modules = _loaded("results", "--store", str(store))
    assert code == 0, output
    assert not _heavy(modules)
    assert not modules & set(STAGES)


@pytest.mark.subprocess
def test_models_loads_no_stage():
    """Listing names needs the zoo libraries (they import torch themselves), not the stages."""
    code, output, modules = _loaded("models", "resnet50", "--family", "torchvision")
    assert code == 0 and "IMAGENET1K_V2" in output
    assert not modules & set(STAGES)
