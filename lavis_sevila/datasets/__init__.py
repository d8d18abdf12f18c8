"""SeViLA's datasets; importing this registers their builders in LAVIS's registry."""
from lavis_sevila.datasets import builders  # noqa: F401  (registers nextqa, star, how2qa, tvqa, vlep, qvh, sevila_synthetic)
from lavis_sevila.datasets.video_dataset import FrameSource, SevilaVideoDataset, UnreadableSampleError

__all__ = ["FrameSource", "SevilaVideoDataset", "UnreadableSampleError"]
