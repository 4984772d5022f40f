"""Background counterfactuals (Xiao et al., ICLR 2021) on the CounterAnimal protocol."""

from spurbench.counterfactual.run import CounterfactualResult, counterfactual, variants_for

__all__ = ["CounterfactualResult", "counterfactual", "variants_for"]
