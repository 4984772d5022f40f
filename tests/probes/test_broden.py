"""Concept images in the Broden layout: parsing, and concept AP on a planted direction.

The folder is generated here in NetDissect's layout (index.csv, label.csv, images/ with mask
PNGs whose label number is R + 256·G); every AP is checked against
``sklearn.metrics.average_precision_score`` on the same scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score
from typer.testing import CliRunner

from spurbench.errors import DatasetError
from spurbench.features.cache import encode_dataset
from spurbench.models import create_model
from spurbench.probes import privileged_directions, probe
from spurbench.probes.broden import read_broden
from spurbench.probes.concepts import concept_direction_scores
from tests.conftest import write_image

DOG, RED, STRIPED = 300, 1, 5  # 300 needs the mask's green channel (300 = 44 + 256·1)


def _mask(path: Path, number: int, size: int = 16) -> None:
    """A mask with ``number`` on a block of pixels, 0 elsewhere."""
    px = np.zeros((size, size, 3), dtype=np.uint8)
    px[4:12, 4:12, 0], px[4:12, 4:12, 1] = number % 256, number // 256
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(px).save(path)


def make_broden(root: Path, n: int = 80, seed: int = 0) -> dict[str, np.ndarray]:
    """n images; 'object=dog' (a mask) on half of them, which are tinted red; 'color=red-c'
    (a mask) on the same dog images; 'texture=striped' (image-level) at random."""
    rng = np.random.default_rng(seed)
    dog = np.zeros(n, dtype=bool)
    dog[rng.permutation(n)[: n // 2]] = True
    striped = rng.random(n) < 0.5
    rows = []
    for i in range(n):
        image = f"synth/{i:03d}.jpg"
        write_image(root / "images" / image, rng, size=32, base=(230, 20, 20) if dog[i] else None)
        color, obj = "", ""
        if dog[i]:
            obj = f"synth/{i:03d}_object.png"
            _mask(root / "images" / obj, DOG)
            color = f"synth/{i:03d}_color.png"
            _mask(root / "images" / color, RED)
        else:  # an all-zero mask names no concept
            obj = f"synth/{i:03d}_object.png"
            _mask(root / "images" / obj, 0)
        texture = str(STRIPED) if striped[i] else ""
        rows.append({"image": image, "split": "train" if i % 4 else "val", "ih": 32, "iw": 32,
                     "sh": 16, "sw": 16, "color": color, "object": obj, "part": "",
                     "material": "", "scene": "", "texture": texture})  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "index.csv", index=False)
    labels = {"number": [0, RED, STRIPED, DOG], "name": ["-", "red-c", "striped", "dog"],
              "category": ["", "color(1)", "texture(1)", "object(1)"]}  # fmt: skip
    pd.DataFrame(labels).to_csv(root / "label.csv", index=False)
    return {"object=dog": dog, "color=red-c": dog, "texture=striped": striped}


def test_read_broden_finds_every_planted_concept(tmp_path):
    planted = make_broden(tmp_path / "broden")
    got = read_broden(tmp_path / "broden")
    assert sorted(got.concepts.columns) == sorted(planted)
    for name, truth in planted.items():
        np.testing.assert_array_equal(got.concepts[name].to_numpy(), truth)
    assert all(Path(p).is_file() for p in got.dataset.table["path"])
    val = read_broden(tmp_path / "broden", split="val")
    assert len(val.dataset) == 20
    with pytest.raises(DatasetError, match="Broden-layout"):
        read_broden(tmp_path)
    with pytest.raises(DatasetError, match="no concept categories"):
        read_broden(tmp_path / "broden", categories=["objects"])


def test_planted_direction_encodes_the_concept_with_sklearns_ap(tmp_path):
    """A feature direction constructed to carry 'object=dog' gets its AP, as sklearn computes."""
    planted = make_broden(tmp_path / "broden")
    concepts = read_broden(tmp_path / "broden").concepts
    rng = np.random.default_rng(1)
    W = rng.standard_normal((5, 12))
    v = np.linalg.svd(W, full_matrices=False)[2][1]  # the head's second singular direction
    H = rng.standard_normal((80, 12)) + 3.0 * planted["object=dog"][:, None] * v
    dirs = privileged_directions(W, H)
    rank = int(np.flatnonzero(dirs.original_index == 1)[0])
    scores = concept_direction_scores(H, dirs, concepts).set_index(["concept", "direction"])
    for name, truth in planted.items():
        proj = H @ dirs.vectors[rank]
        expected = max(average_precision_score(truth, proj), average_precision_score(truth, -proj))
        assert scores.loc[(name, rank), "ap"] == pytest.approx(expected)
    assert scores.loc[("object=dog", rank), "ap"] > 0.95
    assert scores.loc[("texture=striped", rank), "ap"] < 0.75
    assert scores.loc[("object=dog", rank), "column"] == "object"


def test_probe_counts_broden_concepts_on_the_heads_directions(
    counteranimal_dir, tiny_clip_dir, tmp_path
):
    from tests.probes.test_run import _cli  # the one-command app the other CLI tests use

    planted = make_broden(tmp_path / "broden")
    cache = tmp_path / "cache"
    model = create_model(f"local-dir:{tiny_clip_dir}")
    result = probe(
        model,
        counteranimal_dir,
        probes=["concepts"],
        concept_images=tmp_path / "broden",
        cache_dir=cache,
        show_progress=False,
    )
    assert result.concept_source == "Broden folder broden (80 images)"
    c = result.concepts.set_index("concept")
    assert set(c.index) == set(planted)
    # the red-tinted dog images are linearly decodable; the random texture is not
    assert c.loc["object=dog", "encoded_by_probe"]
    assert not c.loc["texture=striped", "encoded_by_probe"]
    # direction APs are those of the Broden images' own features on the head's directions
    feats = encode_dataset(model, read_broden(tmp_path / "broden").dataset, cache,
                           show_progress=False)  # fmt: skip
    H = feats.pre_head[feats.ok].astype(np.float64)
    s = result.concept_direction_scores
    for r in s[s["concept"] == "object=dog"].itertuples():
        proj = H @ result.directions.vectors[r.direction]
        y = planted["object=dog"]
        assert r.ap == pytest.approx(
            max(average_precision_score(y, proj), average_precision_score(y, -proj)), abs=1e-9
        )
    src = result.rows[result.rows["metric"] == "concept_source"]
    assert src["key"].tolist() == ["Broden folder broden (80 images)"]

    out = tmp_path / "out"
    args = ["probe", "-m", f"local-dir:{tiny_clip_dir}", "-d", str(counteranimal_dir),
            "--probe", "concepts", "--concepts", str(tmp_path / "broden"), "--cache-dir",
            str(cache), "--store", str(tmp_path / "p.duckdb"), "-q", "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(_cli(), args, terminal_width=250)
    assert res.exit_code == 0, res.output
    assert "Broden" in res.output and "1v1000" in res.output  # concept source and head named
    assert set(pd.read_csv(out / "concepts.csv")["concept"]) == set(planted)
    rows = json.loads((out / "probe_rows.json").read_text())
    assert any(r["metric"] == "concept_source" for r in rows)
    empty = tmp_path / "not_broden"
    empty.mkdir()
    args[args.index(str(tmp_path / "broden"))] = str(empty)
    bad = CliRunner().invoke(_cli(), args)
    assert bad.exit_code == 2 and "Broden-layout" in bad.output
