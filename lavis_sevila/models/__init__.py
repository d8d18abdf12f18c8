"""SeViLA model, its backbone and its checkpoints.

``SeViLA`` is loaded on first use, so the light modules here (``pretrained``, ``config``,
``python -m lavis_sevila.models list``) import without LAVIS or torch.
"""
from __future__ import annotations

from typing import Any

__all__ = ["SeViLA"]


def __getattr__(name: str) -> Any:
    if name == "SeViLA":
        from lavis_sevila.models.sevila import SeViLA  # registers "sevila"

        return SeViLA
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
