"""``read_clip``: n frames of a video file or frame folder, decoded at image_size x image_size.

Which frames: see :mod:`lavis_sevila.video.sampling`.  Outcomes for unusual input, all tested
in ``tests/test_video_*.py``:

- missing path, a path the process may not read (permission denied, also from a parent
  folder), zero-length file, file that is not a video, audio-only file, a file whose
  index (mp4 ``moov``) is cut off, a frame that cannot be decoded: :class:`VideoReadError`
  naming the path and the reason.  Nothing is ever replaced by another video.
- a file cut short whose container still opens (mkv/webm written as a stream, frames missing
  at the end): decoders read the frames that are there; we compare them with the duration in
  the header and raise VideoReadError when more than ``max(1 s, 5 %)`` is missing.
- video shorter than n frames, or a window shorter than n frames: n frames with repeated
  indices.  Window outside the video: clamped; :class:`EmptyWindowError` when nothing is left.
- variable frame rate: ``fps`` is the stream's average rate (decord's ``get_avg_fps``, PyAV's
  ``average_rate``); indices count decoded frames and timestamps are ``index / fps``, an
  approximation of the true presentation times, as in the authors' code.
- rotation metadata (display matrix): decord 0.6 turns the frames upright when the angle is a
  multiple of 90 degrees and ignores other angles; the PyAV backend does the same (agreement
  up to resampling, see pyav_reader.py).  Frames are image_size x image_size either way.
- frame folders: ``fps`` is required (ValueError otherwise); it must not be given for files,
  whose rate is read from the stream.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lavis_sevila.video import decord_reader
from lavis_sevila.video.clip import Clip, VideoReadError
from lavis_sevila.video.decord_reader import DecordReader
from lavis_sevila.video.folder_reader import FolderReader
from lavis_sevila.video.pyav_reader import PyAVReader, declared_duration
from lavis_sevila.video.sampling import frame_indices

BACKENDS = ("auto", "decord", "pyav")

# A file is called truncated when its frames cover less than its header's duration by more than this.
TRUNCATION_TOLERANCE_S = 1.0
TRUNCATION_TOLERANCE_FRACTION = 0.05


def resolve_backend(backend: str, image_size: int) -> str:
    """"auto" is decord when it is installed and can decode at image_size, else PyAV."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        usable = decord_reader.AVAILABLE and image_size not in decord_reader.BAD_SIZES
        return "decord" if usable else "pyav"
    return backend


def _open_file(path: Path, backend: str, image_size: int, fps: float | None):
    if fps is not None:
        raise ValueError(f"fps is read from the video stream of {path}; pass fps only for frame folders")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "the file is empty (0 bytes)")
    declared = declared_duration(path)  # FFmpeg's view first: both backends report bad files alike
    if resolve_backend(backend, image_size) == "decord":
        reader = DecordReader(path, image_size)
    else:
        reader = PyAVReader(path)
    try:
        check_complete(declared, path, reader.num_frames, reader.fps)
    except VideoReadError:
        reader.close()
        raise
    return reader


def check_complete(declared: float | None, path: str | os.PathLike, num_frames: int, fps: float) -> None:
    """Raise VideoReadError when the frames present fall short of the header's duration."""
    if declared is None:
        return
    present = num_frames / fps
    if declared - present > max(TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_FRACTION * declared):
        raise VideoReadError(
            path, f"it looks truncated: its header declares {declared:.2f} s but it holds {num_frames} frames "
            f"({present:.2f} s at {fps:g} fps)"
        )


def read_clip(
    source: str | os.PathLike,
    n: int,
    *,
    mode: str = "uniform",
    window: tuple[float, float] | None = None,
    image_size: int = 224,
    backend: str = "auto",
    rng: np.random.Generator | None = None,
    fps: float | None = None,
) -> Clip:
    """Sample n frames of ``source`` (a video file or a folder of frames); see module docstring."""
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    resolve_backend(backend, image_size)
    path = Path(source)
    try:
        if not path.exists():
            raise VideoReadError(path, "no such file or directory")
        reader = FolderReader(path, fps) if path.is_dir() else _open_file(path, backend, image_size, fps)
        try:
            indices = frame_indices(reader.num_frames, reader.fps, n, mode, window, rng)
            frames = reader.read(indices, image_size)
        finally:
            reader.close()
    except OSError as error:  # e.g. PermissionError from a folder we may not enter, EIO
        raise VideoReadError(path, f"the system refused to read it ({error.strerror or error})") from error
    return Clip(
        frames=frames,
        indices=indices,
        timestamps=indices / reader.fps,
        fps=reader.fps,
        num_frames=reader.num_frames,
        duration=reader.num_frames / reader.fps,
    )
