"""read_clip on unusual and bad input: every outcome documented in lavis_sevila.video.reader."""
import shutil

import av
import numpy as np
import pytest
import torch
from PIL import Image

from lavis_sevila.video import Clip, EmptyWindowError, VideoReadError, read_clip
from lavis_sevila.video.writer import level_index, numbered_frames, write_audio_only, write_video

BACKENDS = ["decord", "pyav"]
SIZE = 32


def top_levels(frames: torch.Tensor) -> list[int]:
    top = frames[:, :, : frames.shape[2] // 3].float().mean(dim=(1, 2, 3))
    return [level_index(value) for value in top.tolist()]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    frames = numbered_frames(30, 48, 64)
    write_video(root / "thirty.mp4", frames, 10)
    write_video(root / "five.mp4", frames[:5], 10)
    write_video(root / "rotated.mp4", frames, 10, rotation=90)
    # 15 frames 0.1 s apart, then 15 frames 0.05 s apart
    times = [0.1 * i for i in range(15)] + [1.5 + 0.05 * i for i in range(15)]
    write_video(root / "vfr.mp4", frames, 10, pts_seconds=times)
    write_video(root / "stream.mkv", frames, 10)
    data = (root / "thirty.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])  # mp4 index (moov) is at the end: lost
    data = (root / "stream.mkv").read_bytes()
    (root / "cut.mkv").write_bytes(data[: len(data) // 2])  # mkv: a readable prefix
    write_audio_only(root / "audio.wav")
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("not a video\n" * 20)
    return root


@pytest.mark.parametrize("backend", BACKENDS)
def test_clip_fields(folder, backend):
    clip = read_clip(folder / "thirty.mp4", 4, image_size=SIZE, backend=backend)
    assert isinstance(clip, Clip)
    assert clip.frames.shape == (4, 3, SIZE, SIZE) and clip.frames.dtype == torch.uint8
    assert clip.indices.dtype == np.int64 and clip.indices.tolist() == [3, 11, 18, 26]
    assert clip.timestamps.dtype == np.float64
    np.testing.assert_allclose(clip.timestamps, clip.indices / 10.0)
    assert (clip.fps, clip.num_frames, clip.duration) == (10.0, 30, 3.0)
    assert top_levels(clip.frames) == clip.indices.tolist()


@pytest.mark.parametrize("backend", BACKENDS)
def test_video_shorter_than_n_repeats_frames(folder, backend):
    clip = read_clip(folder / "five.mp4", 8, image_size=SIZE, backend=backend)
    assert clip.num_frames == 5
    assert clip.indices.tolist() == [0, 0, 1, 1, 2, 3, 3, 4]
    assert top_levels(clip.frames) == clip.indices.tolist()
    assert torch.equal(clip.frames[0], clip.frames[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_window_is_clamped_to_the_video(folder, backend):
    clip = read_clip(folder / "thirty.mp4", 4, window=(2.0, 50.0), image_size=SIZE, backend=backend)
    assert clip.indices.tolist() == [21, 23, 26, 28]  # frames 20..29
    assert top_levels(clip.frames) == clip.indices.tolist()


@pytest.mark.parametrize("backend", BACKENDS)
def test_window_after_the_end_is_an_error(folder, backend):
    with pytest.raises(EmptyWindowError, match=r"window \[4.0, 6.0\] s holds no frame"):
        read_clip(folder / "thirty.mp4", 4, window=(4.0, 6.0), image_size=SIZE, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_variable_frame_rate_uses_the_average_rate(folder, backend):
    clip = read_clip(folder / "vfr.mp4", 6, image_size=SIZE, backend=backend)
    with av.open(str(folder / "vfr.mp4")) as container:
        average = float(container.streams.video[0].average_rate)
    assert clip.num_frames == 30
    assert clip.fps == average and 10 < average < 20  # 30 frames over the stream's 2.4 s, not the nominal 10
    assert top_levels(clip.frames) == clip.indices.tolist()  # indices count frames, not seconds
    np.testing.assert_allclose(clip.timestamps, clip.indices / clip.fps)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotation_is_applied_as_decord_does(folder, backend):
    with av.open(str(folder / "rotated.mp4")) as container:
        assert next(container.decode(video=0)).rotation == 90
    clip = read_clip(folder / "rotated.mp4", 4, image_size=SIZE, backend=backend)
    assert clip.frames.shape == (4, 3, SIZE, SIZE)
    # the flat, numbered top half of the stored frame is now on the left
    left = clip.frames[:, :, :, : SIZE // 3].float().mean(dim=(1, 2, 3))
    assert [level_index(v) for v in left.tolist()] == clip.indices.tolist()


def test_rotation_agrees_between_backends(folder):
    a = read_clip(folder / "rotated.mp4", 4, image_size=SIZE, backend="decord").frames.int()
    b = read_clip(folder / "rotated.mp4", 4, image_size=SIZE, backend="pyav").frames.int()
    assert (a - b).abs().float().mean() < 2.0  # decord turns before scaling, we after (measured 1.08)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,reason", [
    ("missing.mp4", "no such file or directory"),
    ("empty.mp4", r"the file is empty \(0 bytes\)"),
    ("text.mp4", "FFmpeg cannot open it"),
    ("audio.wav", "it has no video stream"),
    ("cut.mp4", "FFmpeg cannot open it"),
    ("cut.mkv", "it looks truncated: its header declares 3.00 s"),
])
def test_bad_files_raise_video_read_error(folder, backend, name, reason):
    with pytest.raises(VideoReadError, match=reason) as caught:
        read_clip(folder / name, 4, image_size=SIZE, backend=backend)
    assert caught.value.path == str(folder / name)
    assert str(folder / name) in str(caught.value)


def test_a_complete_stream_file_is_not_called_truncated(folder):
    clip = read_clip(folder / "stream.mkv", 4, image_size=SIZE)
    assert clip.num_frames == 30


def test_fps_is_refused_for_video_files(folder):
    with pytest.raises(ValueError, match="pass fps only for frame folders"):
        read_clip(folder / "thirty.mp4", 4, image_size=SIZE, fps=3.0)


@pytest.fixture
def frame_folder(tmp_path):
    frames = numbered_frames(12, 48, 64)
    root = tmp_path / "video1"
    root.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(root / f"{i + 1:05d}.png")
    (root / "notes.txt").write_text("ignored: not an image")
    return root


def test_frame_folder_reads_images_in_name_order(frame_folder):
    clip = read_clip(frame_folder, 4, image_size=SIZE, fps=3.0)
    assert (clip.num_frames, clip.fps, clip.duration) == (12, 3.0, 4.0)
    assert clip.indices.tolist() == [1, 4, 7, 10]
    assert top_levels(clip.frames) == clip.indices.tolist()
    clip = read_clip(frame_folder, 2, window=(1.0, 2.0), image_size=SIZE, fps=3.0)
    assert clip.indices.tolist() == [3, 5]  # frames 3..5: edges [3, 4, 6]


def test_frame_folder_matches_the_video_resize(frame_folder, folder):
    """Images and video frames go through the same bilinear scaling."""
    from_images = read_clip(frame_folder, 4, image_size=SIZE, fps=10.0).frames.int()
    from_video = read_clip(folder / "thirty.mp4", 4, image_size=SIZE).frames.int()
    # same pictures (frames 1, 4, 7, 10 vs 3, 11, 18, 26 differ only in the grey level): compare the gradient half
    assert (from_images[:, :, SIZE // 2 + 2:] - from_video[:, :, SIZE // 2 + 2:]).abs().float().mean() < 4


def test_frame_folder_needs_fps(frame_folder):
    with pytest.raises(ValueError, match="pass fps > 0"):
        read_clip(frame_folder, 4, image_size=SIZE)


def test_frame_folder_without_images(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(VideoReadError, match="holds no .jpg/.jpeg/.png images"):
        read_clip(tmp_path, 4, image_size=SIZE, fps=3.0)


def test_frame_folder_with_unpadded_numbers(tmp_path):
    for i in (1, 2, 10):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.jpg")
    with pytest.raises(VideoReadError, match="zero-pad"):
        read_clip(tmp_path, 2, image_size=SIZE, fps=3.0)


def test_frame_folder_with_a_corrupt_image(frame_folder):
    shutil.copy(frame_folder / "00001.png", frame_folder / "00002.png")
    (frame_folder / "00005.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(VideoReadError, match="frame 00005.png cannot be decoded"):
        read_clip(frame_folder, 12, image_size=SIZE, fps=3.0)
