"""Issue 16, "Done when": random messy manifests give the clean manifest's numbers, or one error.

Hypothesis writes manifests as people do — labels as indices or names in varying case, one odd
label kind among them, paths spelled ``./x``, ``img/../img/x`` or ``img//x``, groups spelled
``Common`` or `` COUNTER``, the same file listed twice — and checks the one promise that
matters: the run either gives exactly the numbers of the cleaned manifest, or stops with one
``error:`` line (exit 2) before any model loads. The test decides which on its own, from what
it wrote; no model runs per example: a deterministic scorer (from each file's bytes) stands in
for one, and the tiny CLIP checks one messy manifest end to end at the bottom.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.data.layouts import load_manifest
from spurbench.errors import DatasetError
from spurbench.evaluate import evaluate
from spurbench.evaluate.metrics import summarize
from tests.conftest import write_image

runner = CliRunner()
N_FILES = 6
NAMES = ("ostrich", "black swan", "heron")
INDICES = (9, 100, 144)
SPELL_PATH = ("{d}/{f}", "./{d}/{f}", "{d}/../{d}/{f}", "{d}//{f}", "{d}/./{f}")
SPELL_CASE = (str.lower, str.upper, str.title)


@st.composite
def messy(draw: st.DrawFn) -> dict:
    """A clean table (one row per file) and a messy rendering of it, with what is wrong."""
    kind = draw(st.sampled_from(["names", "indices"]))
    classes = NAMES if kind == "names" else INDICES
    files = list(range(draw(st.integers(2, N_FILES))))
    label = [draw(st.sampled_from(classes)) for _ in files]
    group = [draw(st.sampled_from(["common", "counter"])) for _ in files]
    clean = pd.DataFrame({"path": [f"img/f{k}.png" for k in files], "label": label, "group": group})
    # one case per class (consistent: fine), sometimes a second one on one row (refused)
    style = {c: draw(st.sampled_from(SPELL_CASE)) for c in classes}
    rows = []
    for k in files:
        written = style[label[k]](label[k]) if kind == "names" else str(label[k])
        g = draw(st.sampled_from(SPELL_CASE))(group[k])
        rows.append([draw(st.sampled_from(SPELL_PATH)).format(d="img", f=f"f{k}.png"), written,
                     draw(st.sampled_from(["", " "])) + g])  # fmt: skip
    case_clash = False
    if kind == "names" and draw(st.booleans()):
        r = draw(st.sampled_from(files))
        other = draw(st.sampled_from(SPELL_CASE))(label[r])
        case_clash = other != rows[r][1] and any(
            x[1] == rows[r][1] for i, x in enumerate(rows) if i != r
        )
        rows[r][1] = other
    mixed = draw(st.booleans())
    if mixed:
        r = draw(st.sampled_from(files))
        rows[r][1] = draw(st.sampled_from(["1.5", "7"] if kind == "names" else ["1.5", "heron"]))
    duplicate = draw(st.booleans())
    if duplicate:
        r = draw(st.sampled_from(files))
        spelling = draw(st.sampled_from(SPELL_PATH)).format(d="img", f=f"f{r}.png")
        rows.insert(draw(st.integers(0, len(rows))), [spelling, rows[r][1], rows[r][2]])
    order = draw(st.permutations(range(len(rows))))
    table = pd.DataFrame([rows[i] for i in order], columns=["path", "label", "group"])
    refused = case_clash or mixed or duplicate
    return {"clean": clean, "messy": table, "refused": refused}


def _score(ds) -> pd.DataFrame:
    """Numbers from a stand-in model: 'correct' is a fixed function of each file's bytes.

    Labels are numbered by the class name's lower case, so that a consistently upper-cased
    class is the same class; then the metrics are those of :func:`summarize`, as a run's are.
    """
    t = ds.table
    correct = [hashlib.sha256(Path(p).read_bytes()).digest()[0] % 2 == 0 for p in t.path]
    keys = sorted({str(c).lower() for c in t.class_name})
    labels = [keys.index(str(c).lower()) for c in t.class_name]
    s = summarize(np.array(labels), t.group.to_numpy(), np.array(correct), n_boot=50)
    ids = sorted(zip(t.image_id, t.group, labels, strict=True))
    return s.assign(ids=str(ids))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(messy())
def test_messy_manifest_gives_the_clean_numbers_or_one_error(no_model_load, case):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for k in range(N_FILES):
            (root / "img").mkdir(exist_ok=True)
            (root / "img" / f"f{k}.png").write_bytes(bytes([k]) * 8)
        case["clean"].to_csv(root / "clean.csv", index=False)
        case["messy"].to_csv(root / "messy.csv", index=False)
        expected = _score(load_manifest(root / "clean.csv"))
        if not case["refused"]:
            pd.testing.assert_frame_equal(_score(load_manifest(root / "messy.csv")), expected)
            return
        try:
            load_manifest(root / "messy.csv")
        except DatasetError:
            pass
        else:
            raise AssertionError(f"not refused:\n{case['messy']}")
        out = runner.invoke(app, ["eval", "-m", "ViT-B-32,openai", "-d", str(root / "messy.csv"),
                                  "--protocol", "1vN", "--store", str(root / "s.db")])  # fmt: skip
        lines = [line for line in out.output.splitlines() if line.strip()]
        assert out.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), out.output
        assert no_model_load == []


def test_a_messy_manifest_gives_the_clean_numbers_with_a_real_model(tiny_model, tmp_path):
    """End to end with the tiny CLIP: paths, case and groups spelled differently, same run."""
    rng = np.random.default_rng(0)
    clean, messy_rows = [], []
    spell = ["{d}/{f}", "./{d}/{f}", "{d}/../{d}/{f}", "{d}//{f}"]
    for k in range(8):
        f = f"f{k}.png"
        write_image(tmp_path / "img" / f, rng, size=16)
        name, group = NAMES[k % 2], ("common", "counter")[k // 4]
        clean.append((f"img/{f}", name, group))
        messy_rows.append((spell[k % 4].format(d="img", f=f), name.upper(), f" {group.title()}"))
    columns = ["path", "label", "group"]
    pd.DataFrame(clean, columns=columns).to_csv(tmp_path / "clean.csv", index=False)
    pd.DataFrame(messy_rows, columns=columns).to_csv(tmp_path / "messy.csv", index=False)
    a, b = (
        evaluate(tiny_model, tmp_path / f"{m}.csv", ["1vN"], cache_dir=tmp_path / "cache",
                 batch_size=8, n_boot=100, show_progress=False)[0]
        for m in ("clean", "messy")
    )  # fmt: skip
    pd.testing.assert_frame_equal(a.summary, b.summary, check_exact=True)
    assert list(a.predictions.image_id) == list(b.predictions.image_id)
