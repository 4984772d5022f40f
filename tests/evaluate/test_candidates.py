"""1-vs-20 candidate sets: the paper's reference by default, its own head, hashed and exported.

The paper (Wang, Lin et al. 2024) ranks labels once with CLIP ViT-B/32 LAION-400M, prompt
"A photo of {c}." and OpenAI names, and scores every model among those sets. Expected sets are
computed here from the reference's own head, independently of the runner's code path.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import duckdb
import numpy as np
import pytest
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.data.classes import imagenet_classes
from spurbench.data.layouts import open_dataset
from spurbench.errors import SpurbenchError, WeightsUnavailableError
from spurbench.evaluate import evaluate
from spurbench.evaluate.candidates import PAPER_REFERENCE, candidates_digest
from spurbench.features.cache import encode_dataset
from spurbench.models import create_model
from spurbench.store import ResultsStore
from tests.conftest import save_tiny_clip

runner = CliRunner()
TWO_TEMPLATES = ["a {c} in a photo", "art of the {c}"]


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny CLIP (another seed): a reference distinct from the evaluated model."""
    return save_tiny_clip(tmp_path_factory.mktemp("models") / "tiny_reference", seed=1)


def _expected_sets(reference: str, data: Path, cache: Path) -> dict[int, list[int]]:
    """Top-20 mean cosine per class with the paper's prompt and OpenAI names, from scratch."""
    ref = create_model(reference)
    dataset = open_dataset(data)
    feats = encode_dataset(ref, dataset, cache, show_progress=False)
    text = ref.text_classifier(imagenet_classes("openai").names, ["A photo of {c}."])
    emb = feats.embedding / np.linalg.norm(feats.embedding, axis=1, keepdims=True)
    sims = emb @ text.T
    labels = dataset.table["label"].to_numpy()
    out = {}
    for y in np.unique(labels):
        top = list(np.argsort(-sims[labels == y].mean(0), kind="stable")[:20])
        if y not in top:
            top = [*top[:19], y]
        out[int(y)] = sorted(int(c) for c in top)
    return out


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network and no cached copy: open_clip's hub download fails as it does offline."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    def unreachable(*args: object, **kwargs: object) -> None:
        raise LocalEntryNotFoundError("cannot find the requested files in the local cache")

    monkeypatch.setattr("open_clip.pretrained.hf_hub_download", unreachable)


def _no_encoding(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and refuse) every image encoding and every load of the evaluated model."""
    calls: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        calls.append("encode")
        raise AssertionError("images were encoded before the reference was checked")

    # every stage encodes through Runtime.encode, which imports encode_dataset when it runs
    monkeypatch.setattr("spurbench.features.cache.encode_dataset", refuse)
    return calls


def test_default_reference_is_the_papers_and_missing_weights_stop_before_encoding(
    monkeypatch, tiny_clip_dir, counteranimal_dir, tmp_path
):
    _offline(monkeypatch)
    encoded = _no_encoding(monkeypatch)
    loaded: list[str] = []
    registry = importlib.import_module("spurbench.models.registry")
    real = registry.create_model

    def recording(name, *args, **kwargs):
        loaded.append(str(name))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(registry, "create_model", recording)
    runner_module = importlib.import_module("spurbench.evaluate.runner")
    monkeypatch.setattr(runner_module, "create_model", recording)
    with pytest.raises(WeightsUnavailableError) as info:
        evaluate(f"local-dir:{tiny_clip_dir}", counteranimal_dir, ["1v20"], show_progress=False,
                 cache_dir=tmp_path / "c")  # fmt: skip
    text = str(info.value)
    assert PAPER_REFERENCE in text and "the paper's" in text
    assert "--reference MODEL" in text and "--candidates FILE" in text
    assert "--reference self" in text
    assert loaded == [PAPER_REFERENCE]  # the reference, and nothing after it
    assert encoded == []


def test_cli_missing_reference_is_one_error_line_exit_2(
    monkeypatch, tiny_clip_dir, counteranimal_dir, tmp_path
):
    _offline(monkeypatch)
    encoded = _no_encoding(monkeypatch)
    out = runner.invoke(
        app,
        ["eval", "-m", f"local-dir:{tiny_clip_dir}", "-d", str(counteranimal_dir),
         "--protocol", "1v20", "--store", str(tmp_path / "s.duckdb"), "-q"],
    )  # fmt: skip
    assert out.exit_code == 2, out.output
    assert out.output.count("error:") == 1 and "--reference self" in out.output
    assert "Results stored" not in out.output and "Traceback" not in out.output
    assert encoded == []


def test_reference_head_uses_the_papers_prompt_and_names(
    tiny_clip_dir, reference_dir, counteranimal_dir, tmp_path
):
    """Whatever templates or name set the evaluated model uses, the sets stay the paper's."""
    cache = tmp_path / "cache"
    expected = _expected_sets(f"local-dir:{reference_dir}", counteranimal_dir, cache)
    kw = dict(reference=f"local-dir:{reference_dir}", cache_dir=cache, show_progress=False,
              n_boot=20)  # fmt: skip
    model = f"local-dir:{tiny_clip_dir}"
    (paper,) = evaluate(model, counteranimal_dir, ["1v20"], **kw)
    (custom,) = evaluate(model, counteranimal_dir, ["1v20"], templates=TWO_TEMPLATES, **kw)
    (wordnet,) = evaluate(model, counteranimal_dir, ["1v20"], name_set="wordnet", **kw)
    for result in (paper, custom, wordnet):
        assert result.candidates == expected
        assert result.candidates_source == f"local-dir:{reference_dir}"
        assert result.candidates_hash == candidates_digest(expected)


