"""Write small videos with PyAV: the synthetic benchmark, the shard benchmark and the tests.

One writer serves all three so every generated video is encoded the same way.  Codecs are
whatever this PyAV build encodes (``libx264``, ``mpeg4``, ``libvpx-vp9``, ``mjpeg`` ...);
the container follows the file extension.

libvpx (VP8/VP9) encoding fails with "ABI version mismatch" in a process that imported decord
before PyAV: decord loads its own, older libvpx with global symbols (LAVIS imports decord, so
``import lavis_sevila`` does too).  Import ``av`` before ``lavis``/``decord``, or write VP9 in a
process that has not loaded decord (the tests do; this module imports nothing of the package).
"""
from __future__ import annotations

import os
from fractions import Fraction
from typing import Mapping, Sequence

import av
import numpy as np

# Options that make libx264 output reproducible and near-lossless on small synthetic frames.
X264_OPTIONS = {"crf": "12", "preset": "veryfast", "threads": "1"}
# Lossless RGB H.264 (libx264rgb at qp 0, no RGB->YUV conversion): the decoded frames equal
# the written ones bit for bit whatever the encoder decides, so a generated benchmark reads
# the same on every run.  (With yuv420p at crf 12, one of the demo's 350 videos came out a
# few pixel levels different between otherwise identical runs.)
LOSSLESS_RGB_OPTIONS = {"qp": "0", "preset": "veryfast", "threads": "1"}
DEFAULT_OPTIONS = {"libx264": X264_OPTIONS, "libx264rgb": LOSSLESS_RGB_OPTIONS}


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float | Fraction,
    *,
    codec: str = "libx264",
    pix_fmt: str | None = None,
    options: Mapping[str, str] | None = None,
    pts_seconds: Sequence[float] | None = None,
    rotation: float | None = None,
    bit_rate: int | None = None,
) -> None:
    """Encode ``frames`` (uint8 [n, H, W, 3] RGB) into ``path``.

    ``pts_seconds`` gives each frame its own presentation time (a variable frame rate
    video); ``rotation`` stores display-matrix rotation metadata without turning the pixels.
    ``pix_fmt`` defaults to ``rgb24`` for ``libx264rgb`` and ``yuv420p`` otherwise.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [n, H, W, 3], got {frames.dtype} {frames.shape}")
    if pts_seconds is not None and len(pts_seconds) != len(frames):
        raise ValueError(f"{len(pts_seconds)} timestamps for {len(frames)} frames")
    rate = Fraction(fps).limit_denominator(1001)
    if options is None:
        options = DEFAULT_OPTIONS.get(codec)
    if pix_fmt is None:
        pix_fmt = "rgb24" if codec == "libx264rgb" else "yuv420p"
    with av.open(os.fspath(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate, options=dict(options or {}))
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = pix_fmt
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        if pts_seconds is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        try:
            for i, array in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(array, format="rgb24")
                if pts_seconds is not None:
                    frame.pts = round(pts_seconds[i] * 1000)
                    frame.time_base = Fraction(1, 1000)
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        except av.FFmpegError as error:
            if "ABI version mismatch" in str(error):
                raise RuntimeError(f"{codec} cannot encode in this process: decord was imported before PyAV "
                                   "(see lavis_sevila.video.writer's docstring)") from error
            raise


def write_audio_only(path: str | os.PathLike, seconds: float = 1.0, rate: int = 8000) -> None:
    """A file with one audio stream and no video: what a bad download sometimes is."""
    with av.open(os.fspath(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        stream.layout = "mono"
        samples = np.zeros((1, int(seconds * rate)), dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def numbered_frames(n: int, height: int, width: int) -> np.ndarray:
    """Frames whose content tells their index: a grey level per frame over a texture.

    Frame ``i`` is flat grey ``level(i)`` in its top half (readable after lossy coding) and a
    fixed colour gradient in its bottom half (so resizing has something to resample).
    """
    frames = np.zeros((n, height, width, 3), dtype=np.uint8)
    ys, xs = np.mgrid[0:height, 0:width]
    gradient = np.stack([xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1),
                         (xs + ys) * 255 // max(width + height - 2, 1)], axis=-1).astype(np.uint8)
    for i in range(n):
        frames[i, : height // 2] = frame_level(i)
        frames[i, height // 2:] = gradient[height // 2:]
    return frames


def frame_level(index: int) -> int:
    """Grey level of frame ``index`` in :func:`numbered_frames` (distinct for 0..39)."""
    if not 0 <= index < 40:
        raise ValueError(f"numbered frames go up to 39, got {index}")
    return 10 + 6 * index


def level_index(level: float) -> int:
    """Inverse of :func:`frame_level` for a decoded grey level (lossy coding moves it by ~2)."""
    return int(round((level - 10) / 6))
