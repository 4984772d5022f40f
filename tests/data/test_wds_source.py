"""WebDataset shards (clip_benchmark's wds layout) read in place, checked against the folder."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from spurbench.data.images import load_rgb
from spurbench.data.layouts import open_dataset
from spurbench.errors import DatasetError
from tests.conftest import make_counteranimal, write_image

wds = pytest.importorskip("webdataset")


def write_shards(dataset, out: Path, per_shard: int = 7, fields=("cls", "group", "background")):
    """clip_benchmark's layout: ``out/test/{0..}.tar``, one sample per dataset row, in order."""
    (out / "test").mkdir(parents=True)
    with wds.ShardWriter(str(out / "test" / "%d.tar"), maxcount=per_shard, verbose=0) as sink:
        for i, r in enumerate(dataset.table.itertuples()):
            sample = {"__key__": f"s{i:07d}", Path(r.path).suffix[1:]: Path(r.path).read_bytes()}
            values = {"cls": str(r.label), "group": r.group, "background": r.background}
            sink.write(sample | {f: values[f] for f in fields})
    return out


@pytest.fixture()
def folder_and_shards(tmp_path: Path):
    folder = make_counteranimal(tmp_path / "CounterAnimal")
    ds = open_dataset(folder)
    return folder, write_shards(ds, tmp_path / "wds")


def test_shards_hold_the_folders_rows(folder_and_shards):
    folder, shards = folder_and_shards
    a, b = open_dataset(folder), open_dataset(shards)
    assert len(list((shards / "test").glob("*.tar"))) > 1  # several shards, in order
    cols = ["label", "class_name", "group", "background"]
    pd.testing.assert_frame_equal(a.table[cols], b.table[cols])
    assert a.classes == b.classes and b.classes.is_imagenet
    for pa, pb in zip(a.table["path"][::5], b.table["path"][::5], strict=True):
        assert np.array_equal(np.asarray(load_rgb(pa)), np.asarray(load_rgb(pb)))
    assert set(b.table["split"]) == {"test"}


def test_every_shard_spec_opens_the_same_samples(folder_and_shards):
    _, shards = folder_and_shards
    n = len(list((shards / "test").glob("*.tar")))
    specs = [shards, shards / "test", str(shards / "test" / f"{{0..{n - 1}}}.tar")]
    tables = [open_dataset(s).table for s in specs]
    for t in tables[1:]:
        assert t["path"].tolist() == tables[0]["path"].tolist()
    one = open_dataset(shards / "test" / "0.tar")
    assert one.table["path"].tolist() == tables[0]["path"].tolist()[: len(one)]


def test_results_equal_the_folder(folder_and_shards, tiny_clip_dir, tmp_path):
    """Same images, same order: same features bit for bit, hence the same metrics."""
    from spurbench.evaluate import evaluate

    folder, shards = folder_and_shards
    model = f"local-dir:{tiny_clip_dir}"
    kw = dict(cache_dir=tmp_path / "cache", show_progress=False, decode_workers=0, batch_size=8)
    (a,) = evaluate(model, folder, ("1v1000",), **kw)
    (b,) = evaluate(model, shards, ("1v1000",), **kw)
    pd.testing.assert_frame_equal(a.summary, b.summary)
    assert a.predictions["correct"].tolist() == b.predictions["correct"].tolist()
    np.testing.assert_array_equal(
        np.stack(a.predictions["topk_scores"]), np.stack(b.predictions["topk_scores"])
    )


def test_rerun_is_cached_and_rewriting_a_shard_is_not(folder_and_shards, tiny_clip_dir, tmp_path):
    from spurbench.features.cache import encode_dataset, feature_key
    from spurbench.models import create_model

    _, shards = folder_and_shards
    model = create_model(f"local-dir:{tiny_clip_dir}")
    calls = []

    def counting(units, bar):
        calls.extend(units)
        from spurbench.features.cache import _encode_locally

        yield from _encode_locally(model, ds, units, 8, 0, bar)

    ds = open_dataset(shards)
    kw = dict(batch_size=8, show_progress=False, shard_rows=8, shard_encoder=counting)
    first = encode_dataset(model, ds, tmp_path / "c", **kw)
    n_units = len(calls)
    assert n_units > 0
    ds = open_dataset(shards)  # reopened: same identity
    again = encode_dataset(model, ds, tmp_path / "c", **kw)
    assert len(calls) == n_units and again.key == first.key
    np.testing.assert_array_equal(first.embedding, again.embedding)
    shard = shards / "test" / "0.tar"
    st = shard.stat()
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same bytes
    assert feature_key(model, open_dataset(shards), cache_dir=tmp_path / "c") == first.key
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar if m.isfile()]
    first_image = next(m.name for m, _ in members if m.name.endswith((".png", ".jpg")))
    with tarfile.open(shard, "w") as tar:  # same layout, one image's bytes changed
        for m, data in members:
            tar.addfile(m, io.BytesIO(data[::-1] if m.name == first_image else data))
    assert feature_key(model, open_dataset(shards), cache_dir=tmp_path / "c") != first.key


