"""A synthetic spurious world: animals (coloured shapes) planted on backgrounds (textures).

Provenance: CounterAnimal (Wang, Lin et al., NeurIPS 2024, "A Sober Look at the Robustness of
CLIPs to Spurious Features") splits each ImageNet animal class into a *common* background group
(where the animal is usually photographed) and a *counter* group (a rare background), and measures
the accuracy drop from the first to the second. Real pre-training data cannot be controlled, so
this module builds a world where the correlation is planted by hand: class k's object appears on
its common background with probability ``rho`` in the training split, and its counter background
is made the rarest one. A model that learned the background shortcut then loses accuracy on the
counter cells of the balanced test split; one trained on the uncorrelated world (``rho = 1/B``)
does not. The ground truth is known, so spurbench's own measurement pipeline can be tested on it.

Every image also carries a badge whose colour and texture are drawn independently of the class
and the background (the world's concepts, :data:`CONCEPT_COLUMNS`); in the balanced test split
the background is independent of the class too.

The classes are real CounterAnimal ImageNet indices with OpenAI's class names, and the test split
is also written in the CounterAnimal release layout (``"<index> <name>/common-<bg>/"`` and
``"counter-<bg>/"``), so every protocol that reads CounterAnimal reads this world unchanged.

Everything is deterministic: image ``i`` of a cell draws from ``default_rng([seed, split, class,
background-or-0, i])``, and PNGs carry no metadata, so the same seed gives byte-identical files.
The test split does not depend on ``rho`` at all, so worlds that differ only in ``rho`` share the
exact same test images (paired comparisons across ``rho``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from spurbench.synth.render import (
    BACKGROUND_NAMES,
    BADGE_COLOURS,
    OBJECT_SCALE,
    SHAPES,
    SMALL_OBJECT_SCALE,
    TEXTURES,
    ForegroundSpec,
    compose,
    foreground_spec,
    render_layers,
)

#: CounterAnimal's ImageNet class indices (animals), in the order a world takes them, with
#: ``open_clip.IMAGENET_CLASSNAMES`` (OpenAI's names) for each. The names are spelled out rather
#: than looked up because importing open_clip takes seconds (it imports transformers) and world
#: generation needs nothing else from it; a test checks them against open_clip.
COUNTERANIMAL_CLASSES: tuple[tuple[int, str], ...] = (
    (9, "ostrich"), (10, "brambling"), (16, "bulbul"), (20, "American dipper"), (23, "vulture"),
    (30, "American bullfrog"), (33, "loggerhead sea turtle"), (37, "box turtle"),
    (39, "green iguana"), (41, "desert grassland whiptail lizard"), (42, "agama"),
    (49, "Nile crocodile"), (54, "eastern hog-nosed snake"), (56, "kingsnake"),
    (57, "garter snake"), (58, "water snake"), (70, "harvestman"), (71, "scorpion"),
    (76, "tarantula"), (79, "centipede"),
)  # fmt: skip
COUNTERANIMAL_INDICES: tuple[int, ...] = tuple(i for i, _ in COUNTERANIMAL_CLASSES)

#: Caption templates. Class-only by default: the text never mentions the background, as in most
#: web captions, so any background reliance the model shows was learned from the images. A tiny
#: text tower only understands phrasings it was trained on, so the list holds the prompts
#: zero-shot evaluation uses: CounterAnimal's "A photo of {c}." (spurbench's default) and
#: "a photo of a {c}." (CLIP's usual one). Without the first, zero-shot accuracy through the
#: paper's prompt fell from ~0.97 to ~0.6 and the measured drop lost its ordering in rho.
CAPTION_TEMPLATES: tuple[str, ...] = (
    "a photo of a {c}.",
    "A photo of {c}.",
    "a picture of a {c}.",
    "an image of the {c}.",
    "a photo of the {c}.",
    "a rendering of a {c}.",
    "a close-up photo of a {c}.",
)

MANIFEST_COLUMNS: tuple[str, ...] = (
    "path", "label", "class_name", "background", "group", "split",
    "caption", "shape", "colour", "texture", "badge_colour", "badge_texture",
)  # fmt: skip
#: The world's concepts, independent of the class (see :func:`_badges`); the object's shape,
#: colour and texture are functions of its class.
CONCEPT_COLUMNS: tuple[str, ...] = ("badge_colour", "badge_texture", "background")

#: Bump when rendering or layout changes, so cached worlds made by older code are not reused.
GENERATOR_VERSION = 6

_SPLIT_CODE = {"train": 0, "test": 1}
_WORLD_JSON = "world.json"
_MANIFEST = "manifest.csv"
COUNTERANIMAL_DIR = "counteranimal"


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines a world's files (and so its cache key)."""

    n_classes: int = 10
    n_backgrounds: int = 6
    rho: float = 0.9
    image_size: int = 32
    n_train_per_class: int = 400
    n_test_per_cell: int = 20
    caption_background_fraction: float = 0.0
    seed: int = 0
    #: Opt-in: this fraction of each counter test cell has its object drawn at a size never
    #: seen in training (a planted object-caused failure, for background counterfactuals).
    small_counter_fraction: float = 0.0
    #: This fraction of each class's training images has its object hidden (fully occluded):
    #: the scene is its background alone while the caption still names the class, as in web
    #: photos where the animal is barely visible. Their backgrounds follow the same planted
    #: distribution, so they teach P(class | background) -- which is what lets the background
    #: alone predict the class at high ``rho`` (ONLY-BG) -- and nothing at ``rho = 1/B``.
    #: Without them a model never sees an empty scene and reads one as no class in particular.
    hidden_object_fraction: float = 0.1

    def __post_init__(self) -> None:
        # rho=1 and rho=1.0 must give the same key
        object.__setattr__(self, "rho", float(self.rho))
        frac = float(self.caption_background_fraction)
        object.__setattr__(self, "caption_background_fraction", frac)
        if not 1 <= self.n_classes <= len(COUNTERANIMAL_INDICES):
            raise ValueError(f"n_classes must be in [1, {len(COUNTERANIMAL_INDICES)}]")
        if not 3 <= self.n_backgrounds <= len(BACKGROUND_NAMES):
            # B >= 3 so that common, counter and at least one "other" background exist and the
            # planted distribution sums to one.
            raise ValueError(f"n_backgrounds must be in [3, {len(BACKGROUND_NAMES)}]")
        if not 0.0 <= self.rho <= 1.0:
            raise ValueError("rho must be in [0, 1]")
        if not 0.0 <= self.caption_background_fraction <= 1.0:
            raise ValueError("caption_background_fraction must be in [0, 1]")
        object.__setattr__(self, "hidden_object_fraction", float(self.hidden_object_fraction))
        if not 0.0 <= self.hidden_object_fraction < 1.0:
            raise ValueError("hidden_object_fraction must be in [0, 1)")
        if self.image_size < 8 or self.n_train_per_class < 1 or self.n_test_per_cell < 1:
            raise ValueError("image_size >= 8 and positive image counts are required")

    def key(self) -> str:
        """A short stable hash of the config and generator version, used as a cache key."""
        fields = dataclasses.asdict(self)
        if not self.small_counter_fraction:  # off: the keys of worlds made before it stay
            del fields["small_counter_fraction"]
        payload = json.dumps({"v": GENERATOR_VERSION, **fields}, sort_keys=True, default=float)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @property
    def uniform_rho(self) -> float:
        """The ``rho`` at which background and class are independent (1 / n_backgrounds)."""
        return 1.0 / self.n_backgrounds

    @classmethod
    def fast(cls, rho: float = 0.9, seed: int = 0, **overrides: object) -> WorldConfig:
        """A small world for tests: fewer images, same structure and the same shortcut effect."""
        base: dict[str, object] = {"n_train_per_class": 200, "n_test_per_cell": 20}
        base.update(overrides)
        return cls(rho=rho, seed=seed, **base)  # type: ignore[arg-type]


