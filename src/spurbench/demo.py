"""``spurbench demo``: the whole product on a world with a known answer, offline, in minutes.

Generate the synthetic spurious world (each animal class drawn on its *common* background with
probability rho in training), train the tiny zoo on CPU (or reuse the cache), evaluate every model
on the world's CounterAnimal-layout test split with the regular pipeline, and print the table.
With rho high, the planted shortcut shows as a positive common-minus-counter drop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from spurbench.evaluate import RunResult, evaluate
from spurbench.store import ResultsStore
from spurbench.synth.train import TrainConfig, train_zoo
from spurbench.synth.world import World, WorldConfig, generate_world


@dataclass
class DemoResult:
    world: World
    models: dict[str, Path]
    results: dict[str, RunResult]
    store: Path
    out_dir: Path
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    report: Path | None = None


def run_demo(
    out_dir: str | Path = "spurbench_out/demo",
    world_cfg: WorldConfig | None = None,
    train_cfg: TrainConfig | None = None,
    *,
    protocol: str = "1vN",
    show_progress: bool = True,
) -> DemoResult:
    """Generate, train (cached), evaluate, report; results go to ``<out_dir>/spurbench.duckdb``."""
    out = Path(out_dir)
    world_cfg = world_cfg or WorldConfig()
    train_cfg = train_cfg or TrainConfig()
    world = generate_world(world_cfg, out / "worlds" / world_cfg.key())
    models = train_zoo(world, train_cfg, out / "models", progress=show_progress)
    store_path = out / "spurbench.duckdb"
    store = ResultsStore(store_path)
    results = {}
    for name, folder in models.items():
        (res,) = evaluate(
            f"local-dir:{folder}",
            world.counteranimal_root,
            [protocol],
            store=store,
            cache_dir=out / "cache",
            show_progress=show_progress,
        )
        results[name] = res
    table = demo_table(results)
    from spurbench.atomic import atomic_path

    with atomic_path(out / "demo_results.csv") as tmp:
        table.to_csv(tmp, index=False)
    from spurbench.report.html import build_report

    report = build_report(store_path, out / "report")
    return DemoResult(world, models, results, store_path, out, table, report.html)


def demo_table(results: dict[str, RunResult]) -> pd.DataFrame:
    """One row per model: balanced common / counter accuracy, drop, and their intervals."""
    rows = []
    for name, r in results.items():
        s = r.summary.set_index(["metric", "group"])
        common, counter = (
            s.loc[("balanced_accuracy", "common")],
            s.loc[("balanced_accuracy", "counter")],
        )
        drop = s.loc[("drop", "common-counter")]
        rows.append(
            {
                "model": name,
                "common": common.value,
                "common_lo": common.ci_low,
                "common_hi": common.ci_high,
                "counter": counter.value,
                "counter_lo": counter.ci_low,
                "counter_hi": counter.ci_high,
                "drop": drop.value,
                "drop_lo": drop.ci_low,
                "drop_hi": drop.ci_high,
                "n_images": len(r.predictions),
            }
        )
    return pd.DataFrame(rows)
