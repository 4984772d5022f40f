"""The report never pools 1-vs-20 runs whose candidate sets differ, and says where sets came from.

Two tiny CLIPs on 1v20: one with its own confusions (``reference="self"``), both with the other
model as reference. The self run's sets differ from the reference's, so it gets its own panel,
labelled, and kept away from the published numbers (made with the paper's sets).
"""

from __future__ import annotations

import pytest

from spurbench.evaluate import evaluate
from spurbench.models import create_model
from spurbench.report.collect import collect
from spurbench.store import ResultsStore
from tests.conftest import make_counteranimal, save_tiny_clip


@pytest.fixture(scope="module")
def mixed_sets_store(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("mixed_sets")
    data = make_counteranimal(tmp / "CounterAnimal", n_common=3, n_counter=3)
    store = ResultsStore(tmp / "s.duckdb")
    kw = dict(store=store, cache_dir=tmp / "cache", show_progress=False, n_boot=20)
    a = create_model(f"local-dir:{save_tiny_clip(tmp / 'a', 0)}")
    b = create_model(f"local-dir:{save_tiny_clip(tmp / 'b', 1)}")
    (own,) = evaluate(a, data, ["1v20"], reference="self", **kw)
    (a_ref,) = evaluate(a, data, ["1v20"], reference=b, **kw)
    (b_ref,) = evaluate(b, data, ["1v20"], reference=b, **kw)
    return tmp, store, own, a_ref, b_ref


def test_runs_with_different_sets_are_separate_panels(mixed_sets_store):
    _, store, own, a_ref, b_ref = mixed_sets_store
    assert own.candidates_hash != a_ref.candidates_hash == b_ref.candidates_hash
    data = collect(store.path, images=False)
    panels = {tuple(sorted(p.run_ids)): p for p in data.panels if p.protocol == "1v20"}
    assert set(panels) == {(own.run_id,), tuple(sorted([a_ref.run_id, b_ref.run_id]))}
    mine = panels[(own.run_id,)]
    assert own.candidates_hash in mine.title and "self" in mine.candidates_source
    assert mine.published is None and "Not the paper's reference sets" in mine.note
    assert any("never pooled" in n for n in data.notes)


def test_report_methods_name_every_set_and_its_source(mixed_sets_store):
    from spurbench.report.html import ReportOptions, build_report

    tmp, store, own, a_ref, _ = mixed_sets_store
    out = build_report(store.path, tmp / "report", ReportOptions(n_boot=50, thumbnails=False))
    html = (tmp / "report" / "index.html").read_text()
    methods = html[html.index('<section id="methods">') :]
    assert "CLIP ViT-B-32 (laion400m_e31)" in methods and "A photo of {c}." in methods
    assert f"<code>{own.candidates_hash}</code> from the self (own confusions" in methods
    assert f"<code>{a_ref.candidates_hash}</code> from the reference local-dir:" in methods
    assert out is not None
    models_csv = (tmp / "report" / "models.csv").read_text()
    assert own.candidates_hash in models_csv and a_ref.candidates_hash in models_csv
