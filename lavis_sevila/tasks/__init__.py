"""SeViLA tasks for LAVIS: ``videoqa`` and ``moment_retrieval``.

The task classes are loaded on first use (importing them registers them), so the pure
metrics in ``lavis_sevila.tasks.metrics`` import without LAVIS or torch.
"""
from __future__ import annotations

from lavis_sevila._lazy import lazy_exports

_EXPORTS = {"MomentRetrievalTask": "moment_retrieval", "VideoQATask": "videoqa"}
__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
