"""Issue 16, items 3, 5 and 6: a manifest means one thing, or it is refused with the rows.

* One typing rule for the whole label column: all integers are class indices, all names are
  names; a mix (or a number that is not an integer) is refused, listing the odd rows — never
  "A photo of 9." under 1-vs-N.
* Spelling: ``common``/``counter`` groups are matched whatever their case (as group folders
  are); class names or other groups that differ only in case or spacing are refused, since
  either spelling could be the class the prompts should name.
* One file, one image: ``./x.png``, ``img/../x.png`` and ``img//x.png`` are the same file, so
  listing it twice is refused (it would be counted twice).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spurbench.data.layouts import load_manifest, open_dataset
from spurbench.errors import DatasetError
from tests.conftest import write_image
from tests.reliability.test_folder_layouts import cli_error


def _manifest(tmp_path: Path, rows: list[tuple[str, ...]], columns=("path", "label", "group")):
    rng = np.random.default_rng(0)
    for r in rows:
        path = tmp_path / r[0]
        if not path.exists():
            write_image(path, rng, size=8)
    pd.DataFrame(rows, columns=list(columns)[: len(rows[0])]).to_csv(
        tmp_path / "m.csv", index=False
    )
    return tmp_path / "m.csv"


@pytest.mark.parametrize(
    ("labels", "odd"),
    [
        (["9", "100", "ostrich", "9"], "row 4"),  # one name among ImageNet indices
        (["cat", "dog", "9", "cat"], "row 4"),  # one index among names
        (["9", "1.5", "100", "9"], "row 3"),  # the README promises 1.5 is refused
        (["cat", "1.5", "dog", "cat"], "row 3"),
    ],
)
def test_mixed_label_kinds_are_refused_with_their_rows(tmp_path, labels, odd, no_model_load):
    rows = [(f"{i}.png", lab) for i, lab in enumerate(labels)]
    manifest = _manifest(tmp_path, rows, ("path", "label"))
    with pytest.raises(DatasetError, match=odd):
        load_manifest(manifest)
    assert odd in cli_error(manifest, tmp_path)
    assert no_model_load == []


def test_uniform_columns_keep_their_kind(tmp_path):
    ints = _manifest(tmp_path / "i", [("a.png", "9"), ("b.png", "100")], ("path", "label"))
    assert load_manifest(ints).classes.is_imagenet
    names = _manifest(tmp_path / "n", [("a.png", "cat"), ("b.png", "dog")], ("path", "label"))
    assert load_manifest(names).classes.names == ("cat", "dog")


def test_groups_common_and_counter_in_any_case(tmp_path):
    rows = [("a.png", "cat", "Common"), ("b.png", "cat", "COUNTER "), ("c.png", "dog", "common"),
            ("d.png", "dog", "counter")]  # fmt: skip
    ds = load_manifest(_manifest(tmp_path, rows))
    assert list(ds.table.group) == ["common", "counter", "common", "counter"]


@pytest.mark.parametrize(
    ("column", "spellings"),
    [("label", ["OSTRICH", "ostrich"]), ("label", ["black swan", "Black  Swan"]),
     ("group", ["indoor", "Indoor"])],
)  # fmt: skip
def test_spellings_that_differ_only_in_case_are_refused(tmp_path, column, spellings):
    rows = [(f"{i}.png", "cat", "common") for i in range(4)]
    for i, s in enumerate(spellings):
        rows[i] = (f"{i}.png", s, "common") if column == "label" else (f"{i}.png", "cat", s)
    with pytest.raises(DatasetError, match=rf"{spellings[0]}.*{spellings[1]}.*differ only"):
        load_manifest(_manifest(tmp_path, rows))


def test_one_consistent_spelling_is_kept_as_written(tmp_path):
    rows = [("a.png", "OSTRICH", "common"), ("b.png", "OSTRICH", "counter")]
    assert load_manifest(_manifest(tmp_path, rows)).classes.names == ("OSTRICH",)


def test_a_label_in_the_wrong_case_for_the_class_list_names_the_right_one(tmp_path):
    (tmp_path / "classes.txt").write_text("ostrich\nblack swan\n")
    manifest = _manifest(tmp_path, [("a.png", "Ostrich"), ("b.png", "black swan")],
                         ("path", "label"))  # fmt: skip
    with pytest.raises(DatasetError, match=r"'Ostrich'.*'ostrich'"):
        open_dataset(manifest, classes=tmp_path / "classes.txt")


@pytest.mark.parametrize(
    "spelling", ["./img/x.png", "img/../img/x.png", "img//x.png", "img/./x.png"]
)
def test_the_same_file_under_another_spelling_counts_once(tmp_path, spelling):
    rows = [("img/x.png", "cat"), ("img/y.png", "dog"), (spelling, "cat")]
    manifest = _manifest(tmp_path, rows, ("path", "label"))
    with pytest.raises(DatasetError, match=r"same file.*rows 2, 4"):
        load_manifest(manifest)
    assert "same file" in cli_error(manifest, tmp_path)


def test_paths_are_identified_by_their_normal_spelling(tmp_path):
    rows = [("./img/x.png", "cat"), ("img//y.png", "dog")]
    ds = load_manifest(_manifest(tmp_path, rows, ("path", "label")))
    assert list(ds.table.image_id) == ["img/x.png", "img/y.png"]


def test_integer_labels_that_contradict_a_class_name_column_are_refused(tmp_path):
    """An export's manifest read as ImageNet indices said 'tench' for 'heron' (item 4)."""
    rows = [("a.png", "0", "heron"), ("b.png", "1", "otter")]
    manifest = _manifest(tmp_path, rows, ("path", "label", "class_name"))
    with pytest.raises(DatasetError, match=r"'tench'.*'heron'"):
        load_manifest(manifest)
    agree = _manifest(tmp_path / "ok", [("a.png", "0", "tench"), ("b.png", "9", "Ostrich")],
                      ("path", "label", "class_name"))  # fmt: skip
    assert load_manifest(agree, name_set="wordnet").classes.is_imagenet
