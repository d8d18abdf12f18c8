"""decord video reading: the default backend, as in the authors' code.

decord resizes while decoding (``VideoReader(width=, height=)``, bilinear swscale) and seeks
to key frames, so sparse indices in long videos are cheap.  LAVIS switches decord's global
bridge to torch at import time; both bridges are handled here.

decord 0.6.0 fails on every video for a few output widths ("DECORDArrayCopyFromTo: The size
must exactly match"); :data:`BAD_SIZES` lists those found for 1..699 px (224 is fine).  The
"auto" backend uses PyAV for them; asking decord for one is a ValueError.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch

from lavis_sevila.video.clip import VideoReadError

try:
    import decord
    from decord._ffi.base import DECORDError
except ImportError:  # pragma: no cover - decord has no wheel on some platforms
    decord = None
    DECORDError = RuntimeError

AVAILABLE = decord is not None

# measured with decord 0.6.0 on h264, mpeg4, vp9 and mjpeg videos; see tests/test_video_backends.py
BAD_SIZES = frozenset({1, 2, 3, 4, 6, 8, 12, 16, 24, 48, 72})


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__


class DecordReader:
    """One open video file; ``read`` returns frames at given indices, resized."""

    def __init__(self, path: str | os.PathLike, size: int):
        if decord is None:
            raise ImportError("decord is not installed; use backend='pyav'")
        if size in BAD_SIZES:
            raise ValueError(f"decord 0.6 cannot decode at {size} px (a decord bug); use backend='pyav' or 'auto'")
        self.path = os.fspath(path)
        self.size = size
        try:
            self.reader = decord.VideoReader(self.path, width=size, height=size, num_threads=1)
        except (DECORDError, RuntimeError) as error:
            raise VideoReadError(path, f"decord cannot open it ({_first_line(error)})") from None
        self.num_frames = len(self.reader)
        self.fps = float(self.reader.get_avg_fps())
        if self.num_frames < 1:
            raise VideoReadError(path, "its video stream holds no frames")
        if not self.fps > 0:
            raise VideoReadError(path, "its video stream declares no average frame rate")

    def read(self, indices: Sequence[int], size: int) -> torch.Tensor:
        if size != self.size:
            raise ValueError(f"this reader decodes at {self.size} px, not {size}")
        try:
            batch = self.reader.get_batch([int(i) for i in indices])
        except (DECORDError, RuntimeError) as error:
            raise VideoReadError(self.path, f"decord cannot decode frames ({_first_line(error)})") from None
        if not isinstance(batch, torch.Tensor):
            batch = torch.from_numpy(batch.asnumpy())
        return batch.permute(0, 3, 1, 2).contiguous()

    def close(self) -> None:
        del self.reader
