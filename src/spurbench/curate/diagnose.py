"""Per-background failure diagnosis: a model's accuracy on every (class, background) group.

CounterAnimal reports each class on two groups only — the common and the counter background a
reference CLIP picked (Wang, Lin et al., NeurIPS 2024). Another model may lean on a different
background: the full class × background matrix, each cell with its exact Clopper–Pearson
interval, shows every background a model fails on, not only the one chosen for someone else.
Works on any pool with background labels (a manifest column, class/background folders, a
curation work folder's labels) and on CounterAnimal-layout folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from spurbench.atomic import write_text_atomic
from spurbench.curate.discovery import model_cells
from spurbench.curate.pool import in_dataset, load_pool
from spurbench.curate.scoring import AUTO_PROTOCOL, ModelCache, predict
from spurbench.data.dataset import ImageDataset
from spurbench.errors import DatasetError
from spurbench.evaluate.metrics import LEVEL
from spurbench.models.base import ModelAdapter
from spurbench.runtime import Runtime


@dataclass
class Diagnosis:
    """One model's class × background accuracies."""

    model: str
    protocol: str
    level: float
    #: label, class_name, background, n, correct, accuracy, ci_low, ci_high, p_true (mean
    #: probability of the true class): tidy, one row a cell
    cells: pd.DataFrame

    @property
    def classes(self) -> pd.DataFrame:
        """Per class: best and worst background (among cells of ≥ 1 image) and the gap."""
        rows = []
        for (label, name), g in self.cells.groupby(["label", "class_name"], sort=True):
            g = g.sort_values(["accuracy", "background"], ascending=[False, True])
            best, worst = g.iloc[0], g.iloc[-1]
            rows.append(
                (
                    int(label),
                    name,
                    len(g),
                    best["background"],
                    best["accuracy"],
                    worst["background"],
                    worst["accuracy"],
                    best["accuracy"] - worst["accuracy"],
                )
            )
        cols = [
            "label",
            "class_name",
            "n_backgrounds",
            "best",
            "acc_best",
            "worst",
            "acc_worst",
            "gap",
        ]
        return pd.DataFrame(rows, columns=cols)

    @property
    def backgrounds(self) -> pd.DataFrame:
        """Per background: class-balanced mean accuracy over the classes photographed on it."""
        g = self.cells.groupby("background")
        return pd.DataFrame(
            {"n_classes": g.size(), "n": g["n"].sum(), "balanced_accuracy": g["accuracy"].mean()}
        ).reset_index()

    def matrix(self, value: str = "accuracy") -> pd.DataFrame:
        """Wide class × background table of ``value`` (NaN where a class has no such images)."""
        return self.cells.pivot(index="class_name", columns="background", values=value)

    def table(self, max_columns: int = 16) -> Table:
        """A rich table: accuracy (%) and interval per cell; each class's worst cell in red."""
        backgrounds = sorted(self.cells["background"].unique())[:max_columns]
        t = Table(
            title=f"{escape(self.model)} · accuracy % [{100 * self.level:g}% Clopper–Pearson] by "
            f"background ({self.protocol}); red: the class's worst background",
            title_justify="left",
        )
        t.add_column("class")
        for b in backgrounds:
            t.add_column(escape(str(b)), justify="right")
        t.add_column("gap", justify="right")
        worst = self.classes.set_index("class_name")
        cells = self.cells.set_index(["class_name", "background"])
        for name in sorted(self.cells["class_name"].unique()):
            row: list[Text | str] = [Text(str(name))]
            for b in backgrounds:
                if (name, b) not in cells.index:
                    row.append(Text("·", style="dim"))
                    continue
                c = cells.loc[(name, b)]
                text = (
                    f"{100 * c['accuracy']:.0f} [{100 * c['ci_low']:.0f}–"
                    f"{100 * c['ci_high']:.0f}] n={int(c['n'])}"
                )
                style = "bold red" if b == worst.loc[name, "worst"] else ""
                row.append(Text(text, style=style))
            row.append(f"{100 * worst.loc[name, 'gap']:.0f}")
            t.add_row(*row)
        per_bg = self.backgrounds.set_index("background")["balanced_accuracy"]
        t.add_row(
            Text("mean over classes", style="italic"),
            *[f"{100 * per_bg[b]:.0f}" for b in backgrounds],
            "",
        )
        return t

    def to_csv(self, path: str | Path) -> None:
        """The tidy cells (one row per class and background), written atomically."""
        out = self.cells.assign(model=self.model, protocol=self.protocol)
        write_text_atomic(path, out.to_csv(index=False, lineterminator="\n"))


def diagnose(
    model: str | ModelAdapter,
    data: str | Path | ImageDataset,
    *,
    protocol: str = AUTO_PROTOCOL,
    templates: str | list[str] | None = "paper",
    background_column: str = "background",
    labels: str | Path | None = None,
    level: float = LEVEL,
    name_set: str = "openai",
    split: str | None = None,
    classes: str | Path | None = None,
    allow_outside_root: bool = False,
    runtime: Runtime | None = None,
    models: ModelCache | None = None,
    **options: Any,
) -> Diagnosis:
    """Evaluate ``model`` on ``data`` and tabulate accuracy per class and background.

    ``data`` may already be a curation pool (its ``background`` and ``excluded`` columns are
    used); otherwise it is opened with :func:`load_pool` (``labels``: a labels CSV to apply).
    """
    pool = (
        data
        if isinstance(data, ImageDataset) and "excluded" in data.table.columns
        else load_pool(
            data,
            background_column=background_column,
            labels=labels,
            name_set=name_set,
            split=split,
            classes=classes,
            allow_outside_root=allow_outside_root,
        )
    )
    if not in_dataset(pool).any():
        raise DatasetError(
            f"{pool.name!r} has no background labels: give a manifest column (--background-"
            "column), '<class>/<background>/' folders, or a labels file."
        )
    pred = predict(
        model,
        pool,
        protocol,
        templates=templates,
        runtime=runtime,
        models=models,
        **options,
    )
    return Diagnosis(pred.model, pred.protocol, level, model_cells(pool, pred, level))