@dataclass
class World:
    """A generated world on disk and what was planted in it."""

    root: Path
    config: WorldConfig
    manifest: pd.DataFrame
    classes: list[tuple[int, str]]
    backgrounds: list[str]
    #: ImageNet index -> (common background, counter background)
    planted: dict[int, tuple[str, str]]

    @property
    def counteranimal_root(self) -> Path:
        """The test split's common/counter cells in the CounterAnimal release layout."""
        return self.root / COUNTERANIMAL_DIR

    @property
    def class_names(self) -> list[str]:
        return [name for _, name in self.classes]

    @property
    def imagenet_indices(self) -> list[int]:
        return [idx for idx, _ in self.classes]

    def split(self, name: str) -> pd.DataFrame:
        """Rows of the manifest for ``"train"`` or ``"test"``."""
        return self.manifest[self.manifest["split"] == name].reset_index(drop=True)

    def paths(self, rows: pd.DataFrame) -> list[Path]:
        """Absolute image paths of manifest ``rows``."""
        return [self.root / p for p in rows["path"]]

    @classmethod
    def load(cls, root: str | Path) -> World:
        """Read a world written by :func:`generate_world` (raises if it is incomplete)."""
        root = Path(root)
        meta = json.loads((root / _WORLD_JSON).read_text())
        cfg = WorldConfig(**meta["config"])
        if meta["key"] != cfg.key():
            raise ValueError(f"{root} was written by another generator version; regenerate it")
        manifest = pd.read_csv(root / _MANIFEST, dtype={"label": int}, keep_default_na=False)
        return cls(
            root=root,
            config=cfg,
            manifest=manifest,
            classes=[(int(i), str(n)) for i, n in meta["classes"]],
            backgrounds=list(meta["backgrounds"]),
            planted={int(p["label"]): (p["common"], p["counter"]) for p in meta["planted"]},
        )


