"""Issue 16, items 10 and 12: bad 1-vs-20 candidate files and empty protocol lists.

A candidates file without the true label, of the wrong size or with indices outside 0-999 gives
meaningless accuracies; ``--protocol ","`` used to load the model, store nothing and say
"Results stored". Each must be one ``error:`` line, exit code 2, before any model loads.
"""

from __future__ import annotations

import importlib
import json

import pytest
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.errors import ClassListError
from spurbench.evaluate import evaluate

runner = CliRunner()
MODEL = "ViT-B-32,laion400m_e31"  # never loaded: the sentinels refuse it
LABELS = (9, 100, 296)  # the classes of the generated CounterAnimal folder


@pytest.fixture()
def no_load(monkeypatch, no_model_load):
    """The runner's loader and the registry's (used for references) both refuse to load."""
    registry = importlib.import_module("spurbench.models.registry")

    def refuse(name, *args, **kwargs):
        no_model_load.append(str(name))
        raise AssertionError(f"a model ({name}) was loaded before input validation")

    monkeypatch.setattr(registry, "create_model", refuse)
    return no_model_load


def _sets(size: int = 20) -> dict[str, list[int]]:
    """Valid sets: each class with itself and the next ``size - 1`` labels not its own."""
    out = {}
    for y in LABELS:
        others = [c for c in range(500, 1000) if c != y][: size - 1]
        out[str(y)] = [y, *others]
    return out


def _break(kind: str) -> dict | str | bytes:
    sets = _sets()
    if kind == "missing true label":
        sets["9"] = list(range(500, 520))
    elif kind == "wrong size":
        sets = _sets(5)
    elif kind == "sizes differ":
        sets["9"] = sets["9"][:19]
    elif kind == "index out of range":
        sets["100"][-1] = 1000
    elif kind == "negative index":
        sets["100"][-1] = -1
    elif kind == "not an integer":
        sets["100"][-1] = "tench"
    elif kind == "label key out of range":
        sets["1234"] = sets.pop("296")
    elif kind == "class not covered":
        del sets["296"]
    elif kind == "repeated label":
        sets["9"][-1] = sets["9"][1]
    elif kind == "not an object":
        return json.dumps(list(sets.values()))
    elif kind == "malformed JSON":
        return '{"9": [9, 1'
    elif kind == "not UTF-8":
        return b"\xff\xfe{}"
    return json.dumps(sets)


BAD = [
    ("missing true label", "does not contain label 9"),
    ("wrong size", "needs sets of 20 labels"),
    ("sizes differ", "needs sets of 20 labels"),
    ("index out of range", "outside the ImageNet indices 0-999"),
    ("negative index", "outside the ImageNet indices 0-999"),
    ("not an integer", "outside the ImageNet indices 0-999"),
    ("label key out of range", "entry '1234' must be an ImageNet index"),
    ("class not covered", r"no candidate set for labels \[296\]"),
    ("repeated label", "repeats a label"),
    ("not an object", "must be a JSON object"),
    ("malformed JSON", "is not valid JSON"),
    ("not UTF-8", "is not UTF-8"),
]


@pytest.mark.parametrize(("kind", "message"), BAD, ids=[k for k, _ in BAD])
def test_bad_candidate_file_is_refused_before_the_model_loads(
    kind, message, counteranimal_dir, tmp_path, no_load
):
    path = tmp_path / "sets.json"
    content = _break(kind)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ClassListError, match=message):
        evaluate(MODEL, counteranimal_dir, ["1v20"], candidates=path, show_progress=False)
    assert no_load == []


def test_valid_file_passes_validation(counteranimal_dir, tmp_path, no_load):
    """The same check accepts a correct file: the sentinel (a model load) is reached."""
    path = tmp_path / "sets.json"
    path.write_text(json.dumps(_sets()))
    with pytest.raises(AssertionError, match="loaded before input validation"):
        evaluate(MODEL, counteranimal_dir, ["1v20"], candidates=path, show_progress=False)
    assert no_load == [MODEL]


@pytest.mark.parametrize("target", ["missing.json", "a folder"])
def test_cli_candidates_path_errors_exit_2(target, counteranimal_dir, tmp_path, no_load):
    path = tmp_path / target
    if target == "a folder":
        path.mkdir()
    out = runner.invoke(
        app,
        ["eval", "-m", MODEL, "-d", str(counteranimal_dir), "--protocol", "1v20",
         "--candidates", str(path), "--store", str(tmp_path / "s.duckdb")],
    )  # fmt: skip
    assert out.exit_code == 2, out.output
    assert out.output.count("error:") == 1 and "Traceback" not in out.output
    assert no_load == []


@pytest.mark.parametrize("protocol", [",", "", " , ", "1v21", "1v20,bogus"])
def test_empty_or_unknown_protocol_list_exit_2_before_loading(
    protocol, counteranimal_dir, tmp_path, no_load
):
    store = tmp_path / "s.duckdb"
    out = runner.invoke(
        app,
        ["eval", "-m", MODEL, "-d", str(counteranimal_dir), "--protocol", protocol,
         "--store", str(store)],
    )  # fmt: skip
    assert out.exit_code == 2, out.output
    assert out.output.count("error:") == 1 and "Results stored" not in out.output
    assert all(f"'{p}'" in out.output for p in ("1v1000", "1v20", "1vN", "both"))
    assert no_load == [] and not store.exists()


def test_library_refuses_an_empty_protocol_list(counteranimal_dir, no_load):
    with pytest.raises(ClassListError, match="No protocol given"):
        evaluate(MODEL, counteranimal_dir, [], show_progress=False)
    assert no_load == []


def test_lvlm_requests_are_checked_before_the_lvlm_loads(
    monkeypatch, counteranimal_dir, tmp_path, no_load
):
    """LVLMs have no head to rank labels with: '--reference self' and bad files stop first."""
    lvlm_loads: list[str] = []
    monkeypatch.setattr(
        "spurbench.models.lvlm.load_lvlm", lambda name, *a, **k: lvlm_loads.append(name)
    )
    bad = tmp_path / "sets.json"
    bad.write_text(json.dumps(_sets(5)))
    base = ["eval", "-m", "lvlm:some/llava", "-d", str(counteranimal_dir), "--protocol", "1v20",
            "--store", str(tmp_path / "s.duckdb")]  # fmt: skip
    for extra, message in (
        (["--reference", "self"], "--reference self is not available"),
        (["--candidates", str(bad)], "needs sets of 20 labels"),
        (["--score", "loudest"], "'loudest' is not one of 'paper'"),
    ):
        out = runner.invoke(app, base + extra)
        assert out.exit_code == 2, out.output
        assert out.output.count("error:") == 1 and message in out.output
    out = runner.invoke(app, ["eval", "-m", MODEL, "-d", str(counteranimal_dir), "--score", "pmi"])
    assert out.exit_code == 2 and "applies to vision-language chat models" in out.output
    assert lvlm_loads == [] and no_load == []
