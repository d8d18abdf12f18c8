"""What a video read returns, and the one error a read raises for a bad file."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


class VideoReadError(RuntimeError):
    """A video (file or frame folder) that cannot be read; the message names path and reason.

    Datasets and the shard builder report these and never replace the video by another one.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"cannot read video {self.path}: {reason}")


class EmptyWindowError(ValueError):
    """The requested [start, end] window holds no frame of the video (an annotation problem)."""


@dataclass
class Clip:
    """n frames sampled from one video, with where they came from.

    ``indices`` may repeat (a video or window shorter than n frames); ``timestamps`` are
    ``indices / fps`` with ``fps`` the stream's average rate.
    """

    frames: torch.Tensor  # uint8 [n, 3, H, W], H == W == image_size
    indices: np.ndarray  # int64 [n]
    timestamps: np.ndarray  # float64 [n], seconds
    fps: float
    num_frames: int
    duration: float  # num_frames / fps

    def __post_init__(self) -> None:
        import torch  # here: the error classes above import without torch (the synthetic writer)

        n = len(self.indices)
        if self.frames.dtype != torch.uint8 or self.frames.ndim != 4 or self.frames.shape[1] != 3:
            raise ValueError(f"frames must be uint8 [n, 3, H, W], got {self.frames.dtype} {tuple(self.frames.shape)}")
        if self.frames.shape[0] != n or len(self.timestamps) != n:
            raise ValueError(f"{self.frames.shape[0]} frames, {n} indices, {len(self.timestamps)} timestamps")