def test_reference_self_is_the_models_own_confusions_and_is_labelled(
    tiny_clip_dir, counteranimal_dir, tmp_path
):
    cache = tmp_path / "cache"
    store = tmp_path / "s.duckdb"
    model = f"local-dir:{tiny_clip_dir}"
    (result,) = evaluate(model, counteranimal_dir, ["1v20"], reference="self",
                         templates=TWO_TEMPLATES, cache_dir=cache, store=store,
                         show_progress=False, n_boot=20)  # fmt: skip
    # the model's own head, with its own templates, ranks the labels
    adapter = create_model(model)
    dataset = open_dataset(counteranimal_dir)
    feats = encode_dataset(adapter, dataset, cache, show_progress=False)
    text = adapter.text_classifier(imagenet_classes("openai").names, TWO_TEMPLATES)
    emb = feats.embedding / np.linalg.norm(feats.embedding, axis=1, keepdims=True)
    labels = dataset.table["label"].to_numpy()
    for y, got in result.candidates.items():
        mean = (emb[labels == y] @ text.T).mean(0)
        top = [int(c) for c in np.argsort(-mean, kind="stable")[:20]]
        assert got == sorted(top if y in top else [*top[:19], y])
    row = ResultsStore(store).summary().iloc[0]
    assert row["candidates_source"] == "self"
    assert row["candidates_hash"] == candidates_digest(result.candidates)


def test_hash_follows_the_sets_not_their_order():
    a = {9: [1, 9, 3], 100: [100, 5, 7]}
    assert candidates_digest(a) == candidates_digest({100: [7, 5, 100], 9: [9, 3, 1]})
    assert candidates_digest(a) != candidates_digest({9: [1, 9, 4], 100: [100, 5, 7]})


