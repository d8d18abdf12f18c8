"""Video input: sampling frame indices and decoding them (decord, PyAV or frame folders).

Names are loaded on first use, so the sampling rule and the writer (the synthetic
benchmark) import without torch; reading a clip loads the decoders.
"""
from __future__ import annotations

from lavis_sevila._lazy import lazy_exports

_EXPORTS = {
    "Clip": "clip",
    "EmptyWindowError": "clip",
    "VideoReadError": "clip",
    "frame_indices": "sampling",
    "read_clip": "reader",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
