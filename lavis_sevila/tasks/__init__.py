"""SeViLA tasks for LAVIS: ``videoqa`` and ``moment_retrieval``.

The task classes are loaded on first use (importing them registers them), so the pure
metrics in ``lavis_sevila.tasks.metrics`` import without LAVIS or torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"MomentRetrievalTask": "moment_retrieval", "VideoQATask": "videoqa"}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