def world_classes(cfg: WorldConfig) -> list[tuple[int, str]]:
    """(ImageNet index, OpenAI class name) of the world's classes, in label order."""
    return list(COUNTERANIMAL_CLASSES[: cfg.n_classes])


def planted_pair(slot: int, n_backgrounds: int) -> tuple[int, int]:
    """(common, counter) background positions of class slot ``slot``."""
    return slot % n_backgrounds, (slot + 1) % n_backgrounds


def train_background_probs(cfg: WorldConfig, slot: int) -> np.ndarray:
    """P(background | class slot) in the training split, indexed by background position.

    Common gets ``rho``; the counter background gets ``(1 - rho) / (B - 1) * c`` with
    ``c = 1 - (rho - 1/B) / (1 - 1/B)`` clipped to [0, 1], and the rest of the mass is spread over
    the other B - 2 backgrounds. At ``rho = 1/B`` this is uniform, and as ``rho`` grows the counter
    background becomes the rarest one, so the test's counter cells are the most out-of-distribution.
    """
    b = cfg.n_backgrounds
    common, counter = planted_pair(slot, b)
    c = float(np.clip(1.0 - (cfg.rho - 1.0 / b) / (1.0 - 1.0 / b), 0.0, 1.0))
    probs = np.empty(b)
    probs[common] = cfg.rho
    probs[counter] = (1.0 - cfg.rho) / (b - 1) * c
    others = [j for j in range(b) if j not in (common, counter)]
    probs[others] = (1.0 - cfg.rho - probs[counter]) / len(others)
    return probs


def _group(slot: int, bg_pos: int, n_backgrounds: int) -> str:
    common, counter = planted_pair(slot, n_backgrounds)
    return "common" if bg_pos == common else "counter" if bg_pos == counter else "other"


def _captions(
    cfg: WorldConfig, rng: np.random.Generator, class_name: str, backgrounds: list[str]
) -> list[str]:
    """One caption per image: a random template naming the class, and for a random
    ``caption_background_fraction`` of them also the background."""
    n = len(backgrounds)
    templates = rng.integers(len(CAPTION_TEMPLATES), size=n)
    with_bg = rng.random(n) < cfg.caption_background_fraction
    out = []
    for t, bg, mention in zip(templates.tolist(), backgrounds, with_bg.tolist(), strict=True):
        text = CAPTION_TEMPLATES[t].format(c=class_name)
        out.append(f"{text[:-1]} on {bg}." if mention else text)
    return out


def _badges(cfg: WorldConfig, split: str, slot: int, n: int) -> list[dict[str, str]]:
    """Badge concepts of ``n`` images: colour and texture uniform, independent of everything.

    Drawn from their own stream (seed, 5, split, slot), so neither the class, the background
    nor the image's pixel seed says anything about them.
    """
    rng = np.random.default_rng([cfg.seed, 5, _SPLIT_CODE[split], slot])
    colours = rng.integers(len(BADGE_COLOURS), size=n).tolist()
    textures = rng.integers(len(TEXTURES), size=n).tolist()
    return [
        {"badge_colour": BADGE_COLOURS[c], "badge_texture": TEXTURES[t]}
        for c, t in zip(colours, textures, strict=True)
    ]


