"""SeViLA's frame transforms (spec section 4), registered as LAVIS processors.

Both take the uint8 [n, 3, H, W] frames of a :class:`~lavis_sevila.video.Clip` (decoded at
image_size x image_size) and return float32 [n, 3, H, W] normalised with CLIP's statistics.

``sevila_video_train`` adds one RandomResizedCrop box shared by every frame of the clip (so
the frames stay aligned in space), resized back to image_size bicubically.  Bicubic
interpolation overshoots below 0 and above 255; the authors' pipeline then casts to uint8,
which wraps overshoot around (a 256 becomes 0: white speckles turn black) and truncates the
rest.  We clamp to [0, 255] and round instead.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from lavis.common.registry import registry
from lavis.processors.base_processor import BaseProcessor
from omegaconf import OmegaConf
from torchvision.transforms import RandomResizedCrop

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _check_frames(frames: torch.Tensor, image_size: int) -> None:
    if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8:
        raise TypeError(f"expected uint8 frames (a Clip's frames), got {getattr(frames, 'dtype', type(frames))}")
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected frames [n, 3, H, W], got {tuple(frames.shape)}")
    if frames.shape[-2:] != (image_size, image_size):
        raise ValueError(
            f"frames are {frames.shape[-2]}x{frames.shape[-1]} but this processor is configured for "
            f"{image_size}x{image_size}: decode the video at the processor's image_size"
        )


class SevilaVideoEvalProcessor(BaseProcessor):
    """uint8 frames -> float /255 -> Normalize(CLIP mean, std)."""

    def __init__(self, image_size: int = 224, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD):
        super().__init__()
        self.image_size = image_size
        self.mean = torch.tensor([float(m) for m in mean], dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor([float(s) for s in std], dtype=torch.float32).view(1, 3, 1, 1)

    def normalize(self, frames: torch.Tensor) -> torch.Tensor:
        # the authors' arithmetic ((x / 255 - mean) / std), done in place: one 19 MB buffer per
        # 32-frame clip at 224 px instead of four
        return frames.to(torch.float32).div_(255.0).sub_(self.mean).div_(self.std)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        _check_frames(frames, self.image_size)
        return self.normalize(frames)

    def cache_tag(self) -> str | None:
        """Names this deterministic transform in ViT feature cache keys (None: random)."""
        mean = ",".join(f"{m:.8g}" for m in self.mean.flatten().tolist())
        std = ",".join(f"{s:.8g}" for s in self.std.flatten().tolist())
        return f"{type(self).__name__}:{self.image_size}:mean={mean}:std={std}"

    @classmethod
    def from_config(cls, cfg=None):
        cfg = OmegaConf.create() if cfg is None else cfg
        return cls(**cls.config_kwargs(cfg))

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        return {
            "image_size": cfg.get("image_size", 224),
            "mean": cfg.get("mean", None) or CLIP_MEAN,
            "std": cfg.get("std", None) or CLIP_STD,
        }


class SevilaVideoTrainProcessor(SevilaVideoEvalProcessor):
    """One random crop box for the whole clip, resized back bicubically, then the eval transform.

    Draws from torch's global RNG (as torchvision does), so ``torch.manual_seed`` fixes it.
    """

    def __init__(
        self,
        image_size: int = 224,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        min_scale: float = 0.5,
        max_scale: float = 1.0,
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    ):
        super().__init__(image_size=image_size, mean=mean, std=std)
        if not 0 < min_scale <= max_scale <= 1:
            raise ValueError(f"need 0 < min_scale <= max_scale <= 1, got {min_scale}, {max_scale}")
        self.scale = (float(min_scale), float(max_scale))
        self.ratio = (float(ratio[0]), float(ratio[1]))

    def crop(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames -> uint8 frames of the same size, cut from one random box."""
        top, left, height, width = RandomResizedCrop.get_params(frames, self.scale, self.ratio)
        box = frames[:, :, top: top + height, left: left + width].float()
        resized = F.interpolate(box, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
        # the fix: clamp the bicubic overshoot and round (the authors' uint8 cast wraps and truncates)
        return resized.clamp_(0, 255).round_().to(torch.uint8)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        _check_frames(frames, self.image_size)
        return self.normalize(self.crop(frames))

    def cache_tag(self) -> None:
        return None  # a random crop per clip: its ViT features must never be cached

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        return {
            **super().config_kwargs(cfg),
            "min_scale": cfg.get("min_scale", 0.5),
            "max_scale": cfg.get("max_scale", 1.0),
        }


registry.register_processor("sevila_video_eval")(SevilaVideoEvalProcessor)
registry.register_processor("sevila_video_train")(SevilaVideoTrainProcessor)
