"""Videos shipped as folders of images (How2QA, TVQA and VLEP ship 3 fps jpg frames).

Frame i is the i-th image file (jpg, jpeg or png, any case) in name order; the frame rate is
not stored anywhere, so the caller passes it.  Names must sort in time order: numbered names
of unequal width (``1.jpg, 10.jpg, 2.jpg``) are refused, since name order would shuffle time.
Images are resized with the same bilinear swscale as video frames.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import av
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from lavis_sevila.video.clip import VideoReadError
from lavis_sevila.video.pyav_reader import resized_rgb

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def list_frames(folder: str | os.PathLike) -> list[Path]:
    """The folder's image files in time order; raises VideoReadError when there are none."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VideoReadError(folder, f"the folder holds no {'/'.join(IMAGE_SUFFIXES)} images")
    stems = [p.stem for p in files]
    if all(stem.isdigit() for stem in stems) and len({len(stem) for stem in stems}) > 1:
        raise VideoReadError(folder, "its numbered frame names have unequal widths, so name order is not time order; zero-pad them")
    return files


class FolderReader:
    """One frame folder; ``read`` returns frames at given indices, resized."""

    def __init__(self, folder: str | os.PathLike, fps: float | None):
        if fps is None or not fps > 0:
            raise ValueError(f"a frame folder has no frame rate of its own: pass fps > 0 (got {fps}) for {folder}")
        self.path = os.fspath(folder)
        self.files = list_frames(folder)
        self.fps = float(fps)
        self.num_frames = len(self.files)

    def read(self, indices: Sequence[int], size: int) -> torch.Tensor:
        decoded: dict[int, np.ndarray] = {}
        for index in set(int(i) for i in indices):
            path = self.files[index]
            try:
                with Image.open(path) as image:
                    rgb = np.asarray(image.convert("RGB"))
            except (OSError, UnidentifiedImageError) as error:
                raise VideoReadError(self.path, f"frame {path.name} cannot be decoded ({error})") from None
            decoded[index] = resized_rgb(av.VideoFrame.from_ndarray(rgb, format="rgb24"), size)
        batch = np.stack([decoded[int(i)] for i in indices])
        return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()

    def close(self) -> None:
        pass