def _plan_rows(cfg: WorldConfig) -> list[dict[str, object]]:
    """Every image of the world as a manifest row plus the seed its pixels are drawn from."""
    classes = world_classes(cfg)
    backgrounds = BACKGROUND_NAMES[: cfg.n_backgrounds]
    rows: list[dict[str, object]] = []
    for slot, (label, name) in enumerate(classes):
        spec = foreground_spec(slot)
        concepts = {"shape": spec.shape, "colour": spec.colour, "texture": spec.texture}
        # train: backgrounds drawn i.i.d. from the planted distribution
        assign = np.random.default_rng([cfg.seed, 2, slot])
        bgs = assign.choice(
            cfg.n_backgrounds, size=cfg.n_train_per_class, p=train_background_probs(cfg, slot)
        )
        captions = _captions(
            cfg, np.random.default_rng([cfg.seed, 3, slot]), name, [backgrounds[j] for j in bgs]
        )
        badges = _badges(cfg, "train", slot, cfg.n_train_per_class)
        for i, (bg_pos, caption, badge) in enumerate(
            zip(bgs.tolist(), captions, badges, strict=True)
        ):
            rows.append(
                {
                    "seed": [cfg.seed, _SPLIT_CODE["train"], slot, 0, i],
                    "path": _train_path(label, i),
                    "label": label,
                    "class_name": name,
                    "background": backgrounds[bg_pos],
                    "group": _group(slot, bg_pos, cfg.n_backgrounds),
                    "split": "train",
                    "caption": caption,
                    "slot": slot,
                    **concepts,
                    **badge,
                }
            )
        # test: balanced, every (class, background) cell; independent of rho
        test_bgs = [bg for bg in backgrounds for _ in range(cfg.n_test_per_cell)]
        captions = iter(_captions(cfg, np.random.default_rng([cfg.seed, 4, slot]), name, test_bgs))
        badges = iter(_badges(cfg, "test", slot, len(test_bgs)))
        for bg_pos, bg in enumerate(backgrounds):
            for i in range(cfg.n_test_per_cell):
                rows.append(
                    {
                        "seed": [cfg.seed, _SPLIT_CODE["test"], slot, bg_pos, i],
                        "path": f"images/test/{label}/{bg}/{i:04d}.png",
                        "label": label,
                        "class_name": name,
                        "background": bg,
                        "group": _group(slot, bg_pos, cfg.n_backgrounds),
                        "split": "test",
                        "caption": next(captions),
                        "slot": slot,
                        **concepts,
                        **next(badges),
                    }
                )
    return rows


def plan_world(cfg: WorldConfig) -> pd.DataFrame:
    """The manifest :func:`generate_world` writes for ``cfg``, without drawing any pixels.

    Cheap (no rendering), so tests and notebooks can check the planted distribution on large
    samples; every column but the pixels is decided here.
    """
    return pd.DataFrame(_plan_rows(cfg), columns=list(MANIFEST_COLUMNS))


