"""SeViLA's frame processors; importing this package registers them in LAVIS (once)."""
from lavis_sevila.processors.video_processors import (
    CLIP_MEAN,
    CLIP_STD,
    SevilaVideoEvalProcessor,
    SevilaVideoTrainProcessor,
)

__all__ = ["CLIP_MEAN", "CLIP_STD", "SevilaVideoEvalProcessor", "SevilaVideoTrainProcessor"]
