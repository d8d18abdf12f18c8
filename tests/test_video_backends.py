"""decord and PyAV give the same frames, for several codecs and containers."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from lavis_sevila.video import decord_reader, read_clip, writer
from lavis_sevila.video.writer import frame_level, level_index, numbered_frames

# The videos are written by a fresh interpreter that loads writer.py alone: in this process
# decord (imported by LAVIS) has already loaded its own libvpx, which breaks PyAV's VP9 encoder.
WRITE_SCRIPT = """
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("writer", sys.argv[1])
writer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(writer)
frames = np.load(sys.argv[2])
for item in sys.argv[3:]:
    path, codec, pix_fmt = item.split(",")
    bit_rate = None if codec == "libx264" else 4_000_000
    writer.write_video(path, frames, 12, codec=codec, pix_fmt=pix_fmt, bit_rate=bit_rate)
"""

# (file name, encoder, pixel format): whatever this PyAV build encodes
FORMATS = [
    ("h264.mp4", "libx264", "yuv420p"),
    ("mpeg4.mp4", "mpeg4", "yuv420p"),
    ("mpeg4.avi", "mpeg4", "yuv420p"),
    ("vp9.webm", "libvpx-vp9", "yuv420p"),
    ("vp9.mkv", "libvpx-vp9", "yuv420p"),
    ("mjpeg.mkv", "mjpeg", "yuvj420p"),
]


def textured_frames(n=24, height=72, width=96):
    frames = numbered_frames(n, height, width)
    noise = np.random.default_rng(0).integers(0, 256, (height - height // 2, width // 2, 3), dtype=np.uint8)
    frames[:, height // 2:, : width // 2] = noise  # fine detail, so resampling differences would show
    return frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("codecs")
    np.save(folder / "frames.npy", textured_frames())
    jobs = [f"{folder / name},{codec},{pix_fmt}" for name, codec, pix_fmt in FORMATS]
    subprocess.run([sys.executable, "-c", WRITE_SCRIPT, writer.__file__, str(folder / "frames.npy"), *jobs], check=True)
    return folder


def top_levels(clip_frames: torch.Tensor) -> list[int]:
    """Which source frame each decoded frame is, from its flat grey top half."""
    top = clip_frames[:, :, : clip_frames.shape[2] // 3].float().mean(dim=(1, 2, 3))
    return [level_index(value) for value in top.tolist()]


@pytest.mark.parametrize("name", [name for name, _, _ in FORMATS])
def test_backends_agree_on_every_format(videos, name):
    window = (0.3, 1.7)
    a = read_clip(videos / name, 6, window=window, image_size=40, backend="decord")
    b = read_clip(videos / name, 6, window=window, image_size=40, backend="pyav")
    assert a.num_frames == b.num_frames == 24
    assert a.fps == b.fps == 12.0
    assert np.array_equal(a.indices, b.indices)
    assert a.frames.shape == b.frames.shape == (6, 3, 40, 40)
    diff = (a.frames.int() - b.frames.int()).abs()
    # measured: identical for all six formats with decord 0.6.0 and PyAV 18 (FFmpeg 8)
    assert diff.float().mean() < 0.5 and diff.max() <= 8
    assert top_levels(a.frames) == a.indices.tolist()


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_frames_are_the_indexed_source_frames(videos, backend):
    clip = read_clip(videos / "h264.mp4", 24, image_size=32, backend=backend)
    assert clip.indices.tolist() == list(range(24))
    assert top_levels(clip.frames) == list(range(24))
    assert clip.frames.dtype == torch.uint8
    np.testing.assert_allclose(clip.timestamps, np.arange(24) / 12.0)
    assert clip.duration == pytest.approx(2.0)


def test_frame_levels_are_distinct():
    assert len({frame_level(i) for i in range(40)}) == 40


def test_auto_backend_is_decord(videos):
    auto = read_clip(videos / "vp9.webm", 4, image_size=28, backend="auto")
    chosen = read_clip(videos / "vp9.webm", 4, image_size=28, backend="decord")
    assert torch.equal(auto.frames, chosen.frames)


def test_decord_still_fails_at_its_bad_sizes(videos):
    """If a decord release fixes this, BAD_SIZES (and the auto rule) can go."""
    import decord

    for size in sorted(decord_reader.BAD_SIZES):
        reader = decord.VideoReader(str(videos / "h264.mp4"), width=size, height=size)
        with pytest.raises(Exception, match="size must exactly match"):
            reader.get_batch([0, 1])


def test_auto_uses_pyav_where_decord_fails(videos):
    auto = read_clip(videos / "h264.mp4", 4, image_size=24, backend="auto")
    pyav = read_clip(videos / "h264.mp4", 4, image_size=24, backend="pyav")
    assert torch.equal(auto.frames, pyav.frames)
    with pytest.raises(ValueError, match="decord 0.6 cannot decode at 24 px"):
        read_clip(videos / "h264.mp4", 4, image_size=24, backend="decord")


def test_unknown_backend_is_refused(videos):
    with pytest.raises(ValueError, match="backend must be one of"):
        read_clip(videos / "h264.mp4", 4, backend="opencv")
