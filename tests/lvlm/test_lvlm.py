"""LVLMs scored by answer likelihood: a tiny random LLaVA, saved and loaded as users would.

The reference for every score is the model's own ``forward(labels=...)`` on the full prompt +
answer built by the processor, one candidate at a time: the language-modelling loss of the answer
tokens (Wang, Lin et al., NeurIPS 2024). Prefix reuse, batching and padding must not change it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spurbench.errors import ClassListError, SpurbenchError
from spurbench.evaluate.lvlm import evaluate_lvlm
from spurbench.models.lvlm import (
    DEFAULT_QUESTION,
    SCORES,
    LVLMAdapter,
    estimate_memory,
    load_lvlm,
)
from spurbench.models.registry import create_classifier
from spurbench.models.spec import ModelSpec
from spurbench.store.results import ResultsStore
from tests.random_llava import llava_15_7b_config

PROMPT = "USER: <image>\nWhat is the main object in the image? ASSISTANT:"  # LLaVA-1.5's format
# Names of 1 to 4 words: candidate rows of different lengths, padded in one batch.
NAMES = ["ostrich", "black swan", "great white shark", "goldfish", "American black bear"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one thread avoids spin-waiting on a busy core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def adapter(tiny_llava_dir: Path) -> LVLMAdapter:
    return load_lvlm(f"lvlm:{tiny_llava_dir}", notify=None)


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    sizes = [(40, 52), (64, 36), (33, 33)]
    return [
        Image.fromarray(rng.integers(0, 256, (*sizes[i % 3], 3)).astype(np.uint8)) for i in range(n)
    ]


def _direct_losses(adapter: LVLMAdapter, image: Image.Image, names: list[str]) -> np.ndarray:
    """(mean, sum) answer NLL per name from one full forward each, with the model's own loss."""
    proc, model = adapter.processor, adapter.module
    n_prompt = proc(images=[image], text=[PROMPT], return_tensors="pt")["input_ids"].shape[1]
    out = []
    for name in names:
        inputs = proc(images=[image], text=[f"{PROMPT} A {name}."], return_tensors="pt")
        prompt_part = proc(images=[image], text=[PROMPT], return_tensors="pt")["input_ids"][0]
        assert torch.equal(inputs["input_ids"][0, :n_prompt], prompt_part)
        labels = inputs["input_ids"].clone()
        labels[:, :n_prompt] = -100
        with torch.no_grad():
            mean = float(model(**inputs, labels=labels).loss)
        n_answer = inputs["input_ids"].shape[1] - n_prompt
        out.append((mean, mean * n_answer))
    return np.array(out)


def test_prompt_is_the_papers_in_the_models_own_chat_format(adapter):
    assert adapter.prompt() == PROMPT
    assert adapter.question == DEFAULT_QUESTION
    assert adapter.full_text("ostrich") == f"{PROMPT} A ostrich."
    assert adapter.name == f"lvlm:{adapter.spec.arch}"


def test_prefix_reuse_equals_direct_per_candidate_forward(adapter):
    images = _images(2)
    mean = adapter.score_candidates(images, None, NAMES)
    total = adapter.score_candidates(images, None, NAMES, reduction="sum")
    assert mean.shape == total.shape == (2, len(NAMES))
    for i, image in enumerate(images):
        direct = _direct_losses(adapter, image, NAMES)
        np.testing.assert_allclose(mean[i], direct[:, 0], atol=1e-4, rtol=0)
        np.testing.assert_allclose(total[i], direct[:, 1], atol=1e-4, rtol=0)
    assert not np.allclose(mean, total)  # multi-token answers: sum ≠ mean


def test_batching_and_padding_change_nothing(adapter):
    images = _images(3, seed=1)
    whole = adapter.score_candidates(images, None, NAMES)
    for batch_size in (1, 2, 4):
        np.testing.assert_allclose(
            adapter.score_candidates(images, None, NAMES, batch_size=batch_size),
            whole,
            atol=1e-5,
        )
    one_by_one = np.vstack([adapter.score_candidates([im], None, NAMES) for im in images])
    np.testing.assert_allclose(one_by_one, whole, atol=1e-5)
    # per-image lists, reordered and ragged: same loss per (image, name), inf as padding
    ragged = [NAMES[::-1], NAMES[:2], NAMES[1:4]]
    got = adapter.score_candidates(images, None, ragged, batch_size=2)
    assert got.shape == (3, len(NAMES))
    for i, names in enumerate(ragged):
        expect = [whole[i, NAMES.index(n)] for n in names]
        np.testing.assert_allclose(got[i, : len(names)], expect, atol=1e-5)
        assert np.isinf(got[i, len(names) :]).all()


