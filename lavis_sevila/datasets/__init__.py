"""SeViLA's datasets; ``lavis_sevila.datasets.builders`` registers their LAVIS builders.

Names are loaded on first use, so ``video_dataset`` (used by the shard writer) imports
without LAVIS.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"FrameSource": "video_dataset", "SevilaVideoDataset": "video_dataset", "UnreadableSampleError": "video_dataset"}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
