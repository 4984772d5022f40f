"""Issue 16, items 2 and 21: class-folder layouts read what the user means, or say why not.

A NAS or an unzipped archive leaves system folders (``@eaDir``, ``__MACOSX``, ``.thumbnails``)
beside the images; they are never classes, groups or images. A class folder that mixes images
with sub-folders, or a group folder with sub-folders, is ambiguous (which images count?) and is
refused naming the folder. Symbolic links leaving the dataset root are refused as they are for
manifests, unless ``--allow-outside-root``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.data.layouts import open_dataset
from spurbench.errors import DatasetError
from tests.conftest import make_counteranimal, write_image

runner = CliRunner()


def _table(root: Path) -> list[tuple[str, int, str, str]]:
    t = open_dataset(root).table
    return sorted(zip(t.image_id, t.label, t.group, t.background, strict=True))


def cli_error(data: Path, tmp_path: Path, *extra: str) -> str:
    """Run ``eval`` on ``data`` expecting bad input: its single ``error:`` line (exit 2)."""
    out = runner.invoke(
        app,
        ["eval", "-m", "ViT-B-32,openai", "-d", str(data), "--protocol", "1vN",
         "--store", str(tmp_path / "s.db"), *extra],
    )  # fmt: skip
    assert out.exit_code == 2, out.output
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), out.output
    return lines[0]


@pytest.mark.parametrize(
    "junk",
    [
        "__MACOSX/9 ostrich/common-ground/._000.png",
        "@eaDir/x.png",
        "9 ostrich/@eaDir/000.png/SYNOFILE_THUMB_M.jpg",
        "9 ostrich/common-ground/@eaDir/000.png/SYNOFILE_THUMB_M.jpg",
        "9 ostrich/.thumbnails/a.png",
        "100 black swan/counter-ground/.hidden/a.png",
        "$RECYCLE.BIN/a.png",
    ],
)
def test_system_and_hidden_folders_are_neither_classes_groups_nor_images(tmp_path, junk):
    clean = _table(make_counteranimal(tmp_path / "clean"))
    root = make_counteranimal(tmp_path / "d")
    write_image(root / junk, np.random.default_rng(1), size=8)
    assert _table(root) == clean


def test_system_folders_in_plain_class_folders(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("zorp", "blick"):
        write_image(tmp_path / "d" / cls / "a.png", rng, size=8)
    write_image(tmp_path / "d" / "zorp" / "@eaDir" / "a.png" / "thumb.jpg", rng, size=8)
    t = open_dataset(tmp_path / "d").table
    assert sorted(t.image_id) == ["blick/a.png", "zorp/a.png"] and set(t.group) == {"all"}


def test_class_folder_mixing_images_and_folders_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("zorp", "blick"):
        write_image(tmp_path / "d" / cls / "a.png", rng, size=8)
    write_image(tmp_path / "d" / "zorp" / "extra" / "b.png", rng, size=8)
    with pytest.raises(DatasetError, match=r"'zorp'.*both images and sub-folders"):
        open_dataset(tmp_path / "d")
    assert "zorp" in cli_error(tmp_path / "d", tmp_path)


@pytest.mark.parametrize("where", ["9 ostrich/common-ground", "zorp/indoor"])
def test_images_nested_inside_group_folders_are_refused(tmp_path, where):
    root = make_counteranimal(tmp_path / "d")
    if where.startswith("zorp"):
        root = tmp_path / "z"
        for g in ("indoor", "outdoor"):
            write_image(root / "zorp" / g / "a.png", np.random.default_rng(0), size=8)
    write_image(root / where / "thumbs" / "t.png", np.random.default_rng(1), size=8)
    with pytest.raises(DatasetError, match=rf"{where}.*sub-folders"):
        open_dataset(root)


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    write_image(outside / "secret.png", np.random.default_rng(2), size=8)
    return outside


@pytest.mark.parametrize(
    "link",
    ["9 ostrich/common-ground/link.png", "9 ostrich/common-ground", "9 ostrich"],
)
def test_folder_layout_refuses_links_out_of_the_root(tmp_path, link, no_model_load):
    root = make_counteranimal(tmp_path / "d")
    outside = _outside(tmp_path)
    target = outside / "secret.png"
    if not link.endswith(".png"):  # a whole folder elsewhere, with the right layout inside
        make_counteranimal(outside / "mirror")
        target = outside / "mirror" / link
        for p in sorted((root / link).rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        (root / link).rmdir()
    (root / link).symlink_to(target)
    with pytest.raises(DatasetError, match="outside the dataset root"):
        open_dataset(root)
    line = cli_error(root, tmp_path)
    assert "outside the dataset root" in line and "--allow-outside-root" in line
    assert no_model_load == []
    assert len(open_dataset(root, allow_outside_root=True)) == len(
        open_dataset(make_counteranimal(tmp_path / "clean"))
    ) + (1 if link.endswith(".png") else 0)


def test_links_inside_the_root_are_fine(tmp_path):
    root = make_counteranimal(tmp_path / "d")
    (root / "9 ostrich" / "common-ground" / "again.png").symlink_to(
        root / "100 black swan" / "common-water" / "000.png"
    )
    with pytest.raises(DatasetError, match="same file"):  # but not counted twice (item 6)
        open_dataset(root)
