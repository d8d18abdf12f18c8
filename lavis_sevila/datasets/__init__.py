"""SeViLA's datasets; importing this registers their builders in LAVIS's registry."""
from lavis_sevila.datasets import builders  # noqa: F401  (registers nextqa, star, how2qa, tvqa, vlep, qvh, sevila_synthetic)
from lavis_sevila.datasets import image_text  # noqa: F401  (registers sevila_image_text, sevila_synthetic_blind)
from lavis_sevila.datasets.video_dataset import FrameSource, SevilaVideoDataset, UnreadableSampleError

__all__ = ["FrameSource", "SevilaVideoDataset", "UnreadableSampleError"]
