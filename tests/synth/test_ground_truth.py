"""The planted shortcut, measured through spurbench's own evaluation pipeline.

Tiny CLIPs are trained on synthetic worlds with increasing spurious correlation rho (the share
of training images of a class drawn on its common background). The ground truth is known: with
no correlation (rho = 1/B) the counter background is as common as any other, so the drop's
interval must contain 0; with rho high, the counter background is the rarest and the drop must be
clearly positive; and the drop must grow with rho.
"""

from __future__ import annotations

import pytest

from spurbench.evaluate import evaluate
from spurbench.synth.train import TrainConfig
from spurbench.synth.world import WorldConfig
from tests.conftest import trained_world

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def drops(synth_cache):
    rhos = (WorldConfig.fast().uniform_rho, 0.5, 0.9)
    train_cfg = TrainConfig.fast(models=("tiny_clip",))
    out = {}
    for rho in rhos:
        world, zoo = trained_world(synth_cache, WorldConfig.fast(rho=rho), train_cfg)
        (res,) = evaluate(f"local-dir:{zoo['tiny_clip']}", world.counteranimal_root, ["1vN"],
                          cache_dir=synth_cache / "features", show_progress=False)
        out[rho] = res.headline.drop
        out[rho, "common"] = res.headline.common.value
    return rhos, out


def test_no_correlation_no_drop(drops):
    rhos, out = drops
    d = out[rhos[0]]
    assert d.lo <= 0 <= d.hi, d
    assert out[rhos[0], "common"] > 0.3  # well above chance (1/10): the foreground is learned


def test_strong_correlation_clear_drop(drops):
    _, out = drops
    d = out[0.9]
    assert d.lo > 0, d
    assert d.value > 0.10


def test_drop_grows_with_correlation(drops):
    rhos, out = drops
    values = [out[r].value for r in rhos]
    assert values[0] < values[1] < values[2], values
