"""Package attributes imported on first use (PEP 562), so light modules stay light.

A package ``__init__`` that re-exports names from heavy submodules (torch, LAVIS) would load
them for every import below it; ``lazy_exports`` makes its ``__getattr__`` import the
submodule only when one of those names is read.  Standard library only.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving ``name`` from ``package.<exports[name]>``."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return __getattr__
