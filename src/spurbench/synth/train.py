"""Tiny models trained on CPU on a synthetic spurious world, saved as ordinary checkpoints.

Provenance: the zoo mirrors the model families compared in CounterAnimal (Wang, Lin et al.,
NeurIPS 2024): a CLIP trained contrastively on image-caption pairs (open_clip architecture and
``open_clip.ClipLoss``), a supervised ImageNet-style classifier (a timm ViT trained with
cross-entropy), and the CLIP fine-tuned with cross-entropy from its zero-shot head (the
"fine-tuned twin"). They are small enough to train in about a minute each on two CPU cores.

Why checkpoints on disk, in the libraries' own folder layouts: spurbench evaluates models by name
through its normal loaders, so a model trained here must be indistinguishable from a downloaded
one. The CLIPs are written in open_clip's ``local-dir:`` layout (``open_clip_config.json`` with
``model_cfg`` and ``preprocess_cfg``, plus ``open_clip_model.safetensors``) and the classifier in
timm's (``config.json`` written by ``timm.models.save_for_hf`` plus ``model.safetensors``), so
``open_clip.create_model_and_transforms("local-dir:PATH")`` and
``timm.create_model("local-dir:PATH", pretrained=True)`` read them back bit for bit.

Training is deterministic on CPU for a given seed and thread count: the model is initialised
after ``torch.manual_seed(seed)`` and batches are drawn from a ``torch.Generator`` seeded alike.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from spurbench.synth.world import World

#: Bump when training code changes in a way that changes the weights, to invalidate caches.
TRAIN_VERSION = 1

#: The zoo's members, in training order (the fine-tuned twin starts from the tiny CLIP).
TINY_CLIP = "tiny_clip"
TINY_CLASSIFIER = "tiny_classifier"
TINY_CLIP_FT = "tiny_clip_ft"
ZOO_MODELS: tuple[str, ...] = (TINY_CLIP, TINY_CLASSIFIER, TINY_CLIP_FT)
#: The tiny CLIP fine-tuned with the CLIP (contrastive) objective instead of cross-entropy, for
#: the paper's Table 7 comparison (:mod:`spurbench.synth.table7`); trained only when asked for.
TINY_CLIP_FT_CONTRASTIVE = "tiny_clip_ft_contrastive"
#: Every model :func:`train_zoo` can train; those after :data:`ZOO_MODELS` are opt-in.
KNOWN_MODELS: tuple[str, ...] = (*ZOO_MODELS, TINY_CLIP_FT_CONTRASTIVE)
#: Models fine-tuned from the tiny CLIP (trained first when they are asked for) and their
#: :func:`finetune_tiny_clip` objective.
_FINETUNED: dict[str, str] = {TINY_CLIP_FT: "supervised", TINY_CLIP_FT_CONTRASTIVE: "contrastive"}

#: The zero-shot prompt the fine-tuned twin's frozen head is built from, and the tuning helper's
#: default; it is also the CounterAnimal paper's single prompt, lower-cased.
ZERO_SHOT_TEMPLATE = "a photo of a {c}."

#: open_clip's OpenAI normalisation, used by every model of the zoo so their inputs agree.
_MEAN = (0.48145466, 0.4578275, 0.40821073)
_STD = (0.26862954, 0.26130258, 0.27577711)
_MARKER = "spurbench_train.json"


@dataclass(frozen=True)
class TrainConfig:
    """How the zoo is trained; every field but ``models`` is part of the cache key."""

    clip_steps: int = 200
    classifier_steps: int = 300
    finetune_steps: int = 60
    batch_size: int = 128
    lr: float = 1e-3
    finetune_lr: float = 2e-4
    weight_decay: float = 0.1
    warmup_frac: float = 0.1
    seed: int = 0
    models: tuple[str, ...] = ZOO_MODELS
    # architecture (ViT with patch ``patch_size`` on the world's image size)
    patch_size: int = 8
    vision_width: int = 96
    vision_layers: int = 3
    text_width: int = 64
    text_layers: int = 2
    embed_dim: int = 64
    context_length: int = 20
    hflip: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))  # a list would change the key
        unknown = set(self.models) - set(KNOWN_MODELS)
        if unknown:
            raise ValueError(f"unknown models {sorted(unknown)}; known: {KNOWN_MODELS}")

    def key(self) -> str:
        """A short stable hash of the recipe and training-code version.

        ``models`` is left out: each model's weights depend only on the recipe (every trainer
        seeds itself), so a zoo of one model and a zoo of three share the tiny CLIP they both
        train.
        """
        recipe = {k: v for k, v in dataclasses.asdict(self).items() if k != "models"}
        payload = json.dumps({"v": TRAIN_VERSION, **recipe}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @classmethod
    def fast(cls, seed: int = 0, **overrides: Any) -> TrainConfig:
        """Fewer steps at a higher learning rate, for tests on :meth:`WorldConfig.fast` worlds.

        Enough training that the planted effect is clear (a large common-counter drop at
        ``rho = 0.9``, none at ``rho = 1/B``, near-perfect accuracy) in a fraction of the
        default recipe's time.
        """
        base: dict[str, Any] = {
            "clip_steps": 120,
            "classifier_steps": 120,
            "finetune_steps": 40,
            "lr": 2e-3,
        }
        base.update(overrides)
        return cls(seed=seed, **base)


@dataclass
class TrainedModel:
    """A model in memory with what is needed to save it and a record of its training."""

    name: str
    model: torch.nn.Module
    config: dict[str, Any]
    history: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# shared helpers


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch threads (None leaves the setting alone), restoring it afterwards."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _progress(enabled: bool) -> Any:
    """A transient rich progress bar (a no-op when ``enabled`` is false)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        disable=not enabled,
        transient=True,
    )


