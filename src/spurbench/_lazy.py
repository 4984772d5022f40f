"""Package re-exports that are imported on first use, so that ``spurbench --help`` and the light
commands start without loading torch or the stages they do not run."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _LazyPackage(types.ModuleType):
    """A package whose re-exported names are looked up in their modules on first access."""

    _lazy_exports: dict[str, str]

    def __getattr__(self, name: str) -> Any:
        exports = self.__dict__.get("_lazy_exports", {})
        if name not in exports:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        module = importlib.import_module(exports[name])
        # an export named after its module's last part is the module itself (spurbench.theory)
        whole = exports[name].rpartition(".")[2] == name and not hasattr(module, name)
        value = module if whole else getattr(module, name)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        # Importing a submodule binds it on its package. Where an export has the submodule's
        # name (``spurbench.evaluate``, ``spurbench.curate.diagnose``) the export keeps the
        # name, as it did when packages imported their exports eagerly.
        if (
            isinstance(value, types.ModuleType)
            and value.__name__ == f"{self.__name__}.{name}"
            and name in self.__dict__.get("_lazy_exports", {})
        ):
            return
        super().__setattr__(name, value)


def lazy_exports(package: str, exports: dict[str, str]) -> None:
    """Make ``exports`` (name -> module) of ``package`` load on first access (PEP 562).

    A name equal to its module's last part, which has no such attribute, exports the module.
    """
    module = sys.modules[package]
    module.__dict__["_lazy_exports"] = exports
    module.__class__ = _LazyPackage
