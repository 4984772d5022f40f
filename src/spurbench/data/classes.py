"""Class lists and prompt templates.

A :class:`ClassList` is the label space a protocol predicts over. For CounterAnimal-style data it
is ImageNet-1k, and each name keeps its ImageNet index so that supervised ImageNet models can pick
their trained head rows by index rather than by (differently spelled) name.

Two ImageNet name sets exist and change zero-shot accuracy (see the reference notes): OpenAI's
cleaned names (``"polar bear"``, shipped by open_clip) and the WordNet first lemmas
(``"ice bear"``, shipped by torchvision). The CounterAnimal paper does not say which it used, so
the set is an option recorded with every run.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from spurbench.errors import ClassListError
from spurbench.user_files import read_text_file

NAME_SETS = ("openai", "wordnet")

#: The CounterAnimal paper's single prompt.
PAPER_TEMPLATES: tuple[str, ...] = ("A photo of {c}.",)


@dataclass(frozen=True)
class ClassList:
    """An ordered label space: names, and the ImageNet index of each where it has one."""

    names: tuple[str, ...]
    imagenet_indices: tuple[int, ...] | None = None
    name_set: str = "custom"

    def __post_init__(self) -> None:
        if not self.names:
            raise ClassListError("A class list needs at least one class.")
        if self.imagenet_indices is not None and len(self.imagenet_indices) != len(self.names):
            raise ClassListError("imagenet_indices must have one entry per class name.")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def is_imagenet(self) -> bool:
        """True when this is the whole ImageNet-1k label space in index order."""
        return self.imagenet_indices is not None and self.imagenet_indices == tuple(range(1000))

    def digest(self) -> str:
        payload = json.dumps([self.names, self.imagenet_indices], separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def subset(self, indices: Sequence[int]) -> ClassList:
        """The classes at ``indices`` (positions in this list), in that order."""
        idx = [int(i) for i in indices]
        inet = (
            None if self.imagenet_indices is None else tuple(self.imagenet_indices[i] for i in idx)
        )
        return ClassList(tuple(self.names[i] for i in idx), inet, self.name_set)


def imagenet_classes(name_set: str = "openai") -> ClassList:
    """ImageNet-1k in index order, with OpenAI's cleaned names or the WordNet first lemmas."""
    if name_set == "openai":
        from open_clip import IMAGENET_CLASSNAMES as names
    elif name_set == "wordnet":
        from torchvision.models._meta import _IMAGENET_CATEGORIES as names
    else:
        raise ClassListError(f"Unknown class-name set {name_set!r}; choose one of {NAME_SETS}.")
    return ClassList(tuple(names), tuple(range(1000)), name_set)


def imagenet_index_of(name: str) -> int | None:
    """The ImageNet index of a class name in either name set (case-insensitive), else None."""
    key = name_key(name)
    for name_set in NAME_SETS:
        for i, spellings in enumerate(_imagenet_keys(name_set)):
            if key in spellings:
                return i
    return None


def imagenet_spellings(index: int) -> frozenset[str]:
    """The :func:`name_key` spellings of ImageNet class ``index`` in both name sets: whole
    names and their comma-separated parts (``"tiger shark, Galeocerdo cuvieri"``)."""
    return frozenset().union(*(_imagenet_keys(ns)[index] for ns in NAME_SETS))


@functools.cache
def _imagenet_keys(name_set: str) -> tuple[frozenset[str], ...]:
    return tuple(
        frozenset({name_key(n), *(name_key(p) for p in n.split(","))})
        for n in imagenet_classes(name_set).names
    )


def read_class_file(path: str | Path) -> ClassList:
    """Read one class name per line (blank lines and ``#`` comments ignored)."""
    lines = read_text_file(path, "Class list").splitlines()
    names = tuple(s.strip() for s in lines if s.strip() and not s.strip().startswith("#"))
    return ClassList(names, None, "custom")


def resolve_templates(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """Turn a template spec into format strings with a ``{c}`` placeholder.

    ``None`` or ``"paper"`` is the CounterAnimal prompt, ``"openai"`` OpenAI's 80 ImageNet
    prompts, a path a file with one template per line, and a sequence is taken as it is.
    """
    if spec is None or spec == "paper":
        return PAPER_TEMPLATES
    if spec == "openai":
        from open_clip import OPENAI_IMAGENET_TEMPLATES

        return tuple(t("{c}") for t in OPENAI_IMAGENET_TEMPLATES)
    if isinstance(spec, str):
        if not Path(spec).exists():
            raise ClassListError(
                f"Templates {spec!r} are neither 'paper', 'openai' nor a readable file."
            )
        text = read_text_file(spec, "Templates file")
        spec = [s.strip() for s in text.splitlines() if s.strip()]
    templates = tuple(spec)
    bad = [t for t in templates if "{c}" not in t]
    if not templates or bad:
        raise ClassListError(f"Every template needs a '{{c}}' placeholder; these lack it: {bad}")
    for t in templates:  # "{photo}" or a stray "{" would fail only when the prompts are built
        try:
            t.format(c="x")
        except (KeyError, IndexError, ValueError) as e:
            raise ClassListError(
                f"Template {t!r} is not a valid format string ({type(e).__name__}: {e}): "
                "'{c}' is the only placeholder; write a literal brace as '{{' or '}}'."
            ) from None
    return templates


def templates_digest(templates: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(templates).encode()).hexdigest()[:16]


def name_key(name: str) -> str:
    """What two spellings of one class name share: case, ``_`` and runs of spaces ignored."""
    return " ".join(name.casefold().replace("_", " ").split())