def _load_images(world: World, split: str, transform: Callable[[Image.Image], torch.Tensor]):
    """All images of ``split`` through ``transform`` as one tensor, with labels 0..C-1."""
    rows = world.split(split)
    label_pos = {idx: i for i, idx in enumerate(world.imagenet_indices)}
    images = []
    for path in world.paths(rows):
        with Image.open(path) as im:
            images.append(transform(im.convert("RGB")))
    labels = torch.tensor([label_pos[int(v)] for v in rows["label"]], dtype=torch.long)
    return torch.stack(images), labels, rows


def _optimizer(
    model: torch.nn.Module, lr: float, weight_decay: float, steps: int, warmup_frac: float
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with no decay on gains/biases/embeddings-of-rank-1, linear warmup, cosine decay."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0}],
        lr=lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    warmup = max(1, int(steps * warmup_frac))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)


def _batches(n: int, batch_size: int, steps: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """``steps`` index batches, epoch after epoch of seeded permutations."""
    perm = torch.randperm(n, generator=gen)
    pos = 0
    for _ in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        yield perm[pos : pos + batch_size]
        pos += batch_size


def _augment(x: torch.Tensor, gen: torch.Generator, hflip: bool) -> torch.Tensor:
    """Random horizontal flips: every object is drawn at a uniform rotation, so a flip keeps the
    class, and it doubles the effective data for free."""
    if not hflip:
        return x
    flip = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


# --------------------------------------------------------------------------------------------
# tiny CLIP


def tiny_clip_model_cfg(world: World, cfg: TrainConfig) -> dict[str, Any]:
    """open_clip ``model_cfg`` of the tiny CLIP (the ``embed_dim``/``vision_cfg``/``text_cfg``
    triple that open_clip's JSON configs hold)."""
    size = world.config.image_size
    if size % cfg.patch_size:
        raise ValueError(f"image_size {size} is not a multiple of patch_size {cfg.patch_size}")
    return {
        "embed_dim": cfg.embed_dim,
        "vision_cfg": {
            "image_size": size,
            "layers": cfg.vision_layers,
            "width": cfg.vision_width,
            "head_width": 32,
            "patch_size": cfg.patch_size,
        },
        "text_cfg": {
            "context_length": cfg.context_length,
            "vocab_size": 49408,
            "width": cfg.text_width,
            "heads": max(1, cfg.text_width // 32),
            "layers": cfg.text_layers,
        },
    }


def _preprocess_cfg(size: int) -> dict[str, Any]:
    return {
        "size": size,
        "mean": list(_MEAN),
        "std": list(_STD),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }


def _register_open_clip_config(model_cfg: dict[str, Any]) -> str:
    """Register ``model_cfg`` with open_clip under a content-hashed name; returns the name.

    open_clip builds models only from registered names or checkpoint folders, so the config is
    written to a JSON file and added with ``open_clip.add_model_config`` (the registry keeps the
    parsed config, so the file can go once registered).
    """
    import open_clip

    digest = hashlib.sha256(json.dumps(model_cfg, sort_keys=True).encode()).hexdigest()[:10]
    name = f"spurbench-tiny-clip-{digest}"
    if name not in open_clip.list_models():
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.json"
            path.write_text(json.dumps(model_cfg))
            open_clip.add_model_config(path)
    return name


def _clip_preprocess(size: int) -> Callable[[Image.Image], torch.Tensor]:
    from open_clip.transform import PreprocessCfg, image_transform_v2

    return image_transform_v2(PreprocessCfg(**_preprocess_cfg(size)), is_train=False)


@torch.enable_grad()  # trains even when called under no_grad / inference code
def train_tiny_clip(
    world: World, cfg: TrainConfig, *, progress: bool = False, device: str = "cpu"
) -> TrainedModel:
    """Train the tiny CLIP with ``open_clip.ClipLoss`` on the world's (image, caption) pairs."""
    import open_clip

    model_cfg = tiny_clip_model_cfg(world, cfg)
    name = _register_open_clip_config(model_cfg)
    torch.manual_seed(cfg.seed)
    # open_clip warns "No pretrained weights loaded" on the root logger: here that is the point
    logging.disable(logging.WARNING)
    try:
        model = open_clip.create_model(name, precision="fp32", device=device)
    finally:
        logging.disable(logging.NOTSET)
    tokenizer = open_clip.get_tokenizer(name)
    images, _, rows = _load_images(world, "train", _clip_preprocess(world.config.image_size))
    images, texts = images.to(device), tokenizer(list(rows["caption"])).to(device)
    loss_fn = open_clip.ClipLoss()
    opt, sched = _optimizer(model, cfg.lr, cfg.weight_decay, cfg.clip_steps, cfg.warmup_frac)
    gen = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    model.train()
    with _progress(progress) as bar:
        task = bar.add_task("tiny CLIP", total=cfg.clip_steps, status="")
        for idx in _batches(len(images), cfg.batch_size, cfg.clip_steps, gen):
            image_f, text_f, scale = model(_augment(images[idx], gen, cfg.hflip), texts[idx])
            loss = loss_fn(image_f, text_f, scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():  # as in CLIP: the temperature is capped at 100
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
            bar.update(task, advance=1, status=f"loss {losses[-1]:.3f}")
    model.eval().cpu()
    config = {"model_cfg": model_cfg, "preprocess_cfg": _preprocess_cfg(world.config.image_size)}
    return TrainedModel(TINY_CLIP, model, config, {"loss": losses})


def save_open_clip(trained: TrainedModel, folder: str | Path) -> Path:
    """Write ``trained`` in open_clip's ``local-dir:`` layout (config JSON + safetensors)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(trained.config, indent=1) + "\n")
    state = {k: v.detach().contiguous() for k, v in trained.model.state_dict().items()}
    save_file(state, folder / "open_clip_model.safetensors")
    return folder


def load_open_clip(folder: str | Path) -> tuple[torch.nn.Module, Callable, Callable]:
    """(model in eval mode, eval preprocess, tokenizer) of an open_clip ``local-dir:`` folder."""
    import open_clip

    ref = f"local-dir:{Path(folder)}"
    model, _, preprocess = open_clip.create_model_and_transforms(ref)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(ref)


@torch.no_grad()
def _class_text_features(
    model: torch.nn.Module, tokenizer: Callable, names: list[str], template: str
) -> torch.Tensor:
    tokens = tokenizer([template.format(c=n) for n in names])
    feats = model.encode_text(tokens.to(model.logit_scale.device))
    return F.normalize(feats, dim=-1)


# --------------------------------------------------------------------------------------------
# fine-tuned twin


@torch.enable_grad()  # trains even when called under no_grad / inference code
def finetune_tiny_clip(
    clip_dir: str | Path,
    world: World,
    cfg: TrainConfig,
    *,
    progress: bool = False,
    device: str = "cpu",
    objective: str = "supervised",
) -> TrainedModel:
    """Fine-tune the tiny CLIP's image tower through its zero-shot head.

    The head is the normalised text embedding of ``ZERO_SHOT_TEMPLATE`` for each class and stays
    frozen (as does the text tower), so the saved model is still an ordinary open_clip CLIP and
    zero-shot evaluation with that prompt reproduces the fine-tuned classifier exactly.

    ``objective="supervised"``: cross-entropy over the classes (the paper's supervised
    fine-tuning). ``objective="contrastive"``: the CLIP loss (``open_clip.ClipLoss``) between the
    batch's images and their class prompts, as the paper's Table 7 fine-tunes with the CLIP
    objective and "obj" prompts: negatives are the other captions *in the batch*, including
    same-class duplicates, and the text-to-image direction counts too. Everything else (data,
    steps, schedule, frozen text side) is shared, so the two differ by the objective alone.
    """
    if objective not in ("supervised", "contrastive"):
        raise ValueError(f"objective must be 'supervised' or 'contrastive', got {objective!r}")
    model, preprocess, tokenizer = load_open_clip(clip_dir)
    config = json.loads((Path(clip_dir) / "open_clip_config.json").read_text())
    model.to(device)
    head = _class_text_features(model, tokenizer, world.class_names, ZERO_SHOT_TEMPLATE)
    scale = model.logit_scale.exp().detach()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.visual.parameters():
        p.requires_grad_(True)
    images, labels, _ = _load_images(world, "train", preprocess)
    images, labels = images.to(device), labels.to(device)
    opt, sched = _optimizer(
        model.visual, cfg.finetune_lr, cfg.weight_decay, cfg.finetune_steps, cfg.warmup_frac
    )
    if objective == "contrastive":
        import open_clip

        clip_loss = open_clip.ClipLoss()

        def loss_of(feats: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return clip_loss(feats, head[y], scale)
    else:

        def loss_of(feats: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(scale * feats @ head.T, y)

    name = TINY_CLIP_FT_CONTRASTIVE if objective == "contrastive" else TINY_CLIP_FT
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    losses: list[float] = []
    model.train()
    with _progress(progress) as bar:
        task = bar.add_task(f"{name} fine-tune", total=cfg.finetune_steps, status="")
        for idx in _batches(len(images), cfg.batch_size, cfg.finetune_steps, gen):
            feats = F.normalize(model.encode_image(_augment(images[idx], gen, cfg.hflip)), dim=-1)
            loss = loss_of(feats, labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.update(task, advance=1, status=f"loss {losses[-1]:.3f}")
    model.eval().cpu()
    for p in model.parameters():
        p.requires_grad_(True)
    return TrainedModel(name, model, config, {"loss": losses})


# --------------------------------------------------------------------------------------------
# tiny supervised classifier (timm)

#: The timm architecture the classifier is built from, with its size overridden.
CLASSIFIER_ARCH = "vit_tiny_patch16_224"


def _classifier_data_config(size: int) -> dict[str, Any]:
    return {
        "input_size": (3, size, size),
        "interpolation": "bicubic",
        "mean": _MEAN,
        "std": _STD,
        "crop_pct": 1.0,
        "crop_mode": "center",
    }


@torch.enable_grad()  # trains even when called under no_grad / inference code
def train_tiny_classifier(
    world: World, cfg: TrainConfig, *, progress: bool = False, device: str = "cpu"
) -> TrainedModel:
    """Train a tiny timm ViT with cross-entropy on the world's training images."""
    import timm
    from timm.data import create_transform

    size = world.config.image_size
    torch.manual_seed(cfg.seed)
    model = timm.create_model(
        CLASSIFIER_ARCH,
        pretrained=False,
        num_classes=world.config.n_classes,
        img_size=size,
        patch_size=cfg.patch_size,
        embed_dim=cfg.vision_width,
        depth=cfg.vision_layers,
        num_heads=max(1, cfg.vision_width // 32),
    )
    data_config = _classifier_data_config(size)
    images, labels, _ = _load_images(world, "train", create_transform(**data_config))
    model, images, labels = model.to(device), images.to(device), labels.to(device)
    opt, sched = _optimizer(model, cfg.lr, cfg.weight_decay, cfg.classifier_steps, cfg.warmup_frac)
    gen = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    model.train()
    with _progress(progress) as bar:
        task = bar.add_task("tiny classifier", total=cfg.classifier_steps, status="")
        for idx in _batches(len(images), cfg.batch_size, cfg.classifier_steps, gen):
            loss = F.cross_entropy(model(_augment(images[idx], gen, cfg.hflip)), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.update(task, advance=1, status=f"loss {losses[-1]:.3f}")
    model.eval().cpu()
    config = {"data_config": data_config}
    return TrainedModel(TINY_CLASSIFIER, model, config, {"loss": losses})


def save_timm(trained: TrainedModel, folder: str | Path, world: World) -> Path:
    """Write ``trained`` in timm's ``local-dir:`` layout with ``timm.models.save_for_hf``.

    ``label_names`` are the class names in label order and ``imagenet_indices`` the ImageNet index
    of each label, so ImageNet protocols can map the 10-way head onto ImageNet-1k rows.
    """
    from timm.models import save_for_hf

    folder = Path(folder)
    save_for_hf(
        trained.model,
        str(folder),
        model_config={
            "label_names": world.class_names,
            "imagenet_indices": world.imagenet_indices,
            # overwrite the ImageNet tag the architecture's default pretrained_cfg carries
            "pretrained_cfg": {"tag": f"spurbench_synth_{world.config.key()}"},
        },
        safe_serialization=True,
        data_config=trained.config["data_config"],
    )
    return folder


# --------------------------------------------------------------------------------------------
# the zoo


#: Which function trains each zoo model (the fine-tuned ones take the tiny CLIP's folder first).
TRAINERS: dict[str, Callable[..., TrainedModel]] = {
    TINY_CLIP: train_tiny_clip,
    TINY_CLASSIFIER: train_tiny_classifier,
    TINY_CLIP_FT: finetune_tiny_clip,
    TINY_CLIP_FT_CONTRASTIVE: finetune_tiny_clip,
}


def zoo_dir(world: World, cfg: TrainConfig, cache_dir: str | Path) -> Path:
    """Where :func:`train_zoo` keeps the models of (world, training config)."""
    return Path(cache_dir) / f"world-{world.config.key()}" / f"train-{cfg.key()}"


def _is_complete(folder: Path) -> bool:
    return (folder / _MARKER).is_file()


def train_zoo(
    world: World,
    cfg: TrainConfig,
    cache_dir: str | Path,
    *,
    progress: bool = True,
    threads: int | None = 2,
    device: str = "cpu",
) -> dict[str, Path]:
    """Train (or find cached) every model of ``cfg.models``; returns name -> checkpoint folder.

    Each model is written to a temporary folder beside its final place and renamed in when
    complete (with a ``spurbench_train.json`` record of its training inside), so an interrupted
    run leaves no half-written checkpoint and a second call returns at once. ``threads`` sets
    torch's thread count while training (results depend on it: keep it fixed for determinism).
    ``device`` may be ``"cuda"`` where one exists; the cache key does not include it (the recipe
    is the same), but the record does, and the weights differ numerically from a CPU run.
    """
    root = zoo_dir(world, cfg, cache_dir)
    wanted = list(cfg.models)
    if set(_FINETUNED) & set(wanted) and TINY_CLIP not in wanted:
        wanted.insert(0, TINY_CLIP)  # the fine-tuned models start from the tiny CLIP
    out: dict[str, Path] = {}
    with _threads(threads):
        for name in wanted:
            folder = root / name
            if not _is_complete(folder):
                start, cpu_start = time.perf_counter(), time.process_time()
                trainer = TRAINERS[name]
                if name in _FINETUNED:
                    trained = trainer(
                        out[TINY_CLIP], world, cfg, progress=progress, device=device,
                        objective=_FINETUNED[name],
                    )  # fmt: skip
                else:
                    trained = trainer(world, cfg, progress=progress, device=device)
                seconds = (time.perf_counter() - start, time.process_time() - cpu_start)
                _install(trained, folder, world, cfg, seconds, device, threads)
            out[name] = folder
    return {name: out[name] for name in cfg.models}


def _install(
    trained: TrainedModel,
    folder: Path,
    world: World,
    cfg: TrainConfig,
    seconds: tuple[float, float],
    device: str,
    threads: int | None,
) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        if trained.name == TINY_CLASSIFIER:
            save_timm(trained, tmp, world)
        else:
            save_open_clip(trained, tmp)
        record = {
            "model": trained.name,
            "world_key": world.config.key(),
            "world_config": dataclasses.asdict(world.config),
            "train_config": dataclasses.asdict(cfg),
            "train_key": cfg.key(),
            "train_seconds": round(seconds[0], 2),
            "train_cpu_seconds": round(seconds[1], 2),  # all threads; wall time suffers from load
            "device": device,
            "threads": threads if threads is not None else torch.get_num_threads(),
            "final_loss": trained.history["loss"][-1] if trained.history.get("loss") else None,
        }
        (tmp / _MARKER).write_text(json.dumps(record, indent=1) + "\n")
        if folder.exists():
            if _is_complete(folder):  # a concurrent run finished first: keep its copy
                return
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
