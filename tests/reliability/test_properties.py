"""Case 9: property-based tests of manifest parsing and of the metric functions.

Manifests are written by hand, by scripts and by other tools; whatever they hold, spurbench
must either read them exactly as written or refuse them with a :class:`DatasetError` — never
crash with another exception mid-sweep, never silently change a value. The metrics must keep
their defining properties on any table of outcomes, not just on the hand-made examples of
tests/evaluate/test_metrics.py.
"""

from __future__ import annotations

import contextlib
import csv
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spurbench.data.classes import imagenet_classes, name_key
from spurbench.data.layouts import load_manifest
from spurbench.errors import DatasetError
from spurbench.evaluate.metrics import (
    class_balanced_accuracy,
    clopper_pearson,
    per_class,
    summarize,
)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- manifests ------------------------------------------------------------------------------

_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZéü猫 _-'"
_PATH_CHARS = _NAME_CHARS + '0123456789,"#;()[]&+=@!'
_WORDLIKE = {"true", "false", "nan", "na", "null", "none", "inf", "infinity"}


def _not_a_literal(s: str) -> bool:
    """Strings pandas could read as something else (a number, a boolean, a missing value).

    Those are exercised separately, in ``test_cells_pandas_would_retype`` below (numbers that
    are not integers are refused; words like "True" stay names).
    """
    return s.strip().lower() not in _WORDLIKE and pd.isna(pd.to_numeric(s, errors="coerce"))


names = st.text(_NAME_CHARS, min_size=1, max_size=12).filter(
    lambda s: s.strip() == s and s[0].isalpha() and _not_a_literal(s)
)
segments = st.text(_PATH_CHARS, min_size=1, max_size=10).filter(
    lambda s: s.strip(" ") == s and not s.startswith("~")
)
paths = st.builds(
    lambda parts, ext: "/".join(parts) + ext,
    st.lists(segments, min_size=1, max_size=3),
    st.sampled_from([".png", ".jpg", ".JPEG"]),
)


def _one_spelling(values: list[str]) -> list[str]:
    """Each name as first drawn: a valid manifest spells a class or group one way (``P`` and
    ``p`` together are refused, see ``_refuse_spelling_variants``)."""
    first: dict[str, str] = {}
    return [first.setdefault(name_key(v), v) for v in values]


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, object]:
    """A valid manifest: unique paths, ImageNet indices or names as labels, optional groups."""
    n = draw(st.integers(1, 12))
    path_list = draw(st.lists(paths, min_size=n, max_size=n, unique=True))
    if draw(st.booleans()):
        labels: list[object] = draw(st.lists(st.integers(0, 999), min_size=n, max_size=n))
    else:
        labels = _one_spelling(draw(st.lists(names, min_size=n, max_size=n)))
    table: dict[str, object] = {"path": path_list, "label": labels}
    if draw(st.booleans()):
        groups = draw(st.lists(names | st.just(""), min_size=n, max_size=n))
        table["group"] = _one_spelling(groups)
    return table


def _write(folder: Path, df: pd.DataFrame, fmt: str) -> Path:
    path = folder / f"manifest.{fmt}"
    if fmt == "parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, sep="\t" if fmt == "tsv" else ",", index=False)
    return path


@SETTINGS
@given(manifests(), st.sampled_from(["csv", "tsv", "parquet"]))
def test_valid_manifests_round_trip(table, fmt):
    df = pd.DataFrame(table)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp).resolve()
        ds = load_manifest(_write(base, df, fmt))
    t = ds.table
    assert list(t.image_id) == list(df.path)
    assert list(t.path) == [str((base / p).resolve()) for p in df.path]
    if isinstance(table["label"][0], int):
        assert ds.classes.is_imagenet and list(t.label) == list(df.label)
        assert list(t.class_name) == [imagenet_classes().names[i] for i in df.label]
    else:
        assert ds.classes.names == tuple(sorted(set(df.label)))
        assert list(t.class_name) == list(df.label)
        assert [ds.classes.names[i] for i in t.label] == list(df.label)
    groups = df["group"].replace("", "all") if "group" in df else ["all"] * len(df)
    assert list(t.group) == list(groups)


cells = st.one_of(
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=8),
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=False).map(str),
    st.sampled_from(["", "../x.png", "/etc/passwd", "a.png", "nan", "None", "1.5", "-1"]),
)
headers = st.one_of(
    st.sampled_from(
        [["path", "label"], ["path", "label", "group"], ["path"], ["label", "group"], []]
    ),
    st.lists(st.sampled_from(["path", "label", "group", "split", "x", ""]), max_size=4),
)


@SETTINGS
@given(headers, st.lists(st.lists(cells, max_size=5), max_size=6))
def test_junk_rows_give_dataset_error_or_a_dataset(header, rows):
    """Random tables (ragged rows, missing columns, odd cells): DatasetError, never a crash."""
    assume(not any(np.isinf(pd.to_numeric(c, errors="coerce")) for r in rows for c in r))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            if header:
                writer.writerow(header)
            writer.writerows(rows)
        try:
            ds = load_manifest(path)
        except DatasetError:
            return
        assert len(ds) > 0 and set(ds.table.label) <= set(range(len(ds.classes)))