def test_evaluate_lvlm_stores_a_run_consistent_with_its_predictions(
    adapter, counteranimal_dir, tmp_path
):
    store = ResultsStore(tmp_path / "results.duckdb")
    # 1-vs-20 from a candidates file: each class among itself and 19 other labels
    cand = {y: [y, *(c for c in range(400, 420) if c != y)][:20] for y in (9, 100, 296)}
    cand_path = tmp_path / "candidates.json"
    cand_path.write_text(json.dumps({str(k): v for k, v in cand.items()}))
    result = evaluate_lvlm(
        adapter, counteranimal_dir, "1v20", candidates=cand_path, store=store,
        n_boot=50, show_progress=False,
    )  # fmt: skip
    runs = store.runs()
    row = runs[runs["run_id"] == result.run_id].iloc[0]
    assert row["family"] == "lvlm" and row["protocol"] == "1v20" and row["n_images"] == 27
    assert json.loads(row["config"])["scoring"]["question"] == DEFAULT_QUESTION
    preds = store.predictions(result.run_id)
    assert len(preds) == 27
    stored = store.artifact(result.run_id, "candidates")
    assert stored == {str(k): sorted(v) for k, v in cand.items()}

    # accuracies recomputed from the stored predictions equal the stored metrics
    top1 = np.array([int(t[0]) for t in preds["topk_labels"]])
    assert (preds["correct"].to_numpy() == (top1 == preds["label"].to_numpy())).all()
    metrics = store.metrics([result.run_id], scope="overall")
    for group in ("common", "counter"):
        sel = preds[preds["group_name"] == group]
        balanced = sel.groupby("label")["correct"].mean().mean()
        got = metrics[(metrics["metric"] == "balanced_accuracy") & (metrics["group_name"] == group)]
        assert float(got["value"].iloc[0]) == pytest.approx(balanced)
        got = metrics[(metrics["metric"] == "accuracy") & (metrics["group_name"] == group)]
        assert float(got["value"].iloc[0]) == pytest.approx(sel["correct"].mean())

    # each stored prediction is the lowest-loss candidate, its score the negative loss
    names = _imagenet_names()
    first = preds.iloc[0]
    label = int(first["label"])
    image = Image.open(_path_of(first["image_id"], counteranimal_dir)).convert("RGB")
    loss = adapter.score_candidates([image], None, [names[c] for c in cand[label]])[0]
    assert int(first["topk_labels"][0]) == cand[label][int(np.argmin(loss))]
    np.testing.assert_allclose(first["topk_scores"][0], -loss.min(), atol=1e-5)

    # 1-vs-N: the three present classes, written beside the first run
    vn = evaluate_lvlm(adapter, counteranimal_dir, "1vN", store=store, n_boot=50,
                       show_progress=False)  # fmt: skip
    assert vn.run_id != result.run_id and len(store.runs()) == 2
    assert {int(t) for ts in vn.predictions["topk_labels"] for t in ts} <= {9, 100, 296}


def test_1v20_from_a_reference_clip_uses_the_runners_candidates(
    adapter, counteranimal_dir, tiny_clip_dir, tmp_path
):
    result = evaluate_lvlm(
        adapter, counteranimal_dir, "1v20", reference=f"local-dir:{tiny_clip_dir}",
        cache_dir=tmp_path / "cache", n_boot=20, show_progress=False,
    )  # fmt: skip
    assert sorted(result.candidates) == [9, 100, 296]
    for label, options in result.candidates.items():
        assert len(options) == 20 and label in options
        got = result.predictions[result.predictions["label"] == label]["topk_labels"]
        assert all(set(map(int, t)) <= set(options) for t in got)


def test_adapter_contract_encode_images(adapter):
    """The LVLM's image side through the common contract: mean-pooled projected image tokens."""
    x = torch.stack([adapter.preprocess(im) for im in _images(3)])
    assert x.shape[1:] == (3, *adapter.preprocess_cfg.size)
    with torch.inference_mode():
        a, b = adapter.encode_images(x), adapter.encode_images(x)
        tokens = adapter.module.get_image_features(pixel_values=x)
    tokens = getattr(tokens, "pooler_output", tokens)
    assert a.embedding.shape == (3, adapter.module.config.text_config.hidden_size)
    assert torch.equal(a.embedding, b.embedding) and a.embedding.dtype == torch.float32
    torch.testing.assert_close(a.embedding[1], tokens[1].mean(0))
    assert adapter.describe()["family"] == "lvlm"