def test_export_then_reuse_gives_identical_runs_and_hashes_differ_by_reference(
    tiny_clip_dir, reference_dir, counteranimal_dir, tmp_path
):
    cache = tmp_path / "cache"
    sets_file = tmp_path / "sets.json"
    reference = f"local-dir:{reference_dir}"
    out = runner.invoke(
        app,
        ["candidates", "-d", str(counteranimal_dir), "--reference", reference,
         "-o", str(sets_file), "--cache-dir", str(cache), "-q"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    exported = {int(k): v for k, v in json.loads(sets_file.read_text()).items()}
    assert exported == _expected_sets(reference, counteranimal_dir, cache)
    # refusing to overwrite what is there
    again = runner.invoke(app, ["candidates", "-d", str(counteranimal_dir), "--reference",
                                reference, "-o", str(sets_file), "-q"])  # fmt: skip
    assert again.exit_code == 2 and "--force" in again.output

    model = f"local-dir:{tiny_clip_dir}"
    kw = dict(cache_dir=cache, show_progress=False, n_boot=50)
    (direct,) = evaluate(model, counteranimal_dir, ["1v20"], reference=reference, **kw)
    (reused,) = evaluate(model, counteranimal_dir, ["1v20"], candidates=sets_file, **kw)
    assert reused.candidates == direct.candidates
    assert reused.candidates_hash == direct.candidates_hash
    assert reused.candidates_source == "file:sets.json"
    assert direct.predictions.drop(columns=["topk_scores"]).equals(
        reused.predictions.drop(columns=["topk_scores"])
    )
    np.testing.assert_array_equal(np.stack(direct.predictions.topk_scores),
                                  np.stack(reused.predictions.topk_scores))  # fmt: skip
    assert direct.summary.equals(reused.summary)
    (own,) = evaluate(model, counteranimal_dir, ["1v20"], reference="self", **kw)
    assert own.candidates != direct.candidates and own.candidates_hash != direct.candidates_hash


def test_export_refuses_self(counteranimal_dir, tmp_path):
    from spurbench.evaluate.candidates import export_candidates

    with pytest.raises(SpurbenchError, match="'self'"):
        export_candidates(counteranimal_dir, tmp_path / "x.json", reference="self")


OLD_RUNS_SCHEMA = """
CREATE TABLE runs (
    run_id VARCHAR PRIMARY KEY, created_at TIMESTAMP, model VARCHAR, family VARCHAR,
    arch VARCHAR, pretrained VARCHAR, fingerprint VARCHAR, zero_shot BOOLEAN, dataset VARCHAR,
    dataset_path VARCHAR, dataset_hash VARCHAR, protocol VARCHAR, templates VARCHAR,
    name_set VARCHAR, n_images INTEGER, n_skipped INTEGER, config JSON, versions JSON
);
INSERT INTO runs (run_id, model, dataset, protocol, n_images, n_skipped, created_at)
VALUES ('old', 'm', 'd', '1v20', 3, 0, TIMESTAMP '2026-01-01 00:00:00');
"""


def test_a_store_written_before_the_hash_column_still_opens(tiny_clip_dir, counteranimal_dir,
                                                            tmp_path):  # fmt: skip
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(OLD_RUNS_SCHEMA)
    con.close()
    store = ResultsStore(path)
    old = store.summary().set_index("run_id").loc["old"]
    assert old["candidates_hash"] is None or old["candidates_hash"] != old["candidates_hash"]
    evaluate(f"local-dir:{tiny_clip_dir}", counteranimal_dir, ["1v20"], reference="self",
             store=store, cache_dir=tmp_path / "c", show_progress=False, n_boot=20)  # fmt: skip
    summary = ResultsStore(path).summary()
    assert len(summary) == 2
    assert summary["candidates_hash"].notna().sum() == 1


def test_probe_on_1v20_defaults_to_the_paper_reference_before_encoding(
    monkeypatch, tiny_clip_dir, counteranimal_dir, tmp_path
):
    """Probes read the same 1-vs-20 head as evaluations: same default, same early stop."""
    from spurbench.probes import probe

    _offline(monkeypatch)
    encoded = _no_encoding(monkeypatch)
    with pytest.raises(WeightsUnavailableError, match=PAPER_REFERENCE):
        probe(f"local-dir:{tiny_clip_dir}", counteranimal_dir, probes=["pruning"],
              protocol="1v20", cache_dir=tmp_path / "c", show_progress=False)  # fmt: skip
    assert encoded == []


def test_reference_and_candidates_file_together_is_an_error(counteranimal_dir, tmp_path):
    """Two sources for one set of candidates: refuse instead of silently using the file."""
    sets_file = tmp_path / "sets.json"
    sets_file.write_text("{}")
    out = runner.invoke(
        app,
        ["eval", "-m", "tiny_clip:random", "-d", str(counteranimal_dir), "--protocol", "1v20",
         "--reference", "self", "--candidates", str(sets_file),
         "--store", str(tmp_path / "s.duckdb"), "-q"],
    )  # fmt: skip
    assert out.exit_code == 2, out.output
    assert out.output.count("error:") == 1
    assert "--reference" in out.output and "--candidates" in out.output
    assert not (tmp_path / "s.duckdb").exists()