def _write_images(cfg: WorldConfig, rows: list[dict[str, object]], root: Path) -> None:
    small, hidden = small_object_paths(cfg), hidden_object_paths(cfg)
    for row in rows:
        seed = list(row["seed"])  # type: ignore[call-overload]
        img = compose(*image_layers(cfg, row, seed, small=small, hidden=hidden))
        path = root / str(row["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, format="PNG")


def image_layers(
    cfg: WorldConfig,
    row: Mapping[str, object],
    seed: list[int],
    *,
    small: Collection[str],
    hidden: Collection[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(background with badge, object rgb, object alpha) of one manifest row's picture.

    ``seed`` is the row's pixel seed (:func:`render_seeds`), ``small`` and ``hidden`` the paths
    of :func:`small_object_paths` and :func:`hidden_object_paths`. The picture is
    ``compose(*layers)`` and the alpha is its exact foreground mask (all zero when the object
    is hidden), so the writer and the counterfactual masks cannot disagree.
    """
    path = str(row["path"])
    spec = ForegroundSpec(str(row["shape"]), str(row["colour"]), str(row["texture"]))
    scale = SMALL_OBJECT_SCALE if path in small else OBJECT_SCALE
    badge = (str(row["badge_colour"]), str(row["badge_texture"]))
    rng = np.random.default_rng(seed)
    bg, fg, alpha = render_layers(spec, str(row["background"]), rng, cfg.image_size, scale, badge)
    if path in hidden:  # drawn, then fully occluded: the badge and seeds stay those of the row
        alpha = np.zeros_like(alpha)
    return bg, fg, alpha


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _write_counteranimal(world_rows: pd.DataFrame, root: Path) -> None:
    """Test common/counter cells as ``counteranimal/<index> <name>/{common,counter}-<bg>/``."""
    cells = world_rows[(world_rows["split"] == "test") & (world_rows["group"] != "other")]
    for (label, name, group, bg), rows in cells.groupby(
        ["label", "class_name", "group", "background"], sort=True
    ):
        folder = root / COUNTERANIMAL_DIR / f"{label} {name}" / f"{group}-{bg}"
        folder.mkdir(parents=True, exist_ok=True)
        for rel in rows["path"]:
            _link_or_copy(root / rel, folder / Path(rel).name)


def _world_meta(cfg: WorldConfig) -> dict[str, object]:
    classes = world_classes(cfg)
    backgrounds = list(BACKGROUND_NAMES[: cfg.n_backgrounds])
    planted = []
    for slot, (label, name) in enumerate(classes):
        common, counter = planted_pair(slot, cfg.n_backgrounds)
        spec = foreground_spec(slot)
        planted.append(
            {
                "label": label,
                "class_name": name,
                "common": backgrounds[common],
                "counter": backgrounds[counter],
                "train_background_probs": dict(
                    zip(
                        backgrounds,
                        train_background_probs(cfg, slot).round(12).tolist(),
                        strict=True,
                    )
                ),
                "shape": spec.shape,
                "colour": spec.colour,
                "texture": spec.texture,
            }
        )
    return {
        "generator_version": GENERATOR_VERSION,
        "key": cfg.key(),
        "config": dataclasses.asdict(cfg),
        "classes": [list(c) for c in classes],
        "backgrounds": backgrounds,
        "planted": planted,
        "shapes": list(SHAPES),
        "concepts": list(CONCEPT_COLUMNS),
    }


def _complete_world(root: Path, cfg: WorldConfig) -> World | None:
    """The world at ``root`` if it is complete and was made from ``cfg``, else None."""
    try:
        world = World.load(root)
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return None
    return world if world.config == cfg else None


def generate_world(cfg: WorldConfig, out_dir: str | Path) -> World:
    """Write the world for ``cfg`` into ``out_dir`` (or return it if it is already there).

    The world is built in a temporary folder beside ``out_dir`` and renamed into place, with
    ``world.json`` written last, so a reader never sees a half-written world and a crash leaves
    nothing behind. A world from another config in ``out_dir`` is replaced; any other non-empty
    folder is left alone and raises, so user data is never deleted.
    """
    out = Path(out_dir)
    if (existing := _complete_world(out, cfg)) is not None:
        return existing
    if out.exists() and any(out.iterdir()) and not (out / _WORLD_JSON).exists():
        raise FileExistsError(f"{out} exists, is not empty and holds no spurbench world")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        rows = _plan_rows(cfg)
        _write_images(cfg, rows, tmp)
        manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
        manifest.to_csv(tmp / _MANIFEST, index=False, lineterminator="\n")
        _write_counteranimal(manifest, tmp)
        (tmp / _WORLD_JSON).write_text(json.dumps(_world_meta(cfg), indent=1) + "\n")
        _install(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    world = _complete_world(out, cfg)
    if world is None:  # another process installed a different world at the same moment
        raise RuntimeError(f"{out} changed while the world was being written")
    return world


def _install(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` to ``out``, moving an old world aside first if there is one."""
    if out.exists() and not any(out.iterdir()):
        out.rmdir()
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "world")
    try:
        os.replace(tmp, out)
    except OSError:
        # a concurrent writer got there first; its world is as good as ours (same config).
        if not (out / _WORLD_JSON).exists():
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def render_seeds(cfg: WorldConfig) -> dict[str, list[int]]:
    """The seed each image of the world is drawn from, by manifest path.

    Re-drawing an image's layers from its seed (see :func:`spurbench.synth.render.render_layers`)
    gives its exact foreground mask without storing one per image.
    """
    return {str(row["path"]): list(row["seed"]) for row in _plan_rows(cfg)}  # type: ignore[call-overload]


def small_object_paths(cfg: WorldConfig) -> set[str]:
    """Test images whose object is drawn at :data:`SMALL_OBJECT_SCALE` (the first
    ``small_counter_fraction`` of each counter cell); empty unless the option is on."""
    n = round(cfg.small_counter_fraction * cfg.n_test_per_cell)
    plan = plan_world(cfg) if n else pd.DataFrame(columns=["path", "split", "group"])
    counter = plan[(plan["split"] == "test") & (plan["group"] == "counter")]
    return {p for p in counter["path"] if int(Path(p).stem) < n}


def hidden_object_paths(cfg: WorldConfig) -> set[str]:
    """Training images whose object is hidden: the first ``hidden_object_fraction`` of each
    class's (their backgrounds are i.i.d. draws from the planted distribution, so the first
    ones are a fair sample of it). The test split never hides an object."""
    n = round(cfg.hidden_object_fraction * cfg.n_train_per_class)
    return {_train_path(label, i) for label, _ in world_classes(cfg) for i in range(n)}


def _train_path(label: int, i: int) -> str:
    return f"images/train/{label}/{i:05d}.png"
