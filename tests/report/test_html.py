"""The HTML report and its Markdown summary, checked against the store they were built from.

The page is parsed with the standard library's HTML parser rather than searched as text, so a
model name in a caption cannot stand in for a row of the model table, and an ``http://`` inside
an SVG namespace declaration is not mistaken for a link.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from spurbench.data.dataset import DROP_GROUP
from spurbench.report.collect import ReportError
from spurbench.report.html import ReportOptions, build_report
from spurbench.store import ResultsStore

#: Attributes whose value the browser fetches or navigates to.
URL_ATTRS = {
    "src",
    "href",
    "xlink:href",
    "action",
    "formaction",
    "poster",
    "data",
    "srcset",
    "background",
    "cite",
    "manifest",
    "ping",
}


class Page(HTMLParser):
    """Elements of interest of a report page: tags, model-table rows, URLs, SVGs, scripts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.model_rows: list[str] = []
        self.urls: list[str] = []
        self.styles: list[str] = []
        self._stack: list[str] = []
        self._in_style = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        self.urls += [v for k, v in attrs if k in URL_ATTRS and v]
        if a.get("style"):
            self.styles.append(a["style"] or "")
        if tag == "tr" and "data-model" in a:
            self.model_rows.append(a["data-model"] or "")
        self._in_style = tag == "style"

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def count(self, tag: str, **attrs: str) -> int:
        return sum(t == tag and all(a.get(k) == v for k, v in attrs.items()) for t, a in self.tags)


@pytest.fixture(scope="module")
def page(built_report) -> Page:
    return Page(built_report.html.read_text(encoding="utf-8"))


def test_model_table_lists_every_run_of_the_store(built_report, report_store, page):
    runs = ResultsStore(report_store.path).runs()
    assert sorted(page.model_rows) == sorted(runs["model"])
    assert set(page.model_rows) == set(report_store.models)
    assert page.count("table", id="models", **{"class": "sortable"}) == 1


def test_figures_are_inline_and_written_beside_the_page(built_report, page):
    out = built_report.html.parent
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    svgs = sorted(p.name for p in (out / "figures").glob("*.svg"))
    assert [Path(p).stem for p in pngs] == [Path(s).stem for s in svgs]
    # one scatter and one class-drop figure per (dataset, protocol), plus the probe figures
    for stem in (
        "counter_vs_common_counteranimal_1v1000",
        "counter_vs_common_counteranimal_1vn",
        "class_drops_counteranimal_1v1000_1",
        "probe_kurtosis",
        "probe_pruning",
        "probe_directions",
        "probe_kurtosis_vs_robustness",
    ):
        assert f"{stem}.png" in pngs, stem
    for p in built_report.figures:
        assert p.stat().st_size > 1000, p
    assert page.count("svg") >= len(pngs)  # every figure inlined (plus none lost)
    figure_links = [u for u in page.urls if u.startswith("figures/")]
    assert figure_links and all((out / u).is_file() for u in figure_links)
    ids = [a["id"] for _, a in page.tags if a.get("id")]
    assert len(ids) == len(set(ids)), "inlined SVGs must not share element ids"


def test_page_has_no_external_reference(built_report, page):
    """Viewable offline: nothing fetched from a network, no external script or stylesheet."""
    for url in page.urls:
        assert not re.match(r"^\s*(https?:)?//", url, re.I), url
        assert url.startswith(("data:image/", "#", "figures/")), url
    for style in page.styles:
        for ref in re.findall(r"url\(([^)]*)\)|@import\s+([^;]+)", style):
            target = "".join(ref).strip("'\" ")
            assert target.startswith("#"), target
    assert page.count("link") == 0
    assert all("src" not in a for t, a in page.tags if t == "script")
    assert page.count("img") >= 6  # thumbnails, all embedded
    assert all(
        (a.get("src") or "").startswith("data:image/jpeg;base64,")
        for t, a in page.tags
        if t == "img"
    )


def _markdown_models(summary: str) -> list[dict[str, str]]:
    section = summary.split("## Models", 1)[1].split("\n## ", 1)[0]
    lines = section.strip().splitlines()
    rows = [ln for ln in lines if ln.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in r.strip("|").split("|")), strict=True))
        for r in rows[2:]
    ]


def test_summary_numbers_equal_the_store(built_report, report_store):
    rows = _markdown_models(built_report.summary.read_text(encoding="utf-8"))
    rs = ResultsStore(report_store.path)
    runs = rs.runs().set_index("run_id")
    metrics = rs.metrics(scope="overall").set_index(["run_id", "metric", "group_name"])
    assert len(rows) == len(runs)
    seen = set()
    for run_id, run in runs.iterrows():
        (row,) = [
            r
            for r in rows
            if r["Model"] == f"`{run['model']}`" and r["Protocol"] == run["protocol"]
        ]
        seen.add(run_id)
        for column, metric, group in (
            ("Common %", "balanced_accuracy", "common"),
            ("Counter %", "balanced_accuracy", "counter"),
            ("Drop (pt)", "drop", DROP_GROUP),
            ("Drop per image (pt)", "drop_per_image", DROP_GROUP),
        ):
            m = metrics.loc[(run_id, metric, group)]
            value, lo, hi = (float(x) for x in re.findall(r"[-+]?\d+\.\d+", row[column]))
            assert value == pytest.approx(100 * m["value"], abs=0.005), (column, run_id)
            assert lo == pytest.approx(100 * m["ci_low"], abs=0.05)
            assert hi == pytest.approx(100 * m["ci_high"], abs=0.05)
    assert len(seen) == len(runs)