@SETTINGS
@given(st.binary(max_size=300))
def test_junk_bytes_give_dataset_error_or_a_dataset(content):
    assume(b"\x00" not in content and b"inf" not in content.lower())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.csv"
        path.write_bytes(b"path,label\n" + content)
        with contextlib.suppress(DatasetError):
            load_manifest(path)


@pytest.mark.parametrize(
    ("rows", "expect"),
    [
        ([("a\x00b.png", "1")], "refused"),  # ValueError: embedded null byte
        ([("a.png", "inf")], "refused"),  # IntCastingNaNError
        ([("a.png", "1e400")], "refused"),  # IntCastingNaNError
        ([("", "1")], "refused"),  # resolves to the dataset root folder itself
        ([("a.png", "True"), ("b.png", "False")], "names"),  # read as ImageNet 1 and 0
        ([("a.png", "cat", "01")], "group 01"),  # the group becomes "1"
    ],
)
def test_cells_pandas_would_retype(tmp_path, rows, expect):
    path = tmp_path / "m.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "group"][: len(rows[0])])
        writer.writerows(rows)
    if expect == "refused":
        with pytest.raises(DatasetError):
            load_manifest(path)
    elif expect == "names":
        assert load_manifest(path).classes.names == ("False", "True")
    else:
        assert list(load_manifest(path).table.group) == ["01"]


# -- metrics --------------------------------------------------------------------------------


@st.composite
def outcomes(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 80))
    labels = np.array(draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)))
    groups = np.array(
        draw(st.lists(st.sampled_from(["common", "counter"]), min_size=n, max_size=n))
    )
    correct = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    top5 = correct | np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    return labels, groups, correct, top5


@SETTINGS
@given(outcomes())
def test_every_metric_is_in_range_and_inside_its_interval(data):
    labels, groups, correct, top5 = data
    s = summarize(labels, groups, correct, top5, n_boot=200)
    drop = s.metric.str.startswith("drop")
    lo, hi = np.where(drop, -1.0, 0.0), 1.0
    assert ((s.value >= lo) & (s.value <= hi)).all()
    assert ((s.ci_low >= lo - 1e-12) & (s.ci_high <= hi + 1e-12)).all()
    assert ((s.ci_low <= s.value + 1e-12) & (s.value <= s.ci_high + 1e-12)).all(), s


@SETTINGS
@given(outcomes())
def test_balanced_accuracy_is_the_mean_of_per_class_accuracies(data):
    labels, groups, correct, _ = data
    s = summarize(labels, groups, correct, n_boot=20).set_index(["metric", "group"])
    pc = per_class(labels, groups, correct)
    for g, cells in pc.groupby("group"):
        mine = s.loc[("balanced_accuracy", g), "value"]
        assert mine == pytest.approx(cells.accuracy.mean(), abs=1e-12)
        sel = groups == g
        assert mine == pytest.approx(class_balanced_accuracy(correct[sel], labels[sel]))
        assert s.loc[("accuracy", g), "value"] == pytest.approx(correct[sel].mean())
    assert ((pc.ci_low <= pc.accuracy + 1e-12) & (pc.accuracy <= pc.ci_high + 1e-12)).all()


@SETTINGS
@given(outcomes())
def test_drops_are_antisymmetric_under_swapping_groups(data):
    labels, groups, correct, _ = data
    swapped = np.where(groups == "common", "counter", "common")
    a = summarize(labels, groups, correct, n_boot=20).set_index("metric").value
    b = summarize(labels, swapped, correct, n_boot=20).set_index("metric").value
    for metric in ("drop", "drop_per_image"):
        assert (metric in a) == (metric in b)
        if metric in a:
            assert a[metric] == pytest.approx(-b[metric], abs=1e-12)
    pa, pb = per_class(labels, groups, correct), per_class(labels, swapped, correct)
    if "drop" in pa:
        da = pa.drop_duplicates("label").set_index("label")["drop"].dropna()
        db = pb.drop_duplicates("label").set_index("label")["drop"].dropna()
        pd.testing.assert_series_equal(da, -db, check_names=False)


@SETTINGS
@given(outcomes(), st.randoms())
def test_metrics_do_not_depend_on_row_order(data, rnd):
    labels, groups, correct, top5 = data
    order = np.arange(len(labels))
    rnd.shuffle(order)
    a = summarize(labels, groups, correct, top5, n_boot=50, seed=3)
    b = summarize(labels[order], groups[order], correct[order], top5[order], n_boot=50, seed=3)
    pd.testing.assert_frame_equal(a, b)


@SETTINGS
@given(st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_clopper_pearson_contains_the_proportion_and_nests(kn):
    k, n = kn
    lo95, hi95 = clopper_pearson(k, n, 0.95)
    lo99, hi99 = clopper_pearson(k, n, 0.99)
    assert 0.0 <= lo99 <= lo95 <= k / n <= hi95 <= hi99 <= 1.0
