"""SeViLA model, its backbone and its checkpoints.

``SeViLA`` is loaded on first use, so the light modules here (``pretrained``, ``config``,
``python -m lavis_sevila.models list``) import without LAVIS or torch.
"""
from __future__ import annotations

from lavis_sevila._lazy import lazy_exports

__all__ = ["SeViLA"]
__getattr__ = lazy_exports(__name__, {"SeViLA": "sevila"})  # importing sevila registers "sevila"
