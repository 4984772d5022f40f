"""A curation work folder: the pool's description, every image's labels, and each step's output.

Curation is interactive — tag, look at the review page, feed corrections back, clean, discover,
look again, export — so its state lives in a folder rather than in memory:

* ``curation.json``: how to open the pool, and a log of every step (its configuration, summary
  and command line), which the datasheet quotes so the dataset can be rebuilt;
* ``labels.csv``: every image's curation columns (:mod:`spurbench.curate.pool`);
* step outputs: ``review.csv`` / ``review.html``, ``tag_probabilities.csv``, ``files.csv``,
  ``dropped.csv``, ``label_noise.csv``, ``cells.csv``, ``selection.csv``, ``drops.csv``,
  ``bias.csv`` and ``discovery.json``.

Every file is written atomically, so a step killed midway leaves the previous state.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from spurbench.atomic import write_json_atomic, write_text_atomic
from spurbench.curate.discovery import Discovery, DiscoveryConfig
from spurbench.curate.pool import apply_labels, load_pool, read_labels, write_labels
from spurbench.data.dataset import ImageDataset
from spurbench.errors import DatasetError

STATE, LABELS = "curation.json", "labels.csv"
REVIEW_CSV, REVIEW_HTML, PROBABILITIES = "review.csv", "review.html", "tag_probabilities.csv"
FILES, DROPPED, LABEL_NOISE = "files.csv", "dropped.csv", "label_noise.csv"
CELLS, SELECTION, DROPS, BIAS, DISCOVERY = (
    "cells.csv",
    "selection.csv",
    "drops.csv",
    "bias.csv",
    "discovery.json",
)


@dataclass(frozen=True)
class PoolSpec:
    """How to open the pool (the arguments of :func:`spurbench.curate.pool.load_pool`)."""

    source: str
    background_column: str | None = "background"
    labels: str | None = None
    name_set: str = "openai"
    split: str | None = None
    classes: str | None = None
    allow_outside_root: bool = False

    def open(self) -> ImageDataset:
        return load_pool(
            self.source,
            background_column=self.background_column,
            labels=self.labels,
            name_set=self.name_set,
            split=self.split,
            classes=self.classes,
            allow_outside_root=self.allow_outside_root,
        )


class Workspace:
    """A curation work folder (see the module docstring)."""

    def __init__(self, root: str | Path, state: dict[str, Any]) -> None:
        self.root = Path(root)
        self.state = state

    @property
    def spec(self) -> PoolSpec:
        return PoolSpec(**self.state["pool"])

    @classmethod
    def create(cls, root: str | Path, spec: PoolSpec) -> Workspace:
        """Start a work folder for ``spec``, or reopen it if it was made for the same pool."""
        root = Path(root)
        spec = PoolSpec(
            **{
                **asdict(spec),
                "source": _absolute(spec.source),
                "labels": _absolute(spec.labels) if spec.labels else None,
            }
        )
        if (root / STATE).is_file():
            ws = cls.open(root)
            if ws.spec != spec:
                raise DatasetError(
                    f"{root} is a curation folder for another pool ({ws.spec.source}); use "
                    "another --work folder, or omit --pool to continue this one."
                )
            return ws
        if root.exists() and any(root.iterdir()):
            raise DatasetError(f"{root} exists, is not empty and is not a curation folder.")
        ws = cls(root, {"pool": asdict(spec), "steps": []})
        ws._write_state()
        return ws

    @classmethod
    def open(cls, root: str | Path) -> Workspace:
        path = Path(root) / STATE
        if not path.is_file():
            raise DatasetError(
                f"{root} is not a curation folder (no {STATE}); start one with --pool."
            )
        return cls(root, json.loads(path.read_text(encoding="utf-8")))

    def path(self, name: str) -> Path:
        return self.root / name

    # -- labels ----------------------------------------------------------------------------
    def pool(self) -> ImageDataset:
        """The pool with the latest labels of this folder applied."""
        ds = self.spec.open()
        if self.path(LABELS).is_file():
            ds = apply_labels(ds, read_labels(self.path(LABELS)))
        return ds

    def save_pool(self, dataset: ImageDataset) -> None:
        write_labels(dataset, self.path(LABELS))

    # -- step log --------------------------------------------------------------------------
    def record(
        self,
        step: str,
        config: dict[str, Any],
        summary: dict[str, Any],
        command: list[str] | None = None,
    ) -> None:
        self.state["steps"].append(
            {
                "step": step,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "config": config,
                "summary": summary,
                "command": command,
            }
        )
        self._write_state()

    def last(self, step: str) -> dict[str, Any] | None:
        found = [s for s in self.state["steps"] if s["step"] == step]
        return found[-1] if found else None

    def _write_state(self) -> None:
        write_json_atomic(self.path(STATE), self.state)

    def write_csv(self, name: str, df: pd.DataFrame) -> Path:
        write_text_atomic(self.path(name), df.to_csv(index=False, lineterminator="\n"))
        return self.path(name)

    # -- discovery -------------------------------------------------------------------------
    def save_discovery(self, discovery: Discovery) -> None:
        for name, df in (
            (CELLS, discovery.cells),
            (SELECTION, discovery.selection),
            (DROPS, discovery.drops),
            (BIAS, discovery.bias),
        ):
            self.write_csv(name, df)
        write_json_atomic(
            self.path(DISCOVERY), {"models": discovery.models, "config": asdict(discovery.config)}
        )

    def load_discovery(self) -> Discovery:
        if not self.path(DISCOVERY).is_file():
            raise DatasetError(f"{self.root} has no discovery yet: run `curate discover` first.")
        meta = json.loads(self.path(DISCOVERY).read_text(encoding="utf-8"))
        config = meta["config"]
        if isinstance(config["templates"], list):
            config["templates"] = tuple(config["templates"])

        def read(name: str) -> pd.DataFrame:
            return pd.read_csv(self.path(name), keep_default_na=False, na_values=[""])

        selection = read(SELECTION)
        for col in ("common", "counter", "reason"):
            selection[col] = selection[col].fillna("").astype(str)
        selection["kept"] = selection["kept"].astype(bool)
        cells = read(CELLS)
        cells["background"] = cells["background"].astype(str)
        return Discovery(
            cells,
            selection,
            read(DROPS),
            read(BIAS),
            meta["models"],
            DiscoveryConfig(**config),
        )


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())