def test_imagenet_runs_join_the_published_testbed(built_report):
    by_panel = {(f.panel, f.family): f for f in built_report.fits}
    clip = by_panel[("CounterAnimal · 1v1000", "clip")]
    assert (clip.baseline, clip.n) == ("published", 28)  # ours are judged, not fitted
    assert by_panel[("CounterAnimal · 1v1000", "imagenet")].n == 15
    assert not any(p.startswith("CounterAnimal · 1vN") for p, _ in by_panel)  # one model alone
    runs = built_report.data.runs
    v1000 = runs[runs["protocol"] == "1v1000"]
    assert (
        v1000["er_clip"].notna().all()
        and runs.loc[runs["protocol"] == "1vN", "er_clip"].isna().all()
    )
    # every ER carries the source and size of its trend, in the table and in models.csv
    assert (v1000["er_clip_baseline"] == "published n=28").all()
    assert (v1000["er_imagenet_baseline"] == "published n=15").all()
    html = built_report.html.read_text()
    assert "(published n=28)" in html and "(published n=15)" in html
    csv_text = built_report.table.read_text()
    assert "er_clip_baseline" in csv_text and "published n=28" in csv_text
    notes = {p.protocol: p.note for p in built_report.data.panels}
    assert "3 of CounterAnimal's 45 classes" in notes["1v1000"]
    assert "not one the CounterAnimal paper reports" in notes["1vN"]


def test_missing_or_empty_store_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match="No results store"):
        build_report(tmp_path / "nope.duckdb", tmp_path / "out")
    assert not (tmp_path / "nope.duckdb").exists()  # never created as a side effect
    ResultsStore(tmp_path / "empty.duckdb")
    with pytest.raises(ReportError, match="has no runs"):
        build_report(tmp_path / "empty.duckdb", tmp_path / "out")
    assert not (tmp_path / "out" / "index.html").exists()


def _cli() -> typer.Typer:
    from spurbench.cli import app  # the real application: its errors are one line

    return app


def test_cli_filters_models_and_replaces_the_report_atomically(report_store, tmp_path):
    out = tmp_path / "rep"
    runner = CliRunner()
    bad = runner.invoke(_cli(), ["report", "--store", str(tmp_path / "x.duckdb"), "-o", str(out)])
    assert bad.exit_code == 2 and "No results store" in bad.output
    (keep,) = [m for m in report_store.models if m.endswith("seed1")]
    args = [
        "report",
        "--store",
        str(report_store.path),
        "-o",
        str(out),
        "-m",
        "seed1",
        "--no-published",
        "--no-thumbnails",
        "--n-boot",
        "50",
    ]
    res = runner.invoke(_cli(), args)
    assert res.exit_code == 0, res.output
    page = Page((out / "index.html").read_text(encoding="utf-8"))
    assert page.model_rows == [keep]
    assert page.count("img") == 0
    assert "--no-published" in (out / "summary.md").read_text(encoding="utf-8")
    assert not list(out.glob(".report-*")), "staging folder left behind"
    none = runner.invoke(_cli(), [*args[:5], "-m", "no-such-model"])
    assert none.exit_code == 2 and "No run" in none.output
    assert Page((out / "index.html").read_text(encoding="utf-8")).model_rows == [keep]


def test_options_are_validated(report_store, tmp_path):
    res = CliRunner().invoke(
        _cli(),
        ["report", "--store", str(report_store.path), "-o", str(tmp_path), "--transform", "log"],
    )
    assert res.exit_code == 2 and "'log' is not one of 'logit', 'probit'" in res.output
    assert ReportOptions().transform == "logit"


def test_runs_without_groups_or_images_are_listed_not_dropped(tiny_clip_dir, tmp_path):
    """Class folders without common/counter groups, then the images deleted: still a report."""
    import shutil

    import numpy as np

    from spurbench.evaluate import evaluate
    from tests.conftest import write_image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        for i in range(3):
            write_image(tmp_path / "data" / c / f"{i}.png", rng)
    store = tmp_path / "s.duckdb"
    kw = dict(store=store, cache_dir=tmp_path / "cache", show_progress=False, n_boot=20)
    evaluate(f"local-dir:{tiny_clip_dir}", tmp_path / "data", ["1vN"], **kw)
    shutil.rmtree(tmp_path / "data")
    out = build_report(store, tmp_path / "rep", ReportOptions(n_boot=50))
    page = Page(out.html.read_text(encoding="utf-8"))
    assert page.model_rows == [f"local-dir:{tiny_clip_dir}"]
    assert any("no common/counter groups" in n for n in out.data.notes)
    assert page.count("img") == 0 and out.figures == []


def test_probe_tables_name_the_head_the_pruning_split_and_the_concepts(report_store, built_report):
    from spurbench.report.tables import probe_tables

    probes = ResultsStore(report_store.path).probe_results()
    probes = probes.assign(label=probes["model"])
    tables = probe_tables(probes, {m: m for m in probes["label"]})
    for key in ("probe-directions", "probe-pruning", "probe-concepts"):
        t = tables[key]
        assert t.columns[1] == "Head"
        assert {row[1].text for row in t.rows} == {"1vN (3 classes)"}  # probed on 1vN
    prune = tables["probe-pruning"]
    # 33 images: 16 rank the directions, 17 held out (round(16.5) = 16)
    assert {row[2].text for row in prune.rows} == {"17"}
    conc = tables["probe-concepts"]
    assert all(row[2].text.startswith("CounterAnimal columns") for row in conc.rows)
    text = built_report.html.read_text(encoding="utf-8")
    assert "1v1000 ImageNet head by default" in text and "held-out half" in text
    assert "Broden-layout" in text
