"""Video input: sampling frame indices and decoding them (decord, PyAV or frame folders).

Names are loaded on first use, so the sampling rule and the writer (the synthetic
benchmark) import without torch; reading a clip loads the decoders.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Clip": "clip",
    "EmptyWindowError": "clip",
    "VideoReadError": "clip",
    "frame_indices": "sampling",
    "read_clip": "reader",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
