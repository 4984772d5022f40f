"""``spurbench --help``, ``results`` and ``models`` start without loading torch or the stages.

Run in a fresh interpreter: the test process itself has imported torch long before.
"""

from __future__ import annotations

import json
import os
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


def _loaded(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
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
def test_models_loads_neither_torch_nor_a_stage(tmp_path):
    """The zoos list their names only after importing torch: once, then from the cache."""
    env = {"SPURBENCH_CACHE": str(tmp_path)}
    args = ("models", "resnet50", "--family", "torchvision", "--json")
    code, first, modules = _loaded(*args, env=env)
    assert code == 0 and "IMAGENET1K_V2" in first
    assert not modules & set(STAGES)
    code, again, modules = _loaded(*args, env=env)
    assert code == 0 and again == first
    assert not _heavy(modules)
    assert not modules & set(STAGES)


_PRODUCT = """
import json, sys
import spurbench
light = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "spurbench"))
from spurbench.probes.run import probe
from spurbench.suite import run_suite
from spurbench.curate.pipeline import curate
from spurbench.report.html import build_report
from spurbench.synth import theory
from spurbench.evaluate.runner import evaluate
same = {
    "evaluate": spurbench.evaluate is evaluate,
    "probe": spurbench.probe is probe,
    "run_suite": spurbench.run_suite is run_suite,
    "curate": spurbench.curate is curate,
    "build_report": spurbench.build_report is build_report,
    "theory": spurbench.theory is theory,
}
print(json.dumps({"light": light, "same": same, "all": spurbench.__all__}))
"""


@pytest.mark.subprocess
def test_top_level_exports_the_product_lazily():
    """``import spurbench`` is light; each stage's entry point is one attribute away."""
    proc = subprocess.run(
        [sys.executable, "-c", _PRODUCT], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert not _heavy(set(out["light"])) and not set(out["light"]) & set(STAGES)
    assert out["same"] == dict.fromkeys(out["same"], True)
    assert set(out["same"]) <= set(out["all"])


#: What no ``--help`` needs: the model libraries, and the table and array stack under them.
HELP_FREE = ("torch", "torchvision", "open_clip", "timm", "pandas", "pyarrow", "numpy", "PIL")

_EVERY_HELP = """
import json, sys
import typer
from typer.testing import CliRunner
from spurbench.cli import app

def paths(command, path=()):
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from paths(sub, (*path, name))

runner, loaded = CliRunner(), {}
for path in paths(typer.main.get_command(app)):
    result = runner.invoke(app, [*path, "--help"])
    loaded[" ".join(path)] = {"exit": result.exit_code, "output": result.output,
                              "modules": sorted({m.split(".")[0] for m in sys.modules})}
print(json.dumps(loaded))
"""


@pytest.mark.subprocess
def test_no_help_loads_pandas_numpy_or_torch():
    """``spurbench --help`` and every ``spurbench COMMAND --help``, in one fresh interpreter: the
    modules only accumulate, so the first command listed with a heavy module is the one that
    loaded it."""
    proc = subprocess.run(
        [sys.executable, "-c", _EVERY_HELP], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.splitlines()[-1])
    # the walk reaches the root, plain commands and subcommands of the groups
    assert {"", "eval", "probe", "suite", "curate", "curate discover", "reproduce"} <= set(loaded)
    for command, out in loaded.items():
        assert out["exit"] == 0 and "Usage" in out["output"], (command, out["output"])
        heavy = set(out["modules"]) & set(HELP_FREE)
        assert not heavy, f"`{' '.join(['spurbench', command, '--help'])}` loaded {sorted(heavy)}"
