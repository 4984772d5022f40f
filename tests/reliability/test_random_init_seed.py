"""Case 16.9: ``ARCH,random`` weights are seeded, so the same command gives the same result.

Random-init models are the usual baseline ("how much of the drop is architecture alone?").
Unseeded, each run drew new weights: other numbers, a new run id and a second store row for
the same command. Two CLI runs with separate feature caches (nothing reused) must now agree.
"""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from spurbench.cli import app
from spurbench.models import create_model
from spurbench.store import ResultsStore
from tests.reliability.conftest import make_grouped

runner = CliRunner()
MODEL = "timm:test_resnet,random"


def test_same_random_init_command_twice_gives_one_identical_run(tmp_path):
    data = make_grouped(tmp_path / "data", per_group=2)
    store = tmp_path / "r.duckdb"
    for i in range(2):
        torch.manual_seed(1000 + i)  # whatever state the process is in
        out = runner.invoke(
            app,
            [
                "eval", "-m", MODEL, "-d", str(data), "--protocol", "1vN", "--store", str(store),
                "--cache-dir", str(tmp_path / f"cache{i}"), "--batch-size", "8", "-q",
            ],
        )  # fmt: skip
        assert out.exit_code == 0, out.output
    rs = ResultsStore(store)
    runs = rs.runs()
    assert len(runs) == 1  # the same run id: replaced, not duplicated
    assert json.loads(runs["config"].iloc[0])["init_seed"] == 0
    assert len(rs.predictions(runs["run_id"].iloc[0])) == 8


def test_seed_changes_the_weights_and_leaves_the_callers_rng_alone():
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    a = create_model(MODEL)
    assert torch.equal(torch.rand(3), expected_next)
    assert a.init_seed == 0
    assert a.fingerprint == create_model(MODEL, seed=0).fingerprint
    assert a.fingerprint != create_model(MODEL, seed=1).fingerprint
