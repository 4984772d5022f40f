"""Synthetic store rows (pandas only), for tests that exercise the store without a model.

Kept free of torch and of spurbench's package import so that helper subprocesses start in a
second instead of paying the torch import.
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def run_rows(
    run_id: str, n: int = 10
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(run record, predictions, metrics, skipped) shaped as the runner writes them."""
    record = {"run_id": run_id, "model": "m", "dataset": "d", "protocol": "1vN", "n_images": n}
    predictions = pd.DataFrame(
        {
            "run_id": run_id,
            "image_id": [f"{run_id}/img{i:05d}.png" for i in range(n)],
            "label": [i % 3 for i in range(n)],
            "class_name": "c",
            "group_name": ["common", "counter"] * (n // 2) + ["common"] * (n % 2),
            "background": "b",
            "topk_labels": [[0, 1, 2]] * n,
            "topk_scores": [[0.5, 0.3, 0.2]] * n,
            "correct": [i % 2 == 0 for i in range(n)],
            "correct_top5": True,
        }
    )
    metrics = pd.DataFrame(
        {
            "run_id": [run_id],
            "scope": ["overall"],
            "label": [-1],
            "class_name": [""],
            "group_name": ["common"],
            "metric": ["accuracy"],
            "value": [0.5],
            "ci_low": [0.2],
            "ci_high": [0.8],
            "n": [n],
        }
    )
    skipped = pd.DataFrame({"run_id": [run_id], "image_id": ["bad.png"], "reason": ["x"]})
    return record, predictions, metrics, skipped


def import_store_without_torch(src: str) -> Any:
    """Import ``spurbench.store.results`` without running ``spurbench/__init__`` (torch).

    For helper subprocesses only: a stub parent package with the real ``__path__`` lets the
    submodules import normally.
    """
    import importlib
    import sys
    import types

    if "spurbench" not in sys.modules:
        stub = types.ModuleType("spurbench")
        stub.__path__ = [f"{src}/spurbench"]
        sys.modules["spurbench"] = stub
    return importlib.import_module("spurbench.store.results")
