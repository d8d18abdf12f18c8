"""Video input: sampling frame indices and decoding them (decord, PyAV or frame folders)."""
from lavis_sevila.video.clip import Clip, EmptyWindowError, VideoReadError
from lavis_sevila.video.reader import read_clip
from lavis_sevila.video.sampling import frame_indices

__all__ = ["Clip", "EmptyWindowError", "VideoReadError", "frame_indices", "read_clip"]
