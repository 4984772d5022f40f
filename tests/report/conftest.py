"""A results store with several runs and probe results, and the report built from it.

The store is built once per session with the real pipeline (tiny random-init open_clip models
evaluated on a small CounterAnimal-layout folder, then probed), so the report is tested on
exactly the tables ``spurbench eval`` and ``spurbench probe`` write.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from spurbench.store import ResultsStore
from tests.conftest import make_counteranimal, save_tiny_clip


@dataclass(frozen=True)
class StoreCase:
    """The store, the dataset behind it, and the model names it holds."""

    path: Path
    data: Path
    models: tuple[str, ...]


@pytest.fixture(scope="session")
def report_store(tmp_path_factory: pytest.TempPathFactory) -> StoreCase:
    """Two tiny CLIPs on 1v1000 (comparable with the published testbed), one also on 1vN."""
    from spurbench.evaluate import evaluate
    from spurbench.models import create_model
    from spurbench.probes import probe

    tmp = tmp_path_factory.mktemp("report_store")
    data = make_counteranimal(tmp / "CounterAnimal", n_common=6, n_counter=5)
    store = ResultsStore(tmp / "spurbench.duckdb")
    kw = dict(cache_dir=tmp / "cache", show_progress=False, batch_size=32, n_boot=50)
    models = []
    for seed in (0, 1):
        adapter = create_model(f"local-dir:{save_tiny_clip(tmp / f'clip_seed{seed}', seed)}")
        protocols = ["1v1000", "1vN"] if seed == 0 else ["1v1000"]
        evaluate(adapter, data, protocols, store=store, **kw)
        kw_probe = {k: v for k, v in kw.items() if k != "n_boot"}
        probe(adapter, data, store=store, protocol="1vN", **kw_probe)
        models.append(adapter.name)
    return StoreCase(tmp / "spurbench.duckdb", data, tuple(models))


@pytest.fixture(scope="session")
def built_report(report_store: StoreCase, tmp_path_factory: pytest.TempPathFactory):
    """The report of :func:`report_store`, built once for the HTML and browser tests."""
    from spurbench.report.html import ReportOptions, build_report

    out = tmp_path_factory.mktemp("report")
    return build_report(report_store.path, out, ReportOptions(n_boot=200))
