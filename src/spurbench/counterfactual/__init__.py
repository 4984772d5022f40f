"""Background counterfactuals (Xiao et al., ICLR 2021) on the CounterAnimal protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spurbench._lazy import lazy_exports

if TYPE_CHECKING:
    from spurbench.counterfactual.run import CounterfactualResult, counterfactual, variants_for

#: name -> module; imported on first use, so the CLI's start-up does not load the stage.
_EXPORTS = {
    "CounterfactualResult": "spurbench.counterfactual.run",
    "counterfactual": "spurbench.counterfactual.run",
    "variants_for": "spurbench.counterfactual.run",
}
lazy_exports(__name__, _EXPORTS)

__all__ = ["CounterfactualResult", "counterfactual", "variants_for"]
