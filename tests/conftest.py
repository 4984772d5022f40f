"""Shared fixtures: tiny real architectures at random init and small generated datasets.

Nothing is downloaded: models are real open_clip / timm / torchvision / transformers
architectures built from tiny configs, saved the way users receive real checkpoints.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# Every test checks numbers of the exact image pass (fp32, eager PyTorch) unless it asks for
# another: ``auto``, the library's default, may pick bf16 or ONNX Runtime by timing this machine.
# Set in the environment, so that CLI subprocesses inherit it too.
os.environ["SPURBENCH_PRECISION"] = "fp32"
os.environ["SPURBENCH_ENGINE"] = "eager"

TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TINY_PREPROCESS = {
    "size": 32,
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A random-init open_clip ViT saved in open_clip's local-dir layout."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CLIP_CFG)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": TINY_CLIP_CFG, "preprocess_cfg": TINY_PREPROCESS})
    )
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("models") / "tiny_clip")


def write_image(
    path: Path, rng: np.random.Generator, size: int = 40, base: tuple[int, int, int] | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, size=(size, size, 3))
    if base is not None:
        pixels = (0.5 * pixels + 0.5 * np.array(base)).astype(np.uint8)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


COUNTERANIMAL_CLASSES = {  # ImageNet index: (folder name, common bg, counter bg)
    9: ("9 ostrich", "ground", "water"),
    100: ("100 black swan", "water", "ground"),
    296: ("296 ice bear", "snow", "grass"),
}


def make_counteranimal(root: Path, n_common: int = 5, n_counter: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for _, (folder, common, counter) in COUNTERANIMAL_CLASSES.items():
        for i in range(n_common):
            write_image(root / folder / f"common-{common}" / f"{i:03d}.png", rng)
        for i in range(n_counter):
            write_image(root / folder / f"counter-{counter}" / f"{i:03d}.jpg", rng)
    return root


@pytest.fixture()
def counteranimal_dir(tmp_path: Path) -> Path:
    return make_counteranimal(tmp_path / "CounterAnimal")


def save_tiny_hf_clip(folder: Path, seed: int = 0) -> Path:
    """A random-init transformers CLIPModel with a real CLIP BPE tokenizer (open_clip's vocab)."""
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    bpe = SimpleTokenizer()
    # open_clip spells CLIP's special tokens differently from the original vocab.json.
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {rename.get(k, k): v for k, v in bpe.encoder.items()}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    merges = [" ".join(p) for p, _ in sorted(bpe.bpe_ranks.items(), key=lambda kv: kv[1])]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_hf_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_hf_clip(tmp_path_factory.mktemp("models") / "tiny_hf_clip")


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.random_llava import save_random_llava

    return save_random_llava(tmp_path_factory.mktemp("models") / "tiny_llava")


@pytest.fixture(scope="session")
def synth_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of generated worlds and trained tiny zoos for the whole test session.

    Worlds and zoos are keyed by their configs, so tests asking for the same (world, training)
    pair share one training run instead of each paying for their own. ``SPURBENCH_TEST_SYNTH_DIR``
    keeps them between sessions.
    """
    env = os.environ.get("SPURBENCH_TEST_SYNTH_DIR")
    return Path(env) if env else tmp_path_factory.mktemp("synth")


@pytest.fixture(scope="session")
def demo_run(synth_cache: Path):
    """``spurbench demo --quiet`` (defaults, seed 0) run once per session into ``synth_cache``:
    the demo test checks its answer and the golden test every number it stored."""
    from typer.testing import CliRunner

    from spurbench.cli import app

    res = CliRunner().invoke(
        app, ["demo", "--out", str(synth_cache), "--quiet"], terminal_width=200
    )
    return synth_cache, res


def trained_world(cache: Path, world_cfg, train_cfg):
    """(World, {model name: checkpoint folder}) for the configs, generated/trained once."""
    from spurbench.synth.train import train_zoo
    from spurbench.synth.world import generate_world

    world = generate_world(world_cfg, cache / "worlds" / world_cfg.key())
    return world, train_zoo(world, train_cfg, cache / "models", progress=False)
