"""SeViLA's datasets; ``lavis_sevila.datasets.builders`` registers their LAVIS builders.

Names are loaded on first use, so ``video_dataset`` (used by the shard writer) imports
without LAVIS.
"""
from __future__ import annotations

from lavis_sevila._lazy import lazy_exports

_EXPORTS = {"FrameSource": "video_dataset", "SevilaVideoDataset": "video_dataset", "UnreadableSampleError": "video_dataset"}
__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
