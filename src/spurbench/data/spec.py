"""Which images and labels a run reads, as one typed value every stage receives.

A dataset is named by a source (a folder, a manifest, a Hugging Face or WebDataset source, or an
:class:`ImageDataset` already open) plus the choices that decide its labels: the class-name set,
the split, a class list for manifests whose labels index one, whether manifest paths may leave
its folder, and the fields of container sources. Evaluation, probes, counterfactuals and the
suite all open their data from a :class:`DataSpec`, so a choice accepted by one (say
``classes``) is accepted by every one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from spurbench.data.dataset import ImageDataset, SourceColumns
from spurbench.data.layouts import open_dataset

__all__ = ["DataSpec"]


@dataclass(frozen=True)
class DataSpec:
    """A dataset source and the options that fix its label space.

    Attributes:
        source: a CounterAnimal-layout folder, class folders, a manifest, a Hugging Face or
            WebDataset source, or an :class:`ImageDataset` (then used as it is).
        name_set: ``openai`` or ``folder`` class names (recorded in run ids).
        split: the split to keep (``train``, ``val``...), None for all.
        classes: a file with one class name per line: the label space of a manifest whose
            labels index a custom list or must match a fixed one.
        allow_outside_root: accept manifest paths that leave the manifest's folder.
        columns: image / label / group fields of a Hugging Face or WebDataset source.
    """

    source: str | Path | ImageDataset
    name_set: str = "openai"
    split: str | None = None
    classes: str | Path | None = None
    allow_outside_root: bool = False
    columns: SourceColumns | None = None

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The options a public function may take as keywords (every field but ``source``)."""
        return tuple(f.name for f in fields(cls) if f.name != "source")

    def open(self) -> ImageDataset:
        """The dataset, opened and validated (returned as it is when already open)."""
        if isinstance(self.source, ImageDataset):
            return self.source
        return open_dataset(
            self.source,
            name_set=self.name_set,
            split=self.split,
            classes=self.classes,
            allow_outside_root=self.allow_outside_root,
            columns=self.columns,
        )