def test_clip_benchmark_class_names_and_templates(tmp_path):
    rng = np.random.default_rng(0)
    names = ["zorblax", "quuxling", "frobnitz"]
    root = tmp_path / "wds_custom"
    (root / "test").mkdir(parents=True)
    (root / "classnames.txt").write_text("\n".join(names) + "\n")
    (root / "zeroshot_classification_templates.txt").write_text("a photo of a {c}.\nart of {c}.\n")
    labels = [0, 2, 1, 2, 0, 1]
    with wds.ShardWriter(str(root / "test" / "%d.tar"), maxcount=4, verbose=0) as sink:
        for i, label in enumerate(labels):
            write_image(tmp_path / "img.png", rng)
            buf = io.BytesIO()
            Image.open(tmp_path / "img.png").save(buf, format="webp", lossless=True)
            sink.write({"__key__": f"s{i:07d}", "webp": buf.getvalue(), "cls": label})
    ds = open_dataset(root)
    assert ds.classes.names == tuple(names) and not ds.classes.is_imagenet
    assert ds.table["label"].tolist() == labels
    assert ds.table["class_name"].tolist() == [names[k] for k in labels]
    assert ds.templates == ("a photo of a {c}.", "art of {c}.")
    assert (ds.table["group"] == "all").all()
    assert load_rgb(ds.table["path"][0]).size == (40, 40)


def test_dataset_templates_are_used_unless_named(tmp_path, tiny_clip_dir):
    from spurbench.data.sources import build_dataset
    from spurbench.evaluate import evaluate
    from spurbench.store import ResultsStore

    folder = make_counteranimal(tmp_path / "ca", n_common=2, n_counter=2)
    base = open_dataset(folder)
    shipped = build_dataset(
        "shipped",
        base.root,
        base.table[["image_id", "path", "label", "group"]],
        class_names=None,
        classes=base.classes,
        name_set="openai",
        templates=("a {c} in the wild.",),
    )
    store = ResultsStore(tmp_path / "r.duckdb")
    kw = dict(store=store, cache_dir=tmp_path / "c", show_progress=False, decode_workers=0)
    evaluate(f"local-dir:{tiny_clip_dir}", shipped, ("1vN",), **kw)
    evaluate(f"local-dir:{tiny_clip_dir}", shipped, ("1vN",), templates="paper", **kw)
    used = store.runs()["templates"].tolist()
    assert used == ['["a {c} in the wild."]', '["A photo of {c}."]']


def test_bad_shards_are_clear_errors(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    with tarfile.open(root / "0.tar", "w") as tar:  # an image without a label member
        data = io.BytesIO()
        Image.new("RGB", (8, 8)).save(data, format="png")
        info = tarfile.TarInfo("s0.png")
        info.size = len(data.getvalue())
        tar.addfile(info, io.BytesIO(data.getvalue()))
    with pytest.raises(DatasetError, match=r"no '\.cls' label member"):
        open_dataset(root)
    gz = tmp_path / "gz"
    gz.mkdir()
    with tarfile.open(gz / "0.tar", "w:gz") as tar:
        tar.add(root / "0.tar", arcname="x.png")
    with pytest.raises(DatasetError, match="uncompressed"):
        open_dataset(gz)
    with pytest.raises(DatasetError, match="do not exist"):
        open_dataset(str(root / "{0..3}.tar"))


def test_cli_reads_shards_with_named_members(tmp_path, tiny_clip_dir):
    """``--label-column`` / ``--group-column`` name member extensions; the store has the run."""
    from typer.testing import CliRunner

    from spurbench.cli import app
    from spurbench.store import ResultsStore

    folder = make_counteranimal(tmp_path / "ca", n_common=2, n_counter=2)
    ds = open_dataset(folder)
    (tmp_path / "wds" / "test").mkdir(parents=True)
    with wds.ShardWriter(str(tmp_path / "wds" / "test" / "%d.tar"), maxcount=5, verbose=0) as s:
        for i, r in enumerate(ds.table.itertuples()):
            s.write(
                {
                    "__key__": f"k{i}",
                    "png" if r.path.endswith("png") else "jpg": Path(r.path).read_bytes(),
                    "inet": str(r.label),
                    "kind": r.group,
                }
            )
    pattern = str(tmp_path / "wds" / "test" / "{0..2}.tar")  # 12 samples, 5 a shard
    store = tmp_path / "r.duckdb"
    args = [
        "eval",
        "-m",
        f"local-dir:{tiny_clip_dir}",
        "-d",
        pattern,
        "--store",
        str(store),
        "--cache-dir",
        str(tmp_path / "c"),
        "-q",
        "--protocol",
        "1vN",
        "--label-column",
        "inet",
        "--group-column",
        "kind",
    ]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "counter" in out.output
    assert ResultsStore(store).summary()["n_images"].tolist() == [len(ds)]


def test_curation_hashes_and_exports_images_from_shards(folder_and_shards, tmp_path):
    """Cleaning reads shard members (none unreadable); export writes them out as files."""
    from spurbench.curate.cleaning import file_hashes
    from spurbench.curate.export import _copy_images

    folder, shards = folder_and_shards
    a, b = open_dataset(folder), open_dataset(shards)
    ha, hb = file_hashes(a), file_hashes(b)
    assert (hb["error"] == "").all()
    assert hb["sha256"].tolist() == ha["sha256"].tolist()  # the very same bytes
    rows = b.table.assign(background_source="manual", flags="")
    out = _copy_images(b, rows, None, tmp_path / "export")  # type: ignore[arg-type]
    originals = a.table["path"].tolist()
    for rel, original in zip(out["path"], originals, strict=True):
        written = tmp_path / "export" / rel
        assert written.suffix == Path(original).suffix  # .png stays .png, .jpg stays .jpg
        assert written.read_bytes() == Path(original).read_bytes()


def test_a_stray_tar_beside_class_folders_is_not_a_webdataset(tmp_path):
    folder = make_counteranimal(tmp_path / "ca", n_common=1, n_counter=1)
    with tarfile.open(folder / "backup.tar", "w") as tar:
        tar.add(next(folder.rglob("*.png")), arcname="x.png")
    assert len(open_dataset(folder)) == 6  # still the folder's images
