"""``spurbench demo``: the whole product on a world with a known answer, offline, in minutes.

Generate the synthetic spurious world (each animal class drawn on its *common* background with
probability rho in training), train the tiny zoo on CPU (or reuse the cache), evaluate every model
on the world's CounterAnimal-layout test split with the regular pipeline, and print the table.
With rho high, the planted shortcut shows as a positive common-minus-counter drop.

The tour then runs the other stages on the same cached features: probes (outlier features,
privileged directions, pruning, concepts) on the world's full test split, and spurious discovery
(curation) with the tiny CLIP as reference and its fine-tuned twin held out, which should find
the planted (common, counter) pairs again; background counterfactuals of the tiny CLIP (how
much of its drop the background causes); last, the HTML report of everything stored.
The defaults are the tests' small world and short training (:meth:`WorldConfig.fast`,
:meth:`TrainConfig.fast`): the whole tour takes about two minutes on two CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from spurbench.counterfactual import CounterfactualResult, counterfactual
from spurbench.curate import Discovery, DiscoveryConfig, discover, load_pool
from spurbench.evaluate import RunResult, evaluate
from spurbench.probes import ProbeResult, probe
from spurbench.runtime import Runtime
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
    probes: list[ProbeResult] = field(default_factory=list)
    discovery: Discovery | None = None
    #: background counterfactuals of the tiny CLIP (the tour only)
    counterfactual: CounterfactualResult | None = None

    def rediscovered(self) -> tuple[int, int, int]:
        """(kept classes, planted common found, planted counter found) of the discovery step."""
        if self.discovery is None:
            return 0, 0, 0
        kept = self.discovery.kept
        planted = [self.world.planted[int(y)] for y in kept["label"]]
        common = sum(c == p[0] for c, p in zip(kept["common"], planted, strict=True))
        counter = sum(c == p[1] for c, p in zip(kept["counter"], planted, strict=True))
        return len(kept), int(common), int(counter)


def run_demo(
    out_dir: str | Path = "spurbench_out/demo",
    world_cfg: WorldConfig | None = None,
    train_cfg: TrainConfig | None = None,
    *,
    protocol: str = "1vN",
    tour: bool = True,
    show_progress: bool = True,
) -> DemoResult:
    """Generate, train (cached), evaluate, probe, curate, report.

    Results go to ``<out_dir>/spurbench.duckdb``; ``tour=False`` stops after the evaluation
    (and the report).
    """
    out = Path(out_dir)
    world_cfg = world_cfg or WorldConfig.fast()
    train_cfg = train_cfg or TrainConfig.fast()
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
            runtime=exact_runtime(out / "cache", show_progress),
        )
        results[name] = res
    table = demo_table(results)
    from spurbench.atomic import atomic_path

    with atomic_path(out / "demo_results.csv") as tmp:
        table.to_csv(tmp, index=False)
    from spurbench.report.html import build_report

    result = DemoResult(world, models, results, store_path, out, table)
    if tour:
        _tour(result, store, protocol, show_progress)
    result.report = build_report(store_path, out / "report").html
    return result


def exact_runtime(cache: Path, show_progress: bool) -> Runtime:
    """The demo runs the exact image pass (fp32, eager), whatever ``auto`` would pick on this
    machine: its numbers are the same everywhere (tests/golden checks them to 1e-6)."""
    return Runtime(cache, show_progress=show_progress, precision="fp32", engine="eager")


def _tour(result: DemoResult, store: ResultsStore, protocol: str, show_progress: bool) -> None:
    """Probe every model and re-discover the planted pairs, on the world's full test split."""
    from spurbench.synth.train import TINY_CLIP, TINY_CLIP_FT

    manifest = result.world.root / "manifest.csv"
    cache = result.out_dir / "cache"
    # The tiny models know only the world's classes (the classifier has no 1000-class head), so
    # every model is probed on the same head as its evaluation: 1vN, labelled in the tables.
    for folder in result.models.values():
        result.probes.append(
            probe(
                f"local-dir:{folder}",
                manifest,
                protocol=protocol,
                split="test",
                store=store,
                runtime=exact_runtime(cache, show_progress),
            )
        )
    if TINY_CLIP not in result.models:
        return
    held_out = [f"local-dir:{result.models[TINY_CLIP_FT]}"] if TINY_CLIP_FT in result.models else []
    result.discovery = discover(
        load_pool(manifest, split="test"),
        [f"local-dir:{result.models[TINY_CLIP]}"],
        held_out=held_out,
        config=DiscoveryConfig(protocol="1vN", templates="paper"),
        cache_dir=cache,
        show_progress=show_progress,
    )
    # background counterfactuals of the reference CLIP only: eight variant images per photo
    # built and scored (measured: 89 s for 400 photos on two busy cores; cached on a rerun)
    result.counterfactual = counterfactual(
        f"local-dir:{result.models[TINY_CLIP]}",
        result.world.counteranimal_root,
        protocol="1vN",
        store=store,
        runtime=exact_runtime(cache, show_progress),
    )
    selection = result.discovery.selection.copy()
    selection["planted_common"] = [result.world.planted[int(y)][0] for y in selection["label"]]
    selection["planted_counter"] = [result.world.planted[int(y)][1] for y in selection["label"]]
    from spurbench.atomic import atomic_path

    with atomic_path(result.out_dir / "discovery.csv") as tmp:
        selection.to_csv(tmp, index=False)


def demo_table(results: dict[str, RunResult]) -> pd.DataFrame:
    """One row per model: balanced common / counter accuracy, drop, and their intervals."""
    rows = []
    for name, r in results.items():
        h = r.headline
        assert h.common and h.counter and h.drop, "the demo world has both groups"
        rows.append(
            {
                "model": name,
                "common": h.common.value,
                "common_lo": h.common.lo,
                "common_hi": h.common.hi,
                "counter": h.counter.value,
                "counter_lo": h.counter.lo,
                "counter_hi": h.counter.hi,
                "drop": h.drop.value,
                "drop_lo": h.drop.lo,
                "drop_hi": h.drop.hi,
                "n_images": len(r.predictions),
            }
        )
    return pd.DataFrame(rows)