def test_lvlm_protocol_errors_are_clear(adapter, counteranimal_dir):
    with pytest.raises(ClassListError, match="--reference self is not available"):
        evaluate_lvlm(adapter, counteranimal_dir, "1v20", reference="self", show_progress=False)
    with pytest.raises(ClassListError, match="Unknown LVLM score"):
        evaluate_lvlm(adapter, counteranimal_dir, "1vN", score="nope", show_progress=False)
    with pytest.raises(ClassListError, match="1v1000"):
        evaluate_lvlm(adapter, counteranimal_dir, "1v1000", show_progress=False)
    with pytest.raises(SpurbenchError, match="no linear head"):  # probes, curation, the suite
        create_classifier(adapter.spec)


def test_size_check_refuses_an_oversized_model_before_loading(tmp_path):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    big = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=64, num_attention_heads=4, num_hidden_layers=1, image_size=32
        ),
        text_config=LlamaConfig(
            hidden_size=16384,
            intermediate_size=53248,
            num_hidden_layers=126,
            num_attention_heads=128,
            num_key_value_heads=8,
            vocab_size=128256,
        ),
    )  # ≈ 405 B parameters, 1.5 TiB in fp32: config only, no weights exist
    big.save_pretrained(tmp_path / "huge")
    messages: list[str] = []
    with pytest.raises(SpurbenchError, match=r"Refusing to load.*B parameters.*force") as err:
        LVLMAdapter(ModelSpec("lvlm", str(tmp_path / "huge")), notify=messages.append)
    assert "GiB" in str(err.value) and "available on CPU RAM" in str(err.value)
    assert messages == []  # refused before anything was loaded


def test_memory_estimate_of_llava_15_7b_matches_the_docs():
    config = llava_15_7b_config()  # llava-hf/llava-1.5-7b-hf
    est = estimate_memory(config, torch.bfloat16, torch.device("cpu"), n_candidates=20)
    assert est.n_params == 7_063_427_072
    assert est.weight_bytes == 2 * 7_063_427_072
    # 32 layers × K,V × 4096 × 2 bytes = 512 KiB per token; (576 + 64) tokens × (1 + 20)
    assert est.kv_bytes == 32 * 2 * 4096 * 2 * (576 + 64) * 21


