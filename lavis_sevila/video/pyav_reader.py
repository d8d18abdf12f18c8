"""PyAV (FFmpeg) video reading: the fallback backend, and probing the container's duration.

Resizing matches decord's pixel for pixel on ordinary 8-bit videos: decord 0.6 scales with an
FFmpeg filter graph (bilinear swscale, YUV scaled then converted to RGB) that ignores the
frame's chroma siting, while the newer swscale in PyAV honours it.  So each decoded frame's
planes are copied into a fresh frame carrying only the colour space and range, and that is
converted with bilinear swscale in one call (see ``tests/test_video_backends.py``).

Rotation metadata: decord turns frames by the display matrix when the angle is a multiple of
90 degrees (and ignores other angles); we do the same.  decord turns before scaling and we
after, so turned frames agree only up to resampling differences (mean well under 1 level).

Frames are decoded from the start of the stream up to the last wanted index (no seeking:
exact for every container, at the cost of decoding the prefix).
"""
from __future__ import annotations

import os
from typing import Sequence

import av
import numpy as np
import torch

from lavis_sevila.video.clip import VideoReadError


def open_container(path: str | os.PathLike):
    try:
        return av.open(os.fspath(path))
    except (av.FFmpegError, OSError) as error:
        raise VideoReadError(path, f"FFmpeg cannot open it ({error})") from None


def declared_duration(path: str | os.PathLike) -> float | None:
    """Seconds the file's header promises for its video: the stream's own duration, else the
    container's; None when neither is stored.  Compared with the frames actually present to
    catch files cut short after their header was written (see reader.py).  Raises
    VideoReadError when FFmpeg cannot open the file or it has no video stream, so both
    backends report those cases in the same words."""
    with open_container(path) as container:
        if not container.streams.video:
            raise VideoReadError(path, "it has no video stream")
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
            return float(stream.duration * stream.time_base)
        if container.duration is not None and container.duration > 0:
            return container.duration / av.time_base
        return None


def quarter_turns(rotation: float) -> int:
    """Counter-clockwise quarter turns for a display rotation, as decord applies them:
    multiples of 90 degrees turn the frame, other angles are ignored."""
    if rotation % 90:
        return 0
    return int(rotation // 90) % 4


def resized_rgb(frame: av.VideoFrame, size: int) -> np.ndarray:
    """uint8 [size, size, 3] RGB of ``frame``, resampled and turned as decord does (module docstring)."""
    plain = av.VideoFrame(frame.width, frame.height, frame.format.name)
    for source, target in zip(frame.planes, plain.planes):
        rows = np.frombuffer(source, np.uint8).reshape(-1, source.line_size)
        out = np.frombuffer(target, np.uint8).reshape(-1, target.line_size)
        width = min(source.line_size, target.line_size)
        out[:, :width] = rows[: out.shape[0], :width]
    plain.colorspace = frame.colorspace
    plain.color_range = frame.color_range
    rgb = plain.reformat(size, size, "rgb24", interpolation="BILINEAR").to_ndarray()
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns(frame.rotation)))


class PyAVReader:
    """One open video file; ``read`` returns frames at given indices, resized."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.container = open_container(path)
        try:
            if not self.container.streams.video:
                raise VideoReadError(path, "it has no video stream")
            self.stream = self.container.streams.video[0]
            rate = self.stream.average_rate
            if rate is None or rate <= 0:
                raise VideoReadError(path, "its video stream declares no average frame rate")
            self.fps = float(rate)
            self.num_frames = self._count_frames()
        except BaseException:
            self.container.close()
            raise

    def _count_frames(self) -> int:
        """Frames in the stream: the header's count, else the number of packets (as decord)."""
        if self.stream.frames > 0:
            return int(self.stream.frames)
        try:
            count = sum(1 for packet in self.container.demux(self.stream) if packet.size > 0)
            self.container.seek(0, stream=self.stream)
        except av.FFmpegError as error:
            raise VideoReadError(self.path, f"its packets cannot be read ({error})") from None
        if count == 0:
            raise VideoReadError(self.path, "its video stream holds no frames")
        return count

    def read(self, indices: Sequence[int], size: int) -> torch.Tensor:
        wanted = set(int(i) for i in indices)
        last = max(wanted)
        found: dict[int, np.ndarray] = {}
        position = -1
        self.stream.thread_type = "AUTO"
        try:
            for position, frame in enumerate(self.container.decode(self.stream)):
                if position in wanted:
                    found[position] = resized_rgb(frame, size)
                if position >= last:
                    break
        except av.FFmpegError as error:
            raise VideoReadError(self.path, f"decoding failed after {position + 1} frames ({error})") from None
        if len(found) < len(wanted):
            raise VideoReadError(
                self.path, f"the stream ended after {position + 1} frames; frame {last} of {self.num_frames} was wanted"
            )
        batch = np.stack([found[int(i)] for i in indices])
        return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()

    def close(self) -> None:
        self.container.close()