def test_1v20_defaults_to_the_papers_reference_and_stops_before_scoring(
    adapter, counteranimal_dir, monkeypatch
):
    """No --reference: the paper's CLIP picks the sets; without its weights, nothing is scored."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    from spurbench.errors import WeightsUnavailableError
    from spurbench.evaluate.candidates import PAPER_REFERENCE

    def unreachable(*args: object, **kwargs: object) -> None:
        raise LocalEntryNotFoundError("cannot find the requested files in the local cache")

    monkeypatch.setattr("open_clip.pretrained.hf_hub_download", unreachable)
    scored: list[int] = []
    monkeypatch.setattr(adapter, "score_candidates", lambda *a, **k: scored.append(1))
    with pytest.raises(WeightsUnavailableError, match=PAPER_REFERENCE) as info:
        evaluate_lvlm(adapter, counteranimal_dir, "1v20", show_progress=False)
    assert "--candidates FILE" in str(info.value) and scored == []


def _independent_scores(adapter: LVLMAdapter, image: Image.Image, names: list[str]):
    """Per name: (paper, name-mean, name-sum) NLLs from one full forward's logits each.

    The answer "A {name}." is scored token by token from log_softmax of the logits; the name's
    tokens are the answer's tokens after "▁A", without a final lone ".".
    """
    proc, model = adapter.processor, adapter.module
    n_prompt = proc(images=[image], text=[PROMPT], return_tensors="pt")["input_ids"].shape[1]
    out = []
    for name in names:
        inputs = proc(images=[image], text=[f"{PROMPT} A {name}."], return_tensors="pt")
        ids = inputs["input_ids"][0]
        with torch.no_grad():
            logp = model(**inputs).logits[0].float().log_softmax(-1)
        nll = -logp[n_prompt - 1 : -1].gather(1, ids[n_prompt:, None])[:, 0].numpy()
        tokens = adapter.tokenizer.convert_ids_to_tokens(ids[n_prompt:].tolist())
        assert tokens[0] == "▁A"
        stop = len(tokens) - 1 if tokens[-1] == "." else len(tokens)
        name_nll = nll[1:stop]
        out.append((nll.mean(), name_nll.mean(), name_nll.sum()))
    return np.array(out)


def test_each_score_ranks_as_the_logits_say(adapter):
    names = NAMES
    images = _images(2, seed=3)
    got = {s: adapter.score_candidates(images, None, names, score=s) for s in SCORES}
    ip = adapter.processor.image_processor
    blank = Image.new("RGB", (32, 32), tuple(round(255 * m) for m in ip.image_mean))
    prior = _independent_scores(adapter, blank, names)[:, 2]
    for i, image in enumerate(images):
        ref = _independent_scores(adapter, image, names)
        expected = {
            "paper": ref[:, 0],
            "name-mean": ref[:, 1],
            "name-sum": ref[:, 2],
            "pmi": ref[:, 2] - prior,  # −(log p(name | image) − log p(name | blank))
        }
        for score, want in expected.items():
            np.testing.assert_allclose(got[score][i], want, atol=1e-4, rtol=0)
            assert list(np.argsort(got[score][i], kind="stable")) == list(
                np.argsort(want, kind="stable")
            )
    # the reductions are different numbers: the shared tokens and the prior matter
    assert not np.allclose(got["paper"], got["name-mean"])
    assert not np.allclose(got["name-sum"], got["pmi"])


def test_score_is_recorded_and_labelled(adapter, counteranimal_dir, tmp_path):
    store = ResultsStore(tmp_path / "s.duckdb")
    kw = dict(store=store, n_boot=20, show_progress=False)
    paper = evaluate_lvlm(adapter, counteranimal_dir, "1vN", **kw)
    pmi = evaluate_lvlm(adapter, counteranimal_dir, "1vN", score="pmi", **kw)
    assert paper.run_id != pmi.run_id and pmi.score == "pmi" and paper.score == "paper"
    summary = store.summary().set_index("run_id")
    assert summary.loc[pmi.run_id, "lvlm_score"] == "pmi"
    assert summary.loc[paper.run_id, "lvlm_score"] == "paper"
    config = json.loads(store.runs().set_index("run_id").loc[pmi.run_id, "config"])
    assert config["scoring"]["score"] == "pmi"


def _imagenet_names() -> tuple[str, ...]:
    from spurbench.data.classes import imagenet_classes

    return imagenet_classes("openai").names


def _path_of(image_id: str, root: Path) -> str:
    from spurbench.data.layouts import open_dataset

    table = open_dataset(root).table
    return str(table.loc[table["image_id"] == image_id, "path"].iloc[0])


def test_lvlm_names_parse_and_route_to_the_adapter(tmp_path):
    from spurbench.models import parse_model_name
    from spurbench.models.registry import _adapter_class

    spec = parse_model_name("lvlm:llava-hf/llava-1.5-7b-hf")
    assert (spec.family, spec.arch) == ("lvlm", "llava-hf/llava-1.5-7b-hf")
    assert parse_model_name(spec.name) == spec
    assert _adapter_class("lvlm").__name__ == "LVLMAdapter"


def test_cli_evaluates_an_lvlm_by_likelihood(tiny_llava_dir, counteranimal_dir, tmp_path):
    from typer.testing import CliRunner

    from spurbench.cli import app
    from spurbench.store import ResultsStore

    store = tmp_path / "s.duckdb"
    out = CliRunner().invoke(
        app,
        [
            "eval",
            "-m",
            f"lvlm:{tiny_llava_dir}",
            "-d",
            str(counteranimal_dir),
            "--protocol",
            "1vN",
            "--store",
            str(store),
            "-q",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
    )
    assert out.exit_code == 0, out.output
    runs = ResultsStore(store).runs()
    assert runs.family.tolist() == ["lvlm"] and runs.n_images.tolist() == [27]


def test_library_evaluate_routes_lvlm_names(tiny_llava_dir, counteranimal_dir, tmp_path):
    """``spurbench.evaluate("lvlm:...")`` from a notebook scores answers, as ``eval`` does."""
    import spurbench

    kw = dict(cache_dir=tmp_path / "c", show_progress=False)
    (routed,) = spurbench.evaluate(f"lvlm:{tiny_llava_dir}", counteranimal_dir, ["1vN"], **kw)
    direct = evaluate_lvlm(f"lvlm:{tiny_llava_dir}", counteranimal_dir, "1vN", **kw)
    assert routed.score == "paper" and routed.protocol == "1vN"
    assert routed.predictions["correct"].tolist() == direct.predictions["correct"].tolist()
    np.testing.assert_array_equal(
        np.stack(routed.predictions["topk_scores"]), np.stack(direct.predictions["topk_scores"])
    )
    assert len(routed.predictions) == 27


def test_library_evaluate_checks_lvlm_requests_before_loading(counteranimal_dir, tmp_path):
    """A protocol LVLMs do not support fails before any model is looked for."""
    import spurbench

    missing = f"lvlm:{tmp_path / 'no-such-llava'}"
    with pytest.raises(ClassListError, match="not available for vision-language chat"):
        spurbench.evaluate(missing, counteranimal_dir, ["1v1000"], cache_dir=tmp_path / "c")


def test_library_evaluate_refuses_an_lvlm_score_for_other_models(
    tiny_clip_dir, counteranimal_dir, tmp_path
):
    import spurbench

    with pytest.raises(SpurbenchError, match="vision-language chat models"):
        spurbench.evaluate(f"local-dir:{tiny_clip_dir}", counteranimal_dir, ["1vN"], score="pmi")
